"""The paper's three design-space sweeps on CIFAR-10 (CPU scale), with seeds; tables and charts.

The studies studies/paper_sr_cpu.yaml, paper_pct3x3_cpu.yaml and paper_bypass_cpu.yaml
are grids over one knob (squeeze ratio, share of 3x3 filters, bypass) with the others
fixed. A grid trains each point once, with the study's trainer
seed (0); the seed repeats come from `explorer calibrate`, which retrains a trial's
network with other seeds (weights, batch order, augmentation; the validation split stays
fixed) and stores the accuracies with the study (study user attr calibration/<trial>).

    python3 bench/paper_sweeps.py run [--data ARCHIVE] [--only sr pct3x3 bypass]
        one sweep after the other: `explorer run STUDY`, then `explorer export` of every
        trained trial into runs/paper/<study>/ and `explorer calibrate FILE --seed 1
        --seeds K-1` for each trial not yet calibrated (K seeds per point: 3, bypass 5).
        Resumable: a finished grid is not retrained, a calibrated trial not recalibrated.
    python3 bench/paper_sweeps.py report [--img docs/img] [--doc docs/paper.md]
        reads the three studies (runs/<study>.journal), prints per point the accuracy of
        each seed, mean and sample std (ddof 1), parameters and model size (fp32 MB);
        writes docs/img/paper_<sweep>.png (mean +- std bars, the seeds as dots) and
        replaces the tables between `<!-- paper:<sweep> -->` and `<!-- /paper:<sweep> -->`
        in docs/paper.md. The last line is one JSON object: per sweep the points, means,
        stds, seed counts, and each point's mean as a ratio to the paper's SqueezeNet point
        (SR 0.125 / pct_3x3 0.5 / no bypass) measured in the same study; Spearman's rho of
        accuracy against the knob over every seed run (scipy) for the two numeric sweeps.

Run it alone on the shared machine with OMP_NUM_THREADS=1 (the default set here).
Charts need matplotlib (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.store import attrs as A  # noqa: E402
from explorer.store import open_storage, read_study  # noqa: E402

# sweep -> (study file stem, swept knob, axis label, seeds per point, the paper's SqueezeNet point)
SWEEPS = {
    "sr": ("paper_sr_cpu", "sr", "squeeze ratio SR", 3, 0.125),
    "pct3x3": ("paper_pct3x3_cpu", "pct_3x3", "share of 3x3 filters (pct_3x3)", 3, 0.5),
    "bypass": ("paper_bypass_cpu", "bypass", "bypass", 5, "none"),
}
BYPASS_ORDER = ("none", "simple", "complex")


def explorer_cli(*args: str) -> None:
    """Run `python3 -m explorer ARGS` from the repository root (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "explorer", *args]
    print("$ explorer " + " ".join(args), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def load(study: str, runs: Path = ROOT / "runs"):
    """The study's record from its default journal (runs/<study>.journal), or None if absent."""
    path = Path(runs) / f"{study}.journal"
    if not path.exists():
        return None
    return read_study(open_storage(str(path), read_only=True), study, url=str(path))


def seed_accs(trial) -> dict[int, float]:
    """{seed: final val_acc} of a trial: its own run plus its calibration's runs."""
    out = {int(trial.attrs.get(A.SEED, 0)): float(trial.attrs[A.VAL_ACC])}
    noise = (trial.calibration or {}).get("noise") or {}
    for s, acc in zip(noise.get("seeds") or [], noise.get("accs") or []):
        out.setdefault(int(s), float(acc))
    return out


def run(args: argparse.Namespace) -> None:
    """Train each chosen sweep's grid, then calibrate every trained trial to K seeds."""
    data = ["--data", args.data] if args.data else []
    for key in args.only:
        study, _, _, k, _ = SWEEPS[key]
        t0 = time.perf_counter()
        explorer_cli("run", f"studies/{study}.yaml", *data)
        out = Path("runs") / "paper" / study
        todo = [t.number for t in load(study).trials if t.trained and len(seed_accs(t)) < k]
        if todo:
            explorer_cli("export", f"studies/{study}.yaml", "--trial", *map(str, todo), "--out", str(out))
        for n in todo:
            explorer_cli("calibrate", str(out / f"{study}_trial{n:05d}.yaml"), "--seed", "1",
                         "--seeds", str(k - 1), "--device", "cpu", *data)
        print(f"{study}: done in {time.perf_counter() - t0:.0f}s", flush=True)


def points(key: str, runs: Path = ROOT / "runs") -> list[dict]:
    """One row per trained grid point of sweep `key`, in the knob's order."""
    study, knob, _, _, _ = SWEEPS[key]
    rec = load(study, runs)
    if rec is None:
        raise SystemExit(f"runs/{study}.journal not found: run `python3 bench/paper_sweeps.py run` first")
    rows = []
    for t in rec.trials:
        if not t.trained:
            continue
        accs = seed_accs(t)
        vals = [accs[s] for s in sorted(accs)]
        rows.append({"trial": t.number, "value": t.spec[knob], "seeds": sorted(accs), "accs": vals,
                     "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else math.nan,
                     "params": int(t.num(A.PARAMS)), "macs": t.num(A.MACS), "size_mb": t.num(A.SIZE_MB)})
    order = (lambda r: BYPASS_ORDER.index(r["value"])) if knob == "bypass" else (lambda r: float(r["value"]))
    return sorted(rows, key=order)


def table(key: str, rows: list[dict]) -> str:
    """The sweep's markdown table; the last column is the difference to the paper's SqueezeNet
    point and the noise band 2 sqrt(std_a^2 + std_b^2), in bold when beyond it."""
    _, knob, _, _, base = SWEEPS[key]
    base_row = next((r for r in rows if r["value"] == base), None)
    head = (f"| {knob} | params | size MB | MACs | val acc % per seed (0, 1, ...) | mean ± std % "
            f"| vs {knob} {base}, points |\n"
            "|---|---:|---:|---:|---|---:|---:|\n")
    lines = []
    for r in rows:
        per_seed = ", ".join(f"{100 * a:.1f}" for a in r["accs"])
        diff = "-"
        if base_row and r is not base_row:
            d, band = 100 * (r["mean"] - base_row["mean"]), 200 * math.hypot(r["std"], base_row["std"])
            diff = f"**{d:+.1f}** (band {band:.1f})" if abs(d) > band else f"{d:+.1f} (band {band:.1f})"
        lines.append(f"| {r['value']} | {r['params']:,} | {r['size_mb']:.3f} | {r['macs'] / 1e6:.1f} M | "
                     f"{per_seed} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {diff} |")
    return head + "\n".join(lines) + "\n"


def chart(key: str, rows: list[dict], path: Path) -> None:
    """Mean +- std per point (bars), each seed as a dot, model size annotated."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, knob, label, _, base = SWEEPS[key]
    numeric = knob != "bypass"
    xs = [float(r["value"]) if numeric else i for i, r in enumerate(rows)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.errorbar(xs, [100 * r["mean"] for r in rows], yerr=[100 * r["std"] for r in rows], fmt="o-" if numeric else "o",
                capsize=4, color="#1f77b4", label="mean ± std over seeds")
    for x, r in zip(xs, rows):
        ax.scatter([x] * len(r["accs"]), [100 * a for a in r["accs"]], s=12, color="#7f7f7f", alpha=0.6,
                   zorder=3, label="one seed" if x == xs[0] else None)
        top = 100 * (r["mean"] + (r["std"] if math.isfinite(r["std"]) else 0.0))
        ax.annotate(f"{r['size_mb']:.2f} MB", (x, top), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7, color="#555555")
    if not numeric:
        ax.set_xticks(xs, [str(r["value"]) for r in rows])
        ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_xlabel(label + ("" if numeric else f" (SqueezeNet: {base})"))
    ax.set_ylabel("CIFAR-10 val accuracy % (final epoch)")
    study = SWEEPS[key][0]
    ax.set_title(f"{study}: {len(rows)} points, {min(len(r['accs']) for r in rows)}+ seeds each", fontsize=10)
    ax.margins(y=0.12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def replace_block(doc: Path, key: str, text: str) -> bool:
    """Put `text` between the sweep's markers in `doc`; False when the markers are missing."""
    if not doc.exists():
        return False
    s = doc.read_text()
    pat = re.compile(rf"(<!-- paper:{key} -->\n).*?(<!-- /paper:{key} -->)", re.S)
    if not pat.search(s):
        return False
    doc.write_text(pat.sub(lambda m: m.group(1) + text + m.group(2), s))
    return True


def report(args: argparse.Namespace) -> None:
    """Tables, charts and the JSON summary of every sweep that has a study."""
    from scipy import stats

    summary = {}
    for key in args.only:
        study, knob, _, _, base = SWEEPS[key]
        if load(study) is None:
            print(f"{study}: no study yet (runs/{study}.journal)")
            continue
        rows = points(key)
        text = table(key, rows)
        print(f"\n{study}\n{text}")
        if args.img:
            chart(key, rows, Path(args.img) / f"paper_{key}.png")
        if args.doc and not replace_block(Path(args.doc), key, text):
            print(f"({args.doc} has no <!-- paper:{key} --> block: table not written there)")
        base_row = next((r for r in rows if r["value"] == base), None)
        entry = {"points": [r["value"] for r in rows], "mean": [round(r["mean"], 4) for r in rows],
                 "std": [round(r["std"], 4) if math.isfinite(r["std"]) else None for r in rows],
                 "seeds": [len(r["accs"]) for r in rows],
                 "size_mb": [round(r["size_mb"], 4) for r in rows],
                 "ratio_to_squeezenet_point": ([round(r["mean"] / base_row["mean"], 4) for r in rows]
                                               if base_row else None)}
        if knob != "bypass":
            x = [float(r["value"]) for r in rows for _ in r["accs"]]
            y = [a for r in rows for a in r["accs"]]
            rho, p = stats.spearmanr(x, y)
            entry["spearman_vs_knob"], entry["spearman_p"] = round(float(rho), 3), float(f"{p:.3g}")
        summary[key] = entry
    print(json.dumps(summary))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the sweeps and their seed repeats")
    r.add_argument("--data", help="CIFAR-10 archive (default: the studies' default source)")
    rep = sub.add_parser("report", help="tables, charts, JSON")
    rep.add_argument("--img", default="docs/img", help="chart folder ('' for none)")
    rep.add_argument("--doc", default="docs/paper.md", help="markdown file whose table blocks to fill ('' for none)")
    for q in (r, rep):
        q.add_argument("--only", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    args = p.parse_args()
    os.chdir(ROOT)
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()

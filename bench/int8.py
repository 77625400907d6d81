"""int8 on a study's Pareto front: accuracy drop, file size and latency of post-training static
quantization (onnxruntime), each front member trained --epochs (10) with `explorer train`.

Goals (docs/export.md#int8): the int8 test accuracy within 1 point of fp32's on >= 90% of the
front; the int8 file <= 0.3x the fp32 file; the int8 / fp32 latency ratio reported (both ONNX
files through onnxruntime, 1 thread, batch 1, side by side in one quiet window, with the load
average at that moment; fp32 and int8 timed in turn 5 times, the ratio the median of the 5
rounds', with their range). Accuracies do not depend on the machine's load; latencies do.

    PYTHONPATH=$PWD explorer run studies/quickstart.yaml --storage runs/quickstart.journal
    PYTHONPATH=$PWD python3 bench/int8.py --storage runs/quickstart.journal     # trains what is missing
    PYTHONPATH=$PWD python3 bench/int8.py --storage runs/quickstart.journal --latency-only   # quiet machine

Trained models live in --models (default runs/int8/models/<study>-<N>: `explorer train` output
folders) and are reused when their train.json says --epochs and the trial's spec_id; int8.json
beside a model is reused when it was made from that model.pt with this method. --latency-only
trains and quantizes nothing: it times the int8 and fp32 files again (a few seconds each).
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from explorer.design.spec import SqueezeSpec, spec_id
from explorer.results import int8_files
from explorer.results.selection import load_study, select_trials
from explorer.study.config import resolve_target

ROOT = Path(__file__).resolve().parents[1]


def trained(folder: Path, epochs: int, sid: str) -> bool:
    """The folder holds an `explorer train` run of this network for `epochs` epochs."""
    try:
        doc = json.loads((folder / "train.json").read_text())
    except (OSError, ValueError):
        return False
    return ((folder / "model.pt").exists() and doc.get("trainer", {}).get("epochs") == epochs
            and doc.get("provenance", {}).get("spec_id") == sid)


def train(study: str, url: str, number: int, epochs: int, folder: Path) -> None:
    """`explorer train STUDY --trial N` in a child process (its progress bar on stderr)."""
    cmd = [sys.executable, "-m", "explorer", "train", study, "--storage", url, "--trial", str(number),
           "--epochs", str(epochs), "--out", str(folder), "--device", "cpu"]
    print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(cmd, check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="studies/quickstart.yaml", help="a study file or name")
    ap.add_argument("--storage", default=None, help="its storage (default: the study file's)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", type=Path, default=ROOT / "runs/int8/models")
    ap.add_argument("--data", default=None, help="dataset (default: as `explorer train` finds it)")
    ap.add_argument("--latency-only", action="store_true", help="time the existing files again; train nothing")
    args = ap.parse_args()

    name, url, _ = resolve_target(args.study, args.storage)
    rec = load_study(name, url)
    front = select_trials(rec, pareto=True)
    sids = {t.number: spec_id(SqueezeSpec.from_dict(t.spec)) for t in front}
    for i, t in enumerate(front, 1):
        folder = args.models / f"{name}-{t.number}"
        if trained(folder, args.epochs, sids[t.number]):
            continue
        if args.latency_only:
            sys.exit(f"--latency-only: {folder} holds no {args.epochs}-epoch model of trial #{t.number}; "
                     "run without --latency-only first")
        print(f"training front member {i}/{len(front)}: #{t.number}", file=sys.stderr)
        train(name, url, t.number, args.epochs, folder)
    found = {t.number: args.models / f"{name}-{t.number}" for t in front}  # each checked by trained() above
    results = int8_files.quantize_models(rec, found, data_cli=args.data, remeasure=args.latency_only,
                                         say=lambda line: print(line, file=sys.stderr, flush=True))
    report(name, front, results, args)


def report(name: str, front, results: dict[int, dict], args) -> None:
    """The table, then the JSON line."""
    rows = [(t.number, t.num("params"), results[t.number]) for t in front if t.number in results]
    print(f"{'trial':>6} {'params':>8} {'fp32 test %':>11} {'int8 test %':>11} {'drop pts':>8} {'val drop':>8} "
          f"{'fp32 B':>8} {'int8 B':>8} {'size x':>6} {'fp32 ms':>8} {'int8 ms':>8} {'lat x':>6} {'range':>11} "
          f"{'cpu x':>6} {'load':>5}")
    for n, params, r in rows:
        print(f"{'#' + str(n):>6} {params:>8,.0f} {100 * r['fp32_test_acc']:>11.2f} {100 * r['int8_test_acc']:>11.2f} "
              f"{100 * r['test_acc_drop']:>8.2f} {100 * r['val_acc_drop']:>8.2f} {r['fp32_bytes']:>8,} "
              f"{r['int8_bytes']:>8,} {r['size_ratio']:>6.3f} {r['fp32_latency_ms']:>8.4f} "
              f"{r['int8_latency_ms']:>8.4f} {r['latency_ratio']:>6.3f} {_range(r):>11} {r['cpu_ratio']:>6.3f} "
              f"{r['load_1min']:>5.2f}")
    drops = {n: 100 * r["test_acc_drop"] for n, _, r in rows}
    within = sum(d <= 1.0 for d in drops.values()) / len(drops) if drops else float("nan")
    sizes = {n: r["size_ratio"] for n, _, r in rows}
    lat = {n: r["latency_ratio"] for n, _, r in rows}
    cpu = {n: r["cpu_ratio"] for n, _, r in rows}
    setting = sorted({r["latency_setting"] for _, _, r in rows})
    print(f"drop <= 1 point: {within:.0%} of {len(drops)} front members (goal >= 90%); largest int8/fp32 file "
          f"{max(sizes.values(), default=float('nan')):.3f}x (goal <= 0.3x); median int8/fp32 latency "
          f"{statistics.median(lat.values()) if lat else float('nan'):.3f}x on {'; '.join(setting)}")
    print(json.dumps({
        "bench": "int8", "study": name, "epochs": args.epochs, "front": [t.number for t in front],
        "quantized": [n for n, _, _ in rows], "test_drop_points": drops,
        "val_drop_points": {n: 100 * r["val_acc_drop"] for n, _, r in rows}, "share_within_1_point": within,
        "goal_drop_met": within >= 0.9, "size_ratio": sizes, "size_ratio_max": max(sizes.values(), default=None),
        "goal_size_met": bool(sizes) and max(sizes.values()) <= 0.3,
        "bytes": {n: [r["fp32_bytes"], r["int8_bytes"]] for n, _, r in rows},
        "latency_ratio": lat, "latency_ratio_median": statistics.median(lat.values()) if lat else None,
        "latency_ratio_range": {n: r.get("latency_ratio_range") for n, _, r in rows},
        "cpu_ratio": cpu, "latency_ms": {n: [r["fp32_latency_ms"], r["int8_latency_ms"]] for n, _, r in rows},
        "load_1min_at_timing": {n: r["load_1min"] for n, _, r in rows}, "latency_setting": setting,
        "method": rows[0][2]["method"] if rows else None}))


def _range(r: dict) -> str:
    low, high = r.get("latency_ratio_range") or (float("nan"),) * 2
    return f"{low:.2f}-{high:.2f}"


if __name__ == "__main__":
    main()

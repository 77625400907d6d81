"""Multi-fidelity search by Pareto rank against the full-budget search: hypervolume, epochs, recall.

(1) Replayed on the space table (default tables/quickstart.csv.gz): for each seed, the study
    (default studies/quickstart.yaml, its sampler) is replayed twice through `explorer run`'s own
    loop (explorer.tabular.replay): every proposal trained to the end, and the same study with
    a schedule (default rungs 1, 2; keep 1/3), for the same number of proposals. Reported per
    proposal count, median and IQR over seeds: the hypervolume of the networks trained to the
    end (full-recipe accuracy, val_acc vs log10 params, reference: the params budget and
    chance) over the full search's; the epochs trained over the full search's; the front
    recall (of the front of every network proposed, at full-recipe accuracy, the share trained
    to the end). Goals: HV ratio >= 0.99 with epochs ratio <= 0.4, recall >= 0.9.
(2) --real: the study run for real twice on this machine (`explorer run --jobs`), full budget
    and scheduled, the same number of proposals, each in a fresh journal under --out-dir: the
    same figures, with the training seconds and wall seconds of each. Needs a quiet machine for
    its seconds; accuracies are bit-identical under load.
(3) --bound RUNG:RATIO: what any rule could keep when every proposal trains to RUNG epochs and the
    best share goes on, RATIO x the epochs in all (explorer.tabular.multifidelity.selection_bound):
    synchronous, with each ranking at the rung, a hindsight fit and the final accuracy itself.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(ROOT / "tables/quickstart.csv.gz"))
    ap.add_argument("--study", default=str(ROOT / "studies/quickstart.yaml"))
    ap.add_argument("--rungs", default="1,2", help="rung epochs, comma-separated (below the recipe's last)")
    ap.add_argument("--keep", default="1/3", help="share kept at each rung")
    ap.add_argument("--sampler", default=None, help="replays: NAME[:NSGA-II population] (default: the study's)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n-trials", default="32,64,128", help="proposal counts to replay, comma-separated")
    ap.add_argument("--jobs", default="auto", help="replay processes (auto: one per core); with --real: run --jobs")
    ap.add_argument("--chart", default=None, help="write the replay chart here (PNG)")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--bound", default=None, metavar="RUNG:RATIO",
                    help="also the selection bound: every proposal to RUNG epochs, the best share to the end, "
                         "RATIO x the full search's epochs in all (e.g. 1:0.4)")
    ap.add_argument("--real", action="store_true", help="also run the study for real, full and scheduled")
    ap.add_argument("--real-n-trials", type=int, default=None, help="proposals of each real run "
                                                                     "(default: the study's n_trials)")
    ap.add_argument("--data", default=None, help="dataset for --real (default: the study's, else the archive)")
    ap.add_argument("--out-dir", default=None, help="where --real writes its two journals (default: a new temp dir)")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from explorer.core.errors import UserError
    from explorer.study.config import load_config
    from explorer.study.schedule import Schedule, parse_keep

    keep = parse_keep(args.keep)
    try:
        rungs = tuple(int(r) for r in args.rungs.split(","))
        config = load_config(args.study)
        if keep is None:
            raise UserError(f"--keep {args.keep}: give a share in (0, 1) such as 1/3")
        schedule = Schedule(rungs, keep)
        figures: dict = {"study": args.study, "schedule": schedule.to_dict(), "sampler": config.sampler.name,
                         "population_size": config.sampler.population_size}
        if args.bound:
            figures["bound"] = bound(args)
        if not args.skip_replay:
            figures["replay"] = replayed(config, schedule, args)
        if args.real:
            figures["real"] = real(config, schedule, args)
    except (UserError, ValueError) as exc:
        print(f"multifidelity: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures, default=_plain))
    return 0


def bound(args) -> dict:
    """The selection bound (explorer.tabular.multifidelity.selection_bound) at --bound RUNG:RATIO."""
    from explorer.tabular.multifidelity import selection_bound
    from explorer.tabular.tablefile import read_table

    try:
        rung, ratio = args.bound.split(":")
        rung, ratio = int(rung), float(ratio)
    except ValueError:
        raise ValueError(f"--bound {args.bound}: give RUNG:RATIO, a rung epoch and a share of the epochs, "
                         "such as 1:0.4") from None
    sizes = tuple(int(n) for n in args.n_trials.split(","))
    out = selection_bound(read_table(args.table), rung=rung, epochs_ratio=ratio, sizes=sizes)
    print(f"Selection bound: every proposal to epoch {out['rung']} of {out['recipe_epochs']}, the best "
          f"{out['share_kept']:.0%} (by Pareto rank of each score and params) to the end = {out['epochs_ratio']}x "
          f"the epochs; synchronous, {out['draws']} uniform draws, medians (hindsight fit: Spearman "
          f"{out['hindsight_spearman']:.3f} with the final val_acc)")
    for n in sizes:
        row = out[str(n)]
        print(f"  {n:4d} proposals (front: {row['front_share']:.0%} of them; {row['kept']} go on): " + "; ".join(
            f"{k} recall {row[k]['recall']:.3f} HV {row[k]['hv_ratio']:.3f}"
            for k in ("val_acc", "-train_loss", "hindsight", "oracle")))
    return out


def replayed(config, schedule, args) -> dict:
    """Part (1): replays on the table, per proposal count."""
    from explorer.tabular.multifidelity import compare_one, summarise
    from explorer.tabular.search import replay_study
    from explorer.tabular.tablefile import read_table

    table = read_table(args.table)
    cfg = replay_study(config, table)
    if args.sampler:
        from explorer.study.config import SamplerConfig
        from explorer.tabular.search import Contender

        c = Contender.parse(args.sampler)
        cfg = replace(cfg, sampler=SamplerConfig(c.sampler, cfg.sampler.seed, c.population_size))
    if schedule.rungs[-1] >= cfg.trainer.epochs:
        raise ValueError(f"rung {schedule.rungs[-1]} is not below the table's {cfg.trainer.epochs} epochs")
    budget = dict(cfg.budgets).get("params")
    counts = [int(n) for n in args.n_trials.split(",")]
    tasks = [(cfg, table, cfg.sampler.name, cfg.sampler.population_size, seed, n, budget, schedule)
             for n in counts for seed in range(args.seeds)]
    runs, start = [], time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, int(args.jobs) if args.jobs != "auto" else os.cpu_count())) as pool:
        for i, r in enumerate(pool.map(compare_one, tasks, chunksize=1), 1):
            runs.append(r)
            if i % 5 == 0 or i == len(tasks):
                left = (time.perf_counter() - start) / i * (len(tasks) - i)
                print(f"replays: {i}/{len(tasks)}, about {left:.0f} s left", file=sys.stderr)
    out: dict = {"table": args.table, "table_rows": int(len(table.bench)), "table_meta_study": table.meta.get("study"),
                 "recipe_epochs": cfg.trainer.epochs, "seeds": args.seeds, "sampler": cfg.sampler.name,
                 "population_size": cfg.sampler.population_size,
                 "seconds": round(time.perf_counter() - start, 1)}
    print(f"Replayed on {args.table} ({out['table_rows']} networks), {cfg.sampler.name}, schedule rungs "
          f"{list(schedule.rungs)} keep {args.keep}; median [IQR] over {args.seeds} seeds")
    for n in counts:
        s = summarise([r for r in runs if r["n_trials"] == n])
        out[str(n)] = s
        print(f"  {n:4d} proposals: HV ratio {_cell(s['hv_ratio'])}  epochs ratio {_cell(s['epochs_ratio'])}  "
              f"recall {_cell(s['recall'])}  whole-recipe trials {s['completed_mf']['median']:g}  goals "
              + ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in s["goals"].items()))
    if args.chart:
        _chart(out, counts, args.chart)
    return out


def real(config, schedule, args) -> dict:
    """Part (2): the study run twice for real (full budget, scheduled), the same proposals."""
    from explorer import store
    from explorer.study.jobs import parse_jobs
    from explorer.study.loop import run_study
    from explorer.tabular.multifidelity import compare_runs

    n = args.real_n_trials or config.n_trials
    folder = Path(args.out_dir or tempfile.mkdtemp(prefix="multifidelity-"))
    folder.mkdir(parents=True, exist_ok=True)
    jobs = parse_jobs(args.jobs)
    recs, walls = {}, {}
    for label, sched in (("full", None), ("scheduled", schedule)):
        cfg = replace(config, name=f"{config.name}-{label}", schedule=sched, early_stop=None, n_trials=n,
                      storage=None, timeout_s=None)
        url = str(folder / f"{cfg.name}.journal")
        print(f"real run ({label}): {n} proposals, --jobs {args.jobs}, storage {url}", file=sys.stderr)
        start = time.perf_counter()
        summary = run_study(cfg, storage_url=url, data_path=args.data, jobs=jobs, out=sys.stderr, progress=True)
        walls[label] = time.perf_counter() - start
        if summary.interrupted or summary.gave_up:
            raise ValueError(f"the {label} run did not finish: {summary.gave_up or 'interrupted'}")
        recs[label] = store.read_study(store.open_storage(url), cfg.name)
    budget = dict(config.budgets).get("params")
    ref = float(budget) if budget else max(t.num("params") for r in recs.values() for t in r.trials) * 1.01
    out = compare_runs(recs["full"], recs["scheduled"], ref)
    out.update({"n_trials": n, "jobs": args.jobs, "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
                "out_dir": str(folder), "load_average": os.getloadavg()})
    print(f"Real runs ({n} proposals each): HV ratio {out['hv_ratio']:.4f}, epochs ratio {out['epochs_ratio']:.3f}, "
          f"training seconds {out['full']['train_seconds']:.0f} (full) vs {out['scheduled']['train_seconds']:.0f} "
          f"(scheduled), recall {out['recall']:.3f} over {out['shared_networks']} networks both trained; "
          f"load average {out['load_average'][0]:.2f}")
    return out


def _cell(s: dict) -> str:
    return f"{s['median']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}]"


def _chart(out: dict, counts: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for key, label in (("hv_ratio", "hypervolume / full search's"), ("epochs_ratio", "epochs / full search's"),
                       ("recall", "front recall")):
        med = [out[str(n)][key]["median"] for n in counts]
        lo = [out[str(n)][key]["q1"] for n in counts]
        hi = [out[str(n)][key]["q3"] for n in counts]
        ax.plot(counts, med, marker="o", label=label)
        ax.fill_between(counts, lo, hi, alpha=0.15)
    for y in (0.99, 0.4, 0.9):
        ax.axhline(y, color="grey", lw=0.7, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("proposals (trials)")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Multi-fidelity vs full budget, replayed on {Path(out['table']).name} (median, IQR)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    return str(v)


if __name__ == "__main__":
    sys.exit(main())

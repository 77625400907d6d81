"""The quickstart space, measured whole: fidelity at scale, zero-cost scores, search efficiency.

Reads the table (tables/quickstart.csv.gz, made by `explorer table studies/quickstart-table.yaml`)
and reports:
(1) fidelity: Spearman / Kendall (bootstrap 95 % intervals) of the bench recipe's final
    val_acc, of each earlier epoch and of train_loss_sum against the long recipe's accuracy on
    every long row; front precision / recall; the seed-noise floor (two seeds, same recipe);
(2) zero-cost scores: params, MACs, synflow, NASWOT, grad_norm, snip against the bench and the
    long accuracy; which, if any, beats the size alone;
(3) search efficiency: `explorer run`'s own loop replayed on the table (explorer.tabular.replay)
    for each sampler and seed, the hypervolume of the networks found (val_acc vs log10 params,
    reference point: the study's params budget and chance accuracy 0.1) as a fraction of the
    table's exact hypervolume after 8 ... 128 trials (median and IQR over seeds), and the trials
    each needs to reach 95 % of it; random search's trials to 95 % also from 500 uniform draws of
    its distribution (the replays stop at --max-trials, before random gets there).
Writes docs/img/space_table_search.png. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = (8, 16, 32, 64, 128)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(ROOT / "tables/quickstart.csv.gz"))
    ap.add_argument("--study", default=str(ROOT / "studies/quickstart.yaml"), help="the study whose search is replayed")
    ap.add_argument("--samplers", default="random,tpe,nsga2:8,nsga2:16,nsga2:32,gp",
                    help="contenders: name[:NSGA-II population]")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--max-trials", type=int, default=256, help="trained trials per replay")
    ap.add_argument("--gp-trials", type=int, default=64, help="GPSampler's replays stop here (seconds per trial)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chart", default=str(ROOT / "docs/img/space_table_search.png"))
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from explorer.core.errors import UserError
    from explorer.study.config import load_config
    from explorer.tabular import analysis
    from explorer.tabular.tablefile import read_table

    try:
        table = read_table(args.table)
    except UserError as exc:
        print(f"space_table: error: {exc}", file=sys.stderr)
        return 2
    figures: dict = {"table": args.table, "rows": {s: int((table.df["stage"] == s).sum()) for s in ("bench", "long",
                                                                                                       "seed")}}
    figures["fidelity"] = analysis.fidelity(table)
    _print_fidelity(figures["fidelity"])
    figures["proxies"] = analysis.proxies(table)
    _print_proxies(figures["proxies"])
    if not args.skip_search:
        config = load_config(args.study)
        figures["search"] = search(table, config, args)
    print(json.dumps(figures, default=_plain))
    return 0


def search(table, config, args) -> dict:
    from explorer.tabular.replay import reference
    from explorer.tabular.search import Contender, replay_study, run_one, summarise

    if table.meta.get("space") and table.meta["space"] != config.to_dict()["space"]:
        raise SystemExit(f"space_table: {args.study}'s space is not the table's")
    cfg = replay_study(config, table)
    budget = dict(cfg.budgets).get("params")
    ref = reference(table, budget)
    contenders = [Contender.parse(s) for s in args.samplers.split(",")]
    tasks = [(cfg, table, c, seed, args.gp_trials if c.sampler == "gp" else args.max_trials, budget)
             for c in contenders for seed in range(args.seeds)]
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, r in enumerate(pool.map(run_one, tasks, chunksize=1), 1):
            runs.append(r)
            if i % 10 == 0 or i == len(tasks):
                left = (time.perf_counter() - start) / i * (len(tasks) - i)
                print(f"replays: {i}/{len(tasks)}, about {left:.0f} s left", file=sys.stderr)
    summary = summarise(runs, CHECKPOINTS)
    _print_search(summary, ref)
    _chart(runs, args.chart)
    draws = uniform_draws(table, ref, budget)
    _print_draws(draws)
    rnd = summary.get("random", {}).get("trials_to_95")
    if not isinstance(rnd, float):  # the replays stopped before random reached 95 %: the draws say when
        rnd = float(draws["trials_to_95"]["median"])
    return {"uniform_draws": draws, "random_trials_to_95": rnd,
            "reference": {"params": ref.ref_params, "val_acc": ref.ref_acc, "exact_hv": round(ref.hv, 5),
                          "front_size": len(ref.front)},
            "seeds": args.seeds, "max_trials": args.max_trials, "gp_trials": args.gp_trials,
            "seconds": round(time.perf_counter() - start, 1), "samplers": summary,
            "half_of_random": {k: (v["trials_to_95"] <= rnd / 2 if isinstance(v["trials_to_95"], float)
                                   and isinstance(rnd, float) else None) for k, v in summary.items()}}


def uniform_draws(table, ref, budget, draws: int = 500, target: float = 0.95, seed: int = 0) -> dict:
    """Random search's trials to `target` without Optuna, from its distribution: the random sampler
    draws every grid point alike, and neither an over-budget point nor a duplicate takes a trial, so
    the trained networks are the in-budget networks in a uniformly random order (each network is one
    grid point here). Cheap where the replays stop too early (random needs hundreds of trials)."""
    import numpy as np

    from explorer.tabular.replay import hv_fraction

    bench = table.bench
    ids = np.array(bench.index[bench["params"] <= budget] if budget else bench.index)
    rng = np.random.default_rng(seed)
    need, at = [], {k: [] for k in (*CHECKPOINTS, 256, 512)}
    for _ in range(draws):
        order = list(rng.permutation(ids))
        lo, hi = 1, len(order)  # the fraction only grows with k: bisect for the first k reaching target
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if hv_fraction(table, ref, order[:mid]) >= target else (mid + 1, hi)
        need.append(lo)
        for k in at:
            at[k].append(hv_fraction(table, ref, order[:k]))
    q = lambda v: {"median": float(np.median(v)), "q1": float(np.percentile(v, 25)),  # noqa: E731
                   "q3": float(np.percentile(v, 75))}
    return {"draws": draws, "networks": len(ids), "trials_to_95": q(need),
            "hv_fraction": {str(k): q(v) for k, v in at.items()}}


def _print_draws(d: dict) -> None:
    t = d["trials_to_95"]
    cells = "  ".join(f"{k}: {v['median']:.3f}" for k, v in d["hv_fraction"].items())
    print(f"  uniform draws ({d['draws']}, random search's distribution)  {cells}  -> 95% after "
          f"{t['median']:.0f} [{t['q1']:.0f}, {t['q3']:.0f}] trials")


def _print_fidelity(f: dict) -> None:
    print("Fidelity: bench recipe vs long recipe (Spearman [95% CI], Kendall), n =", f["final_val_acc"]["n"])
    rows = [("final val_acc", f["final_val_acc"])]
    rows += [(f"val_acc after epoch {e}", s) for e, s in f["per_epoch"].items()]
    rows += [("-train_loss_sum", f["train_loss_sum"]), ("params alone", f["params_alone"])]
    sn = f["seed_noise"]
    if sn.get("n"):
        rows.append(("seed 0 vs seed 1 (bench)", sn))
    for name, s in rows:
        print(f"  {name:28s} {s['spearman']:6.3f} [{s['spearman_ci'][0]:.3f}, {s['spearman_ci'][1]:.3f}]"
              f"  {s['kendall']:6.3f}  n={s['n']}")
    print(f"  front precision {f['front']['precision']:.3f}, recall {f['front']['recall']:.3f}; seed noise "
          f"{sn.get('acc_std_per_run', float('nan')):.4f} accuracy std per run")


def _print_proxies(p: dict) -> None:
    print("Zero-cost scores: Spearman with the bench accuracy (all networks) and the long accuracy")
    for name, s in p.items():
        if name == "beats_size":
            continue
        long = s["long"]
        lt = f"{long['spearman']:6.3f} [{long['spearman_ci'][0]:.3f}, {long['spearman_ci'][1]:.3f}]" if long else "-"
        print(f"  {name:10s} bench {s['bench']['spearman']:6.3f} [{s['bench']['spearman_ci'][0]:.3f}, "
              f"{s['bench']['spearman_ci'][1]:.3f}]  long {lt}")
    print(f"  beats params/MACs alone: {', '.join(p['beats_size']) or 'none'}")


def _print_search(summary: dict, ref) -> None:
    print(f"Search: HV fraction of the exact front ({len(ref.front)} networks), median [IQR] over seeds")
    for label, s in summary.items():
        cells = "  ".join(f"{k}: {v['median']:.3f} [{v['q1']:.3f}, {v['q3']:.3f}]" for k, v in s["hv_fraction"].items())
        print(f"  {label:22s} {cells}  -> 95% after {s['trials_to_95']} trials ({s['reached_95']}/{s['seeds']} "
              "seeds reached it)")


def _chart(runs: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label in dict.fromkeys(r["label"] for r in runs):
        v = np.array([r["fractions"] for r in runs if r["label"] == label])
        k = np.arange(1, v.shape[1] + 1)
        med, q1, q3 = np.median(v, 0), np.percentile(v, 25, 0), np.percentile(v, 75, 0)
        ax.plot(k, med, label=label)
        ax.fill_between(k, q1, q3, alpha=0.15)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("trained trials")
    ax.set_ylabel("hypervolume / exact front's")
    ax.set_title("Replayed on the quickstart table (median, IQR over seeds)")
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

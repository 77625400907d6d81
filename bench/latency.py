"""Latency measurement: spread over repeats of one network, rank agreement of two passes over 20 networks.

(a) ours: explorer.latency.measure.measure inside explorer.latency.quiet.measuring (eval + inference mode,
    warm-up, a fixed thread count, channels-last, timed runs until the 95% CI of the median
    is within 2% of it, the median);
(b) naive, the baseline, measured in the same run and alternated with (a): the mean of 10
    forward passes timed with perf_counter, model.eval() but no warm-up, no inference mode,
    torch's default thread count, contiguous tensors (what a quick script does).
Each of our measurements also records `cpu_share`, the CPU time it got over wall time x
threads (below 1: processes that are not ours took turns on its cores), and `cpu_ms`, the
median CPU time per pass, whose CV is printed too: the spread such processes cannot cause.

Spread: coefficient of variation (std / mean) of `--repeats` measurements of one network
(squeezenet_cifar at 32 px; goal <= 5% on a quiet CPU). Rank agreement: Spearman's rho
between two passes over `--networks` networks drawn from studies/full_nsga2.yaml's space at
evenly spaced MAC quantiles up to `--max-macs` (goal >= 0.95). The load average is printed
at the start and the end: other processes on the machine are noise this cannot remove.

Run: python bench/latency.py [--repeats 10] [--networks 20] [--threads 1] [--device cpu]
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from explorer import build_model, estimate_cost, preset
from explorer.latency.measure import LatencyConfig, measure, setting_for
from explorer.latency.quiet import measuring
from explorer.study.config import load_config
from explorer.study.space import Space

ROOT = Path(__file__).resolve().parents[1]


def ours(model, setting, extra: dict[str, list[float]]) -> float:
    """Milliseconds: our measurement, in quiet; appends its cpu_share and cpu_ms to `extra`."""
    with measuring() as calm:
        lat = measure(model, setting, quiet=calm)
    extra["share"].append(lat.cpu_share)
    extra["cpu_ms"].append(lat.cpu_ms)
    return lat.ms


def naive(model, input_size: int, runs: int = 10) -> float:
    """Milliseconds: mean of `runs` timed forward passes, no warm-up, default threads."""
    model.eval()
    x = torch.randn(1, 3, input_size, input_size)
    start = time.perf_counter()
    for _ in range(runs):
        model(x)
    return 1e3 * (time.perf_counter() - start) / runs


def cv(values: list[float]) -> float:
    """Coefficient of variation: sample std over mean."""
    return statistics.stdev(values) / statistics.fmean(values)


def networks(n: int, max_macs: float, seed: int = 0) -> list:
    """n specs of full_nsga2's space at evenly spaced MAC quantiles (at most max_macs)."""
    space = Space.from_config(load_config(ROOT / "studies/full_nsga2.yaml"))
    rng = random.Random(seed)
    specs = [space.spec(space.sample(rng)) for _ in range(4000)]
    specs = sorted((s for s in specs if estimate_cost(s).macs <= max_macs), key=lambda s: estimate_cost(s).macs)
    return [specs[round(i * (len(specs) - 1) / (n - 1))] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-macs", type=float, default=3e8, help="largest network in the rank test")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    load_start, started = os.getloadavg(), time.perf_counter()
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in load_start)}")
    cfg = LatencyConfig(threads=args.threads)

    one = preset("squeezenet_cifar")
    model, setting = build_model(one), setting_for(cfg, args.device, one.input_size)
    print(f"setting: {setting.label()}")
    a, b, extra = [], [], {"share": [], "cpu_ms": []}
    for _ in range(args.repeats):  # alternated, so both see the same load
        a.append(ours(model, setting, extra))
        b.append(naive(model, one.input_size))
    print(f"one network ({estimate_cost(one).macs / 1e6:.0f}M MACs), {args.repeats} repeats: "
          f"ours median {statistics.median(a):.3f} ms, CV {100 * cv(a):.2f}%; "
          f"naive median {statistics.median(b):.3f} ms, CV {100 * cv(b):.2f}%; "
          f"ours in CPU time per pass {statistics.median(extra['cpu_ms']):.3f} ms, CV {100 * cv(extra['cpu_ms']):.2f}%")
    cpu_cv = cv(extra["cpu_ms"])

    specs = networks(args.networks, args.max_macs)
    models = [build_model(s) for s in specs]
    passes: dict[str, list[list[float]]] = {"ours": [[], []], "naive": [[], []]}
    for p in range(2):
        for s, m in zip(specs, models):
            st = setting_for(cfg, args.device, s.input_size)
            passes["ours"][p].append(ours(m, st, extra))
            passes["naive"][p].append(naive(m, s.input_size))
    rho = {k: float(pd.Series(v[0]).corr(pd.Series(v[1]), method="spearman")) for k, v in passes.items()}
    low, high = min(passes["ours"][0]), max(passes["ours"][0])
    print(f"{args.networks} networks ({estimate_cost(specs[0]).macs / 1e6:.1f}M to "
          f"{estimate_cost(specs[-1]).macs / 1e6:.0f}M MACs, {low:.2f} to {high:.2f} ms), two passes: "
          f"Spearman ours {rho['ours']:.3f}, naive {rho['naive']:.3f}")
    load_end = os.getloadavg()
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in load_end)}; our measurements got "
          f"{100 * statistics.median(extra['share']):.0f}% of their CPU threads (median; min "
          f"{100 * min(extra['share']):.0f}%)")
    print(json.dumps({
        "setting": setting.label(), "repeats": args.repeats, "networks": args.networks,
        "cv": round(cv(a), 4), "cv_naive": round(cv(b), 4), "cv_naive_over_ours": round(cv(b) / cv(a), 2),
        "cv_goal": 0.05, "cv_met": cv(a) <= 0.05,
        "spearman": round(rho["ours"], 4), "spearman_naive": round(rho["naive"], 4),
        "spearman_goal": 0.95, "spearman_met": rho["ours"] >= 0.95,
        "median_ms_one_network": round(statistics.median(a), 3),
        "cv_cpu_time": round(cpu_cv, 4),
        "cpu_share_median": round(statistics.median(extra["share"]), 3), "cpu_share_min": round(min(extra["share"]), 3),
        "load_avg_start": [round(v, 2) for v in load_start], "load_avg_end": [round(v, 2) for v in load_end],
        "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()

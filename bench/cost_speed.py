"""Analytic cost vs fvcore on the same specs, and a 100,000-spec landscape of the space.

Run: python bench/cost_speed.py [--n-fvcore 30] [--landscape 100000]
Last line: one JSON object with `analytic_vs_fvcore` and `landscape_100k_s`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import time

from explorer import SqueezeSpec, build_model, estimate_cost
from explorer.core.errors import SpecError
from explorer.design.cost import fvcore_cost


def grid():
    """An endless walk over a large grid of the design space (valid points only)."""
    axes = itertools.product(
        [16, 32, 64, 96, 128], [0, 32, 64, 128], [1, 2, 3, 4], [0.0, 0.25, 0.5, 0.75, 1.0],
        [0.125, 0.25, 0.5, 0.75, 1.0], ["v1_0", "v1_1", "cifar"],
        [(0, 3, 7), (0, 2, 4), (0, 1, 2), (3, 7), (1,), ()], ["none", "simple", "complex"],
        [False, True], [32, 224])
    for be, ie, fq, pct, sr, stem, pools, bypass, bn, size in axes:
        try:
            yield SqueezeSpec(base_e=be, incr_e=ie, freq=fq, pct_3x3=pct, sr=sr, stem=stem,
                              pools=pools, bypass=bypass, batchnorm=bn, input_size=size)
        except SpecError:
            continue


def time_per_spec(fn, specs, repeats):
    """Median over repeats of the mean seconds per spec."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for spec in specs:
            fn(spec)
        runs.append((time.perf_counter() - start) / len(specs))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-fvcore", type=int, default=30, help="specs counted by both methods")
    parser.add_argument("--landscape", type=int, default=100_000, help="specs in the landscape")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("fvcore").setLevel(logging.ERROR)

    # Every 997th grid point: a spread of stems, pools, bypasses and sizes.
    sample = list(itertools.islice(grid(), 0, 997 * args.n_fvcore, 997))
    models = {spec: build_model(spec) for spec in sample}  # building is not counting
    fv = time_per_spec(lambda s: fvcore_cost(models[s], s.input_size), sample, args.repeats)
    an = time_per_spec(estimate_cost, sample * 50, args.repeats)
    agree = all(fvcore_cost(models[s], s.input_size)[:2] == (estimate_cost(s).macs, estimate_cost(s).params)
                for s in sample)
    print(f"fvcore   {fv * 1e3:9.3f} ms/spec  (trace of a built model, {len(sample)} specs)")
    print(f"analytic {an * 1e6:9.3f} us/spec  -> {fv / an:,.0f}x faster; counts agree: {agree}")

    start = time.perf_counter()
    n, best = 0, None
    for spec in itertools.islice(grid(), args.landscape):
        cost = estimate_cost(spec)  # make + validate + expand + cost, as a sweep does
        n += 1
        if best is None or cost.macs < best[0]:
            best = (cost.macs, spec)
    landscape_s = time.perf_counter() - start
    print(f"landscape: {n:,} specs validated and costed in {landscape_s:.2f} s "
          f"({landscape_s / n * 1e6:.1f} us/spec, spec construction included)")
    print(json.dumps({"fvcore_ms_per_spec": round(fv * 1e3, 3), "analytic_us_per_spec": round(an * 1e6, 3),
                      "analytic_vs_fvcore": round(fv / an), "counts_agree": agree,
                      "landscape_specs": n, "landscape_100k_s": round(landscape_s * 100_000 / n, 3)}))


if __name__ == "__main__":
    main()

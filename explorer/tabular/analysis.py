"""What the table says: fidelity at scale, zero-cost scores, and search efficiency (pure functions).

All rank statistics come from explorer.results.rankstats (Spearman, Kendall tau-b, paired
percentile-bootstrap 95 % intervals); fronts are val_acc (max) vs params (min).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from explorer.results import rankstats as rs
from explorer.results.pareto import pareto_front
from explorer.tabular.tablefile import PROXIES, Table, curve

SIZE_SCORES = ("params", "macs")  # the scores every proxy has to beat: the size alone


def _stat(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman and Kendall of x against y, each with its bootstrap interval and n."""
    sp = rs.bootstrap_ci(x, y, rs.spearman)
    kt = rs.bootstrap_ci(x, y, rs.kendall)
    return {"n": sp.n, "spearman": round(sp.value, 4), "spearman_ci": sp.as_list(),
            "spearman_ci_width": round(sp.high - sp.low, 4), "kendall": round(kt.value, 4),
            "kendall_ci": kt.as_list()}


def paired(table: Table, a: str, b: str) -> pd.DataFrame:
    """Rows of stage `a` joined to stage `b` on spec_id (suffixes _a, _b)."""
    return table.stage(a).join(table.stage(b), how="inner", lsuffix="_a", rsuffix="_b")


def fidelity(table: Table) -> dict[str, Any]:
    """How the bench recipe ranks networks as the long recipe does, beside the seed-noise floor."""
    both = paired(table, "bench", "long")
    long_acc = both["val_acc_b"].to_numpy(dtype=float)
    epochs = int(table.bench["epochs"].max())
    out: dict[str, Any] = {"final_val_acc": _stat(both["val_acc_a"], long_acc)}
    bench_curve = curve(both.rename(columns=lambda c: c.removesuffix("_a")), epochs)
    out["per_epoch"] = {str(e + 1): _stat(bench_curve[:, e], long_acc) for e in range(epochs)}
    out["train_loss_sum"] = _stat(-both["train_loss_sum_a"].to_numpy(dtype=float), long_acc)  # lower: better
    out["params_alone"] = _stat(both["params_a"].to_numpy(dtype=float), long_acc)
    params = both["params_a"].to_numpy(dtype=float)
    p, r = rs.front_agreement(pareto_front(params, both["val_acc_a"]), pareto_front(params, long_acc))
    out["front"] = {"precision": round(p, 4), "recall": round(r, 4),
                    "long_front_size": int(pareto_front(params, long_acc).sum())}
    out["seed_noise"] = seed_noise(table)
    out["long_recipe"] = {"epochs": int(table.stage("long")["epochs"].max()) if len(both) else None,
                          "bench_epochs": epochs}
    return out


def seed_noise(table: Table) -> dict[str, Any]:
    """Two seeds of the bench recipe on the same networks: their rank agreement and the accuracy spread."""
    both = paired(table, "bench", "seed")
    if both.empty:
        return {"n": 0}
    a, b = both["val_acc_a"].to_numpy(dtype=float), both["val_acc_b"].to_numpy(dtype=float)
    diff = a - b
    return {**_stat(a, b), "acc_std_per_run": round(float(np.std(diff, ddof=1) / math.sqrt(2)), 4),
            "mean_abs_diff": round(float(np.mean(np.abs(diff))), 4)}


def proxies(table: Table) -> dict[str, Any]:
    """Each zero-cost score's (and the size's) rank agreement with the bench and the long accuracy."""
    bench = table.bench
    long = paired(table, "bench", "long")
    out: dict[str, Any] = {}
    for name in SIZE_SCORES + tuple(p for p in PROXIES if p in bench.columns):
        out[name] = {"bench": _stat(bench[name].to_numpy(dtype=float), bench["val_acc"].to_numpy(dtype=float)),
                     "long": _stat(long[f"{name}_a"].to_numpy(dtype=float), long["val_acc_b"].to_numpy(dtype=float))
                     if len(long) else None}
    best_size = max(abs(out[s]["bench"]["spearman"]) for s in SIZE_SCORES)
    out["beats_size"] = sorted(n for n in out if n not in SIZE_SCORES and _beats(out[n], out, best_size))
    return out


def _beats(score: dict[str, Any], all_: dict[str, Any], best_size: float) -> bool:
    """Better than the best size score on both the bench and the long accuracy, beyond its interval."""
    def low(stat: dict[str, Any]) -> float:
        lo, hi = stat["spearman_ci"]
        return min(abs(lo), abs(hi)) if np.sign(lo) == np.sign(hi) else 0.0

    long_best = max(abs(all_[s]["long"]["spearman"]) for s in SIZE_SCORES if all_[s]["long"])
    return low(score["bench"]) > best_size and (score["long"] is None or low(score["long"]) > long_best)


def trials_to(fractions: Sequence[float], checkpoints: Sequence[int], target: float) -> float:
    """The first checkpoint whose HV fraction reaches `target` (inf if none)."""
    return next((float(k) for k, f in zip(checkpoints, fractions) if f >= target), math.inf)

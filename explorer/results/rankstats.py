"""Rank agreement between two measurements of the same networks: pure maths, numpy only.

Spearman's rho is Pearson's correlation of the ranks (ties take their average rank);
Kendall's tau is tau-b (ties in either variable corrected for), the variants
scipy.stats.spearmanr and scipy.stats.kendalltau compute by default (scipy is not a
dependency; the tests compare against it).

The 95 % interval is a paired percentile bootstrap: `n_boot` resamples of the pairs drawn
with replacement by `numpy.random.default_rng(seed).integers(0, n, (n_boot, n))`, the
statistic computed on each, and the 2.5th and 97.5th percentiles (numpy's linear
interpolation) of the finite values taken. A resample in which either variable is constant
has no correlation and is left out (`BootCI.dropped` counts them). With fewer than 3 pairs
every figure is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

N_BOOT, SEED, LEVEL = 2000, 0, 0.95


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    out = np.empty(len(x))
    out[order] = (first[group] + last[group]) / 2 + 1
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties); NaN with fewer than 2 pairs or a constant variable."""
    x, y = _pairs(x, y)
    return _pearson(ranks(x), ranks(y)) if len(x) >= 2 else math.nan


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; NaN with fewer than 2 pairs or a constant variable."""
    x, y = _pairs(x, y)
    if len(x) < 2:
        return math.nan
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    n1, n2 = int(np.sum(dx == 0)), int(np.sum(dy == 0))
    den = math.sqrt((n0 - n1) * (n0 - n2))
    return float(np.sum(dx * dy)) / den if den > 0 else math.nan


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and equal in length, got {x.shape} and {y.shape}")
    return x, y


@dataclass(frozen=True)
class BootCI:
    """A statistic, its percentile-bootstrap interval and how it was drawn."""

    value: float
    low: float
    high: float
    n: int
    n_boot: int
    seed: int
    dropped: int  # resamples with a constant variable (no correlation), left out

    def as_list(self) -> list[float]:
        """[low, high], rounded to 4 places (NaN stays NaN)."""
        return [round(self.low, 4), round(self.high, 4)]


def bootstrap_ci(x: Sequence[float], y: Sequence[float], stat: Callable[[np.ndarray, np.ndarray], float], *,
                 n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> BootCI:
    """`stat(x, y)` with its paired percentile-bootstrap interval (see the module docstring)."""
    x, y = _pairs(x, y)
    n = len(x)
    value = stat(x, y) if n >= 3 else math.nan
    if n < 3:
        return BootCI(value, math.nan, math.nan, n, n_boot, seed, 0)
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    draws = np.array([stat(x[r], y[r]) for r in idx])
    good = draws[np.isfinite(draws)]
    if not len(good):
        return BootCI(value, math.nan, math.nan, n, n_boot, seed, n_boot)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(good, [tail, 100 - tail])
    return BootCI(value, float(low), float(high), n, n_boot, seed, n_boot - len(good))


def tie_threshold(short: Sequence[float], long: Sequence[float]) -> float:
    """The largest short-run difference of a pair the long run orders the other way (0 if none):
    every pair further apart than this kept its order."""
    s, lo = _pairs(short, long)
    i, j = np.triu_indices(len(s), k=1)
    swapped = np.sign(s[i] - s[j]) * np.sign(lo[i] - lo[j]) < 0
    return float(np.max(np.abs(s[i] - s[j])[swapped])) if swapped.any() else 0.0


def front_agreement(short_front: Sequence[bool], long_front: Sequence[bool]) -> tuple[float, float]:
    """(precision, recall) of the short front as a guess of the long front (masks over the same points)."""
    s, lo = np.asarray(short_front, dtype=bool), np.asarray(long_front, dtype=bool)
    hit = int(np.sum(s & lo))
    precision = hit / int(s.sum()) if s.any() else math.nan
    recall = hit / int(lo.sum()) if lo.any() else math.nan
    return precision, recall

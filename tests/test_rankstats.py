"""Rank agreement maths (explorer.results.rankstats) against scipy.stats and hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer.results import rankstats as rs

stats = pytest.importorskip("scipy.stats")

CASES = [
    ([0.41, 0.45, 0.38, 0.50, 0.47, 0.44], [0.55, 0.61, 0.57, 0.66, 0.60, 0.58]),
    ([1, 2, 2, 3, 5, 5, 5, 8], [2, 1, 4, 4, 6, 5, 9, 7]),  # ties in both
    ([3, 1, 2], [1, 2, 3]),
]


@pytest.mark.parametrize("x,y", CASES)
def test_spearman_and_kendall_match_scipy(x, y):
    assert rs.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert rs.kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_hand_values():
    # 4 points, one swap of neighbours: d = (0, 0, 1, -1), rho = 1 - 6 * 2 / (4 * 15) = 0.8;
    # 6 pairs, 5 concordant, 1 discordant: tau = 4 / 6.
    x, y = [1, 2, 3, 4], [10, 20, 40, 30]
    assert rs.spearman(x, y) == pytest.approx(0.8)
    assert rs.kendall(x, y) == pytest.approx(4 / 6)
    assert rs.ranks([5, 1, 5, 3]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_constant_or_short_is_nan():
    assert math.isnan(rs.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(rs.kendall([1], [2]))
    ci = rs.bootstrap_ci([1, 2], [2, 1], rs.spearman)
    assert math.isnan(ci.value) and math.isnan(ci.low)


def test_bootstrap_interval_is_the_documented_percentile_bootstrap():
    """Redraw the documented resamples here and take scipy's rho on each."""
    x, y = [0.41, 0.45, 0.38, 0.50], [0.55, 0.61, 0.57, 0.66]
    ci = rs.bootstrap_ci(x, y, rs.spearman, n_boot=300, seed=7)
    idx = np.random.default_rng(7).integers(0, len(x), (300, len(x)))
    xa, ya = np.asarray(x), np.asarray(y)
    draws = []
    for r in idx:
        if len(set(xa[r])) > 1 and len(set(ya[r])) > 1:
            draws.append(stats.spearmanr(xa[r], ya[r]).statistic)
    assert ci.dropped == 300 - len(draws) and ci.dropped > 0  # 4 points: about 1 in 64 resamples is constant
    assert [ci.low, ci.high] == pytest.approx(np.percentile(draws, [2.5, 97.5]).tolist(), abs=1e-12)
    assert ci.value == pytest.approx(stats.spearmanr(x, y).statistic)


def test_bootstrap_agrees_with_scipy_bootstrap_on_large_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=0.7, size=60)
    ours = rs.bootstrap_ci(x, y, rs.kendall, n_boot=1500)
    theirs = stats.bootstrap((x, y), lambda a, b: stats.kendalltau(a, b).statistic, paired=True,
                             vectorized=False, n_resamples=1500, method="percentile",
                             rng=np.random.default_rng(2)).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.04)
    assert ours.high == pytest.approx(theirs.high, abs=0.04)
    assert ours.low < ours.value < ours.high


def test_tie_threshold_and_front_agreement():
    # pairs: (0.40, 0.42) swap with short diff 0.02; (0.42, 0.47) swap with diff 0.05
    short, long = [0.40, 0.42, 0.47, 0.60], [0.51, 0.50, 0.49, 0.70]
    assert rs.tie_threshold(short, long) == pytest.approx(0.07)  # 0.40 vs 0.47: long 0.51 > 0.49
    assert rs.tie_threshold([1, 2, 3], [1, 2, 3]) == 0.0
    p, r = rs.front_agreement([True, True, False, True], [True, False, True, True])
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert math.isnan(rs.front_agreement([False], [True])[0])

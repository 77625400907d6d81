"""The size-aware early-stopping rule: pure, judged against hand-computed quantiles."""

from __future__ import annotations

import pytest

from explorer.study.early_stop import Peer, SizeAwareRule, quantile


def peers(size: float, accs_at_epoch1: list[float]) -> list[Peer]:
    return [Peer(size, (0.1, a, 0.5)) for a in accs_at_epoch1]


def test_quantile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    values = [0.3, 0.1, 0.7, 0.4, 0.25]
    for q in (0.1, 0.25, 0.5, 0.9):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_stops_below_the_median_of_similar_size_peers():
    rule = SizeAwareRule(warmup_epochs=1, min_trials=4, quantile=0.5, size_factor=2.0)
    ps = peers(1000, [0.40, 0.42, 0.44, 0.46])  # median 0.43
    reason = rule.check(1200, 1, 0.35, ps)
    assert reason is not None and "0.4300" in reason and "4 finished trials" in reason
    assert rule.check(1200, 1, 0.45, ps) is None


def test_only_peers_within_the_size_factor_count():
    rule = SizeAwareRule(warmup_epochs=0, min_trials=3, size_factor=2.0)
    # Large networks score high; a small one must not be judged against them.
    ps = peers(100_000, [0.6, 0.62, 0.64]) + peers(1000, [0.2, 0.22])
    assert rule.peers_at(1000, 1, ps) == [0.2, 0.22]
    assert rule.check(1000, 1, 0.1, ps) is None  # only 2 comparable peers < min_trials
    assert rule.check(60_000, 1, 0.5, ps) is not None  # within 2x of 100k: judged, below 0.62


def test_no_stop_during_warmup_or_at_the_last_epoch():
    rule = SizeAwareRule(warmup_epochs=2, min_trials=1)
    ps = [Peer(10, (0.9, 0.9, 0.9, 0.9))]
    assert rule.check(10, 0, 0.0, ps) is None
    assert rule.check(10, 1, 0.0, ps) is None  # epoch 2 (1-based) is still warm-up
    assert rule.check(10, 2, 0.0, ps) is not None
    assert rule.check(10, 3, 0.0, ps, last_epoch=3) is None  # stopping now saves nothing


def test_peers_with_shorter_curves_are_ignored_at_later_epochs():
    rule = SizeAwareRule(warmup_epochs=0, min_trials=2)
    ps = [Peer(10, (0.5,)), Peer(10, (0.5, 0.6)), Peer(10, (0.5, 0.7))]
    assert rule.peers_at(10, 1, ps) == [0.6, 0.7]

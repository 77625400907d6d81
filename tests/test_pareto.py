"""explorer.results.pareto on hand-computed cases, and the fast front against a brute-force one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.results import pareto

NAN = float("nan")


def brute_front(size, acc):
    """O(n^2) by the definition: i is on the front iff valid and no valid j dominates it."""
    n = len(size)
    out = []
    for i in range(n):
        if not (math.isfinite(size[i]) and math.isfinite(acc[i])):
            out.append(False)
            continue
        dominated = any(
            math.isfinite(size[j]) and math.isfinite(acc[j])
            and size[j] <= size[i] and acc[j] >= acc[i] and (size[j] < size[i] or acc[j] > acc[i])
            for j in range(n))
        out.append(not dominated)
    return out


# --- fronts ---------------------------------------------------------------------------

def test_front_simple():
    # (1, .5) and (2, .7) are optimal; (3, .6) is beaten by (2, .7); (2, .6) by (2, .7).
    mask = pareto.pareto_front([1, 2, 3, 2], [0.5, 0.7, 0.6, 0.6])
    assert mask.tolist() == [True, True, False, False]


def test_front_duplicates_are_all_kept():
    # two identical optimal points do not dominate each other
    mask = pareto.pareto_front([1, 1, 2], [0.5, 0.5, 0.4])
    assert mask.tolist() == [True, True, False]


def test_front_equal_accuracy_larger_size_is_dominated():
    mask = pareto.pareto_front([1, 2], [0.5, 0.5])
    assert mask.tolist() == [True, False]


def test_front_nan_and_inf_are_never_on_it_and_dominate_nothing():
    # (nan, .99) would dominate everything if it counted; (1, inf) likewise
    mask = pareto.pareto_front([NAN, 1, 2, 3], [0.99, math.inf, 0.4, NAN])
    assert mask.tolist() == [False, False, True, False]


def test_front_empty_and_all_nan():
    assert pareto.pareto_front([], []).tolist() == []
    assert pareto.pareto_front([NAN, NAN], [0.1, NAN]).tolist() == [False, False]


def test_front_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        pareto.pareto_front([1, 2], [0.5])


def test_constrained_front_recomputes_under_a_budget():
    size = [1, 2, 3, 4]
    acc = [0.5, 0.6, 0.7, 0.8]  # all four on the unconstrained front
    within = pareto.budget_mask({"params": size}, {"params": 2.5})
    assert within.tolist() == [True, True, False, False]
    assert pareto.constrained_front(size, acc, within).tolist() == [True, True, False, False]
    # dropping the small ones leaves (3, .7) and (4, .8) on the front
    only_big = [False, False, True, True]
    assert pareto.constrained_front(size, acc, only_big).tolist() == [False, False, True, True]


def test_constrained_front_promotes_points_hidden_by_excluded_ones():
    # (2, .6) is dominated by (1, .9); exclude (1, .9) and (2, .6) joins the front
    mask = pareto.constrained_front([1, 2, 3], [0.9, 0.6, 0.5], [False, True, True])
    assert mask.tolist() == [False, True, False]


def test_front_by_group_is_per_study():
    size = [1, 2, 1, 2]
    acc = [0.9, 0.8, 0.5, 0.6]
    groups = ["a", "a", "b", "b"]
    # in 'a' (2, .8) is dominated by (1, .9); in 'b' both are optimal
    assert pareto.front_by_group(size, acc, groups).tolist() == [True, False, True, True]


def test_front_envelope_and_noise_band():
    size = [1, 2, 3]
    acc = [0.5, 0.4, 0.9]
    assert pareto.front_envelope(size, acc).tolist() == [0.5, 0.5, 0.9]
    # (2, .4) is 0.1 below the envelope: inside a 2-sigma band of std .06, outside 1 sigma
    assert pareto.noise_band(size, acc, [0.06, 0.06, 0.06], k=1).tolist() == [True, False, True]
    assert pareto.noise_band(size, acc, [0.06, 0.06, 0.06], k=2).tolist() == [True, True, True]


def test_step_line_sorts_by_size():
    x, y = pareto.step_line([3, 1, 2], [0.7, 0.5, 0.6])
    assert x.tolist() == [1, 2, 3] and y.tolist() == [0.5, 0.6, 0.7]


def test_classify_roles():
    size = [1, 2, 3, 4, 5, NAN]
    acc = [0.5, 0.4, 0.9, NAN, 0.95, 0.99]
    infeasible = [False, False, False, True, False, False]
    allowed = [True, True, True, True, False, True]
    roles = pareto.classify(size, acc, infeasible, allowed)
    assert roles.tolist() == ["front", "dominated", "front", "infeasible", "excluded", "missing"]


def test_pruned_and_duplicate_points_never_make_the_front():
    # Trial 1 was pruned at 0.8 (a partial accuracy); without it, trial 2 joins the front.
    size, acc = [1, 2, 3], [0.5, 0.8, 0.7]
    allowed, infeasible = [True] * 3, [False] * 3
    assert pareto.classify(size, acc, infeasible, allowed).tolist() == ["front", "front", "dominated"]
    roles = pareto.classify(size, acc, infeasible, allowed, final=[True, False, True])
    assert roles.tolist() == ["front", "partial", "front"]


# --- budgets and filters --------------------------------------------------------------

def test_budget_mask_is_inclusive_and_missing_cost_fails_a_set_limit():
    costs = {"params": [10, 20, 30], "latency_ms": [1.0, NAN, 3.0]}
    assert pareto.budget_mask(costs, {"params": 20, "latency_ms": None}).tolist() == [True, True, False]
    assert pareto.budget_mask(costs, {"latency_ms": 5.0}).tolist() == [True, False, True]


def test_filter_mask_ranges_and_sets():
    frame = pd.DataFrame({"sr": [0.125, 0.25, 0.5, NAN], "bypass": ["none", "simple", "none", "complex"]})
    assert pareto.filter_mask(frame, {"sr": (0.2, 0.5)}).tolist() == [False, True, True, False]
    assert pareto.filter_mask(frame, {"sr": (None, 0.25)}).tolist() == [True, True, False, False]
    assert pareto.filter_mask(frame, {"bypass": ["none"]}).tolist() == [True, False, True, False]
    assert pareto.filter_mask(frame, {}).tolist() == [True] * 4


# --- EDFs -----------------------------------------------------------------------------

def test_edf_counts_ties_together_and_drops_nan():
    x, y = pareto.edf([0.3, 0.1, 0.1, 0.2, NAN])
    assert x.tolist() == [0.1, 0.2, 0.3]
    assert y.tolist() == [0.5, 0.75, 1.0]


def test_edf_weighted():
    # weights 1, 3: the heavier model holds 3/4 of the mass
    x, y = pareto.edf([0.2, 0.1], [1.0, 3.0])
    assert x.tolist() == [0.1, 0.2]
    assert y.tolist() == [0.75, 1.0]


def test_edf_zero_weights_are_dropped_and_empty_is_empty():
    x, y = pareto.edf([0.1, 0.2], [0.0, 2.0])
    assert x.tolist() == [0.2] and y.tolist() == [1.0]
    x, y = pareto.edf([])
    assert x.size == 0 and y.size == 0


def test_size_normalised_weights_by_hand():
    # log10 sizes: a -> 0, 1, 2; b -> 0, 0, 3. Three bins over [0, 3]: [0,1) [1,2) [2,3].
    # a has one model per bin; b has two in bin 0, none in bin 1, one in bin 2.
    # Shared bins: 0 and 2, each worth 1/2 per group.
    w = pareto.size_normalised_weights([1, 10, 100, 1, 1, 1000], ["a", "a", "a", "b", "b", "b"], bins=3)
    assert w.tolist() == [0.5, 0.0, 0.5, 0.25, 0.25, 0.5]


def test_size_normalised_weights_no_shared_bin():
    w = pareto.size_normalised_weights([1, 1000], ["a", "b"], bins=3)
    assert w.tolist() == [0.0, 0.0]


def test_knob_groups_few_values_and_quantile_bins():
    assert pareto.knob_groups(["none", "simple", None]).tolist() == ["none", "simple", "n/a"]
    groups = pareto.knob_groups(list(range(1, 9)), max_groups=2)  # medians split 1..4 | 5..8
    assert groups.tolist() == ["1–4"] * 4 + ["5–8"] * 4


# --- hypervolume ----------------------------------------------------------------------

def test_hypervolume_by_hand():
    # front (1, .5), (2, .7); (3, .6) dominated; ref (4, 0):
    # [1,2] x [0,.5] = .5  plus  [2,4] x [0,.7] = 1.4  ->  1.9
    assert pareto.hypervolume([1, 2, 3], [0.5, 0.7, 0.6], ref_size=4, ref_acc=0) == pytest.approx(1.9)


def test_hypervolume_log_size_and_reference_clipping():
    # log10 sizes 0 and 1, ref 100 -> 2: [0,1] x [.2,.5] = .3 plus [1,2] x [.2,.7] = .5
    hv = pareto.hypervolume([1, 10, 1000], [0.5, 0.7, 0.9], ref_size=100, ref_acc=0.2, log_size=True)
    assert hv == pytest.approx(0.8)
    assert pareto.hypervolume([5], [0.9], ref_size=4, ref_acc=0) == 0.0


# --- selection events -----------------------------------------------------------------

def test_selected_rows_from_customdata_and_from_trace_positions():
    trace_rows = [[10, 11, 12], [], [20, 21]]
    points = [
        {"curve_number": 0, "point_index": 2, "customdata": 12},    # customdata wins
        {"curve_number": 2, "point_index": 1},                       # by position -> 21
        {"curve_number": 0, "point_index": 0, "customdata": [10.0, 0.5]},
        {"curve_number": 1, "point_index": 0},                       # the step line: ignored
        {"curve_number": 0, "point_index": 9},                       # out of range: ignored
        {"curve_number": 2, "point_index": 1, "customdata": 21},     # duplicate
        {"curve_number": 1, "point_index": [3, 4], "z": 7},          # a density cell: ignored
    ]
    assert pareto.selected_rows(points, trace_rows) == [10, 12, 21]
    assert pareto.selected_rows([], trace_rows) == []


# --- property: fast front == brute force ----------------------------------------------

values = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, NAN]), st.floats(-5, 5, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, values), max_size=40))
def test_front_matches_brute_force(points):
    size = [p[0] for p in points]
    acc = [p[1] for p in points]
    assert pareto.pareto_front(size, acc).tolist() == brute_front(size, acc)


def test_front_on_a_million_points_rises_strictly():
    rng = np.random.default_rng(0)
    size, acc = rng.random(1_000_000), rng.random(1_000_000)
    mask = pareto.pareto_front(size, acc)
    # on the front, accuracy rises strictly with size
    order = np.argsort(size[mask])
    assert np.all(np.diff(acc[mask][order]) > 0)


def test_front_mask_with_two_costs_hand_case():
    # (acc, params, macs): C is dominated by B (less accurate, more params and MACs); E is not
    # dominated by D (same acc, more params, but fewer MACs); a NaN accuracy is never on it.
    acc = [0.50, 0.60, 0.55, 0.70, 0.70, float("nan")]
    costs = [[100, 50], [200, 40], [300, 90], [400, 30], [500, 20], [10, 10]]
    assert pareto.front_mask(acc, costs) == [True, True, False, True, True, False]
    # one cost: E now loses to D (same acc, more params)
    assert pareto.front_mask(acc, [[c[0]] for c in costs]) == [True, True, False, True, False, False]

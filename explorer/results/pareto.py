"""Pure analysis of stored trials: Pareto fronts, budgets, filters, EDFs, hypervolume.

No Streamlit here: the dashboard computes with these functions and only draws.

Conventions. Size (parameters, MACs, MB, latency) is minimised and accuracy maximised.
Point j dominates point i when size_j <= size_i and acc_j >= acc_i with at least one
strict. Identical points do not dominate each other, so duplicates of a front point are
all on the front. A point whose size or accuracy is NaN or infinite is never on a front
and never dominates anything.

EDFs follow Radosavovic et al., "On Network Design Spaces for Visual Recognition" (2019)
and "Designing Network Design Spaces" (2020): the EDF of errors is the share of models
with error below e. The size-normalised EDF reweights each group's models so that every
group has the same size distribution (see `size_normalised_weights`), so that a choice
that merely makes networks bigger does not look better for that reason alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def _valid(*arrays: np.ndarray) -> np.ndarray:
    """True where every array holds a finite number."""
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def pareto_front(size: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Boolean mask of non-dominated points (minimise size, maximise acc) in O(n log n)."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    if size.shape != acc.shape or size.ndim != 1:
        raise ValueError(f"size and acc must be 1-D and equal in length, got {size.shape} and {acc.shape}")
    mask = np.zeros(len(size), dtype=bool)
    idx = np.flatnonzero(_valid(size, acc))
    if idx.size == 0:
        return mask
    order = idx[np.lexsort((-acc[idx], size[idx]))]  # size ascending, then acc descending
    s, a = size[order], acc[order]
    group_start = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(group_start)
    group_of = np.cumsum(group_start) - 1
    group_best = a[starts][group_of]  # best accuracy at exactly this size
    running = np.maximum.accumulate(a)
    # best accuracy among strictly smaller sizes: the running max just before the group
    before = np.r_[-np.inf, running[starts[1:] - 1]][group_of]
    mask[order] = (a == group_best) & (a > before)
    return mask


def front_mask(acc: Sequence[float], costs: Sequence[Sequence[float]]) -> list[bool]:
    """Non-dominated points: maximise acc, minimise every cost column; non-finite never on it."""
    acc = np.asarray(acc, dtype=float)
    cols = np.asarray(costs, dtype=float).reshape(len(acc), -1)
    if cols.shape[1] == 1:
        return pareto_front(cols[:, 0], acc).tolist()
    # Several costs: a plain O(n^2) scan; fronts are read over hundreds of trials, not millions.
    pts = np.column_stack([-acc, cols])
    ok = np.isfinite(pts).all(axis=1)
    keep = ok.copy()
    for i in np.flatnonzero(ok):
        others = pts[ok]
        keep[i] = not (np.all(others <= pts[i], axis=1) & np.any(others < pts[i], axis=1)).any()
    return keep.tolist()


def constrained_front(size: Sequence[float], acc: Sequence[float],
                      allowed: Sequence[bool] | None = None) -> np.ndarray:
    """The front among the `allowed` points only; other points are never on it."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    if allowed is None:
        return pareto_front(size, acc)
    allowed = np.asarray(allowed, dtype=bool)
    mask = np.zeros(len(size), dtype=bool)
    mask[allowed] = pareto_front(size[allowed], acc[allowed])
    return mask


def front_by_group(size: Sequence[float], acc: Sequence[float], groups: Sequence[Any],
                   allowed: Sequence[bool] | None = None) -> np.ndarray:
    """One front per group (e.g. per study), each under the same `allowed` mask."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    groups = np.asarray(groups, dtype=object)
    allowed = np.ones(len(size), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    mask = np.zeros(len(size), dtype=bool)
    for g in pd.unique(groups):
        sel = (groups == g) & allowed
        mask[sel] = pareto_front(size[sel], acc[sel])
    return mask


def front_envelope(size: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """For each point, the best accuracy among points no larger than it (NaN if invalid)."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    out = np.full(len(size), np.nan)
    idx = np.flatnonzero(_valid(size, acc))
    if idx.size == 0:
        return out
    order = idx[np.lexsort((-acc[idx], size[idx]))]
    s = size[order]
    running = np.maximum.accumulate(acc[order])
    last_of_group = np.r_[s[1:] != s[:-1], True]
    # every point of a size group sees the running max at the group's end
    ends = np.flatnonzero(last_of_group)
    group_of = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    out[order] = running[ends][group_of]
    return out


def noise_band(size: Sequence[float], acc: Sequence[float], acc_std: Sequence[float],
               k: float = 1.0) -> np.ndarray:
    """Points within k seed-noise standard deviations of the front at their size."""
    acc = np.asarray(acc, dtype=float)
    std = np.nan_to_num(np.asarray(acc_std, dtype=float), nan=0.0)
    env = front_envelope(size, acc)
    return np.isfinite(env) & (acc + k * std >= env)


def step_line(size: Sequence[float], acc: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Front points sorted by size, for a step line drawn with shape 'hv'."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    order = np.lexsort((acc, size))
    return size[order], acc[order]


def budget_mask(costs: Mapping[str, Sequence[float]], limits: Mapping[str, float | None]) -> np.ndarray:
    """True where every cost is within its limit (inclusive); a missing cost fails a set limit."""
    n = len(next(iter(costs.values()))) if costs else 0
    mask = np.ones(n, dtype=bool)
    for name, limit in limits.items():
        if limit is None:
            continue
        values = np.asarray(costs[name], dtype=float)
        with np.errstate(invalid="ignore"):
            mask &= values <= limit  # NaN compares False: an unknown cost is not within budget
    return mask


def filter_mask(frame: pd.DataFrame, ranges: Mapping[str, Any]) -> np.ndarray:
    """Rows whose columns fall in the given (lo, hi) ranges or sets of allowed values.

    A `(lo, hi)` tuple keeps lo <= value <= hi (None for an open end); a list or set keeps
    the listed values. NaN never passes a range.
    """
    mask = np.ones(len(frame), dtype=bool)
    for column, rule in ranges.items():
        values = frame[column]
        if isinstance(rule, tuple):
            lo, hi = rule
            v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                if lo is not None:
                    mask &= v >= lo
                if hi is not None:
                    mask &= v <= hi
                mask &= np.isfinite(v)
        else:
            mask &= values.isin(list(rule)).to_numpy()
    return mask


def edf(errors: Sequence[float], weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Error EDF: sorted distinct errors x and y[i] = weighted share of models with error <= x[i].

    Drawn as a step ('hv'), y just left of x[i] is the share with error < x[i]. NaN errors
    and zero or NaN weights are dropped; an empty input gives two empty arrays.
    """
    errors = np.asarray(errors, dtype=float)
    w = np.ones(len(errors)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != errors.shape:
        raise ValueError(f"weights must match errors in length, got {w.shape} and {errors.shape}")
    keep = np.isfinite(errors) & np.isfinite(w) & (w > 0)
    errors, w = errors[keep], w[keep]
    if errors.size == 0:
        return np.array([]), np.array([])
    order = np.argsort(errors, kind="stable")
    errors, w = errors[order], w[order]
    cum = np.cumsum(w) / w.sum()
    last = np.r_[errors[1:] != errors[:-1], True]  # ties count together
    return errors[last], cum[last]


def size_normalised_weights(size: Sequence[float], groups: Sequence[Any], bins: int = 8,
                            log: bool = True) -> np.ndarray:
    """Per-model weights that give every group the same (uniform) size distribution.

    Method (after Radosavovic et al. 2019's normalised comparison): split the pooled size
    range into `bins` equal-width bins (on log10 size when `log`); keep only the bins where
    every group has at least one model, the shared support; inside a group, each kept bin
    gets total weight 1 / (number of kept bins), shared equally by the group's models in
    it. Models outside the shared support, or with an invalid size, get weight 0. Each
    group's weights then sum to 1 (or to 0 if no bin is shared).
    """
    size = np.asarray(size, dtype=float)
    groups = np.asarray(groups, dtype=object)
    x = np.log10(np.where(size > 0, size, np.nan)) if log else size
    ok = np.isfinite(x)
    weights = np.zeros(len(size))
    if not ok.any():
        return weights
    lo, hi = x[ok].min(), x[ok].max()
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo, lo + 1.0])
    b = np.full(len(size), -1)
    b[ok] = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
    labels = list(pd.unique(groups[ok]))
    counts = {g: np.bincount(b[ok & (groups == g)], minlength=len(edges) - 1) for g in labels}
    shared = np.logical_and.reduce([c > 0 for c in counts.values()])
    n_shared = int(shared.sum())
    if n_shared == 0:
        return weights
    for g in labels:
        sel = np.flatnonzero(ok & (groups == g))
        in_shared = shared[b[sel]]
        weights[sel[in_shared]] = 1.0 / (n_shared * counts[g][b[sel[in_shared]]])
    return weights


def knob_groups(values: Sequence[Any], max_groups: int = 6) -> np.ndarray:
    """Labels grouping a knob's values: each value if few, else quantile bins named 'min–max'."""
    s = pd.Series(values)
    distinct = s.dropna().unique()
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if len(distinct) <= max_groups or not numeric:
        return s.astype(str).where(s.notna(), "n/a").to_numpy(dtype=object)
    v = s.astype(float)
    codes = pd.qcut(v, q=max_groups, labels=False, duplicates="drop")
    lo, hi = v.groupby(codes).min(), v.groupby(codes).max()
    names = {c: f"{lo[c]:.3g}–{hi[c]:.3g}" for c in lo.index}  # the members' own range
    return np.array([names.get(c, "n/a") for c in codes], dtype=object)


def hypervolume(size: Sequence[float], acc: Sequence[float], ref_size: float, ref_acc: float,
                log_size: bool = False) -> float:
    """Area dominated by the points and bounded by the reference (worst size, worst acc).

    Size is minimised and accuracy maximised, so the region is the union of rectangles
    [size_i, ref_size] x [ref_acc, acc_i]. With `log_size` both sizes are taken as log10.
    Points not strictly better than the reference in both coordinates add nothing.
    """
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    if log_size:
        with np.errstate(divide="ignore", invalid="ignore"):
            size = np.log10(np.where(size > 0, size, np.nan))
        ref_size = float(np.log10(ref_size))
    keep = _valid(size, acc) & (size < ref_size) & (acc > ref_acc)
    if not keep.any():
        return 0.0
    s, a = size[keep], acc[keep]
    order = np.argsort(s, kind="stable")
    s, a = s[order], a[order]
    best = np.maximum.accumulate(a)  # best accuracy reachable at size <= s[i]
    widths = np.diff(np.r_[s, ref_size])
    return float(np.sum(widths * (best - ref_acc)))


def selected_rows(points: Sequence[Mapping[str, Any]], trace_rows: Sequence[Sequence[int]]) -> list[int]:
    """Map a Plotly selection event's points to row ids, sorted and unique.

    A point's `customdata` (the row id, or a list whose first item is it) wins; otherwise
    the row is `trace_rows[curve_number][point_index]`. Points of traces that carry no
    rows (the front's step line, a density layer's cells, whose index is a [row, column]
    pair) are ignored.
    """
    rows: set[int] = set()
    for p in points:
        row = _row_from_customdata(p.get("customdata"))
        if row is None:
            curve = p.get("curve_number", p.get("curveNumber"))
            index = p.get("point_index", p.get("pointIndex", p.get("point_number")))
            if not isinstance(curve, int) or not isinstance(index, int) or not 0 <= curve < len(trace_rows):
                continue
            if not 0 <= index < len(trace_rows[curve]):
                continue
            row = int(trace_rows[curve][index])
        rows.add(row)
    return sorted(rows)


def _row_from_customdata(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def classify(size: Sequence[float], acc: Sequence[float], infeasible: Sequence[bool],
             allowed: Sequence[bool], groups: Sequence[Any] | None = None,
             final: Sequence[bool] | None = None) -> np.ndarray:
    """Each point's role: front, dominated, partial, excluded, infeasible or missing.

    `final`: the trial may be on a front (explorer.store.table.comparable: False for pruned
    trials and trials cut by the time budget, whose accuracy is partial, for duplicates,
    which repeat another trial's result, and for networks that could not train, dead or
    diverged, unless asked for); such points are 'partial' and never on the front.

    `infeasible`: rejected by the study's own budget; `allowed`: inside the dashboard's
    budgets and filters; 'missing' marks points with no valid size or accuracy. The front
    is computed per group (study) among allowed, feasible, valid points.
    """
    size = np.asarray(size, dtype=float)
    acc = np.asarray(acc, dtype=float)
    infeasible = np.asarray(infeasible, dtype=bool)
    allowed = np.asarray(allowed, dtype=bool)
    valid = _valid(size, acc)
    final = np.ones(len(size), dtype=bool) if final is None else np.asarray(final, dtype=bool)
    candidates = allowed & ~infeasible & valid & final
    groups = np.zeros(len(size)) if groups is None else groups
    front = front_by_group(size, acc, groups, candidates)
    role = np.full(len(size), "dominated", dtype=object)
    role[~final] = "partial"
    role[~allowed] = "excluded"
    role[~valid] = "missing"
    role[infeasible] = "infeasible"
    role[front] = "front"
    return role

"""Plot data (pure) and thin figure builders for the dashboard.

Each `*_data` function returns plain arrays the tests can check; each `*_figure`
function only turns them into a Plotly figure dict. Arrays stay numpy: st.plotly_chart
validates every figure, which at 10,000 points takes 160 ms on Python lists and 17 ms
on numpy arrays (measured), against a 100 ms rerun budget.

The Pareto chart draws at most DETAIL_MAX trials one by one (SVG markers with hover and
selection): the front and the trials nearest below it. Beyond that, the other trials of a
study and role are counted into a density layer (a heatmap on a grid uniform in the
chart's own scale) computed here, so the browser parses and draws a few hundred markers
and a few small grids instead of 10,000 markers with their hover data (1.9 MB per chart
before, 0.16 MB after). Markers are SVG, not WebGL: Streamlit mounts a new chart whenever
its figure changes, and in headless Chromium (software WebGL) creating the WebGL contexts
and reading their pixels back for compositing was the largest part of a widget change
(bench/dashboard_profile.py; docs/dashboard.md has the shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from explorer.core.util import si
from explorer.results import pareto
from explorer.store import counts_text
from explorer.store.table import OBJECTIVE_PREFIX, outcome_counts

SIZE_AXES = {
    "params": "parameters",
    "macs": "MACs (multiply-adds per image)",
    "size_mb": "model size (MB, fp32)",
    "size_mib": "model size (MiB, fp32)",
    "latency_ms": "latency (ms)",
}
ACC_AXES = {"val_acc": "validation accuracy (last epoch, %)",
            "best_val_acc": "validation accuracy (best epoch, %)"}
SI_AXES = ("params", "macs", "number")  # counts: ticks as 3k, 10k, 1M
ROLE_STYLE = {  # role -> marker style; the front is drawn last so it sits on top
    "excluded": {"size": 5, "opacity": 0.15, "symbol": "circle"},
    "infeasible": {"size": 7, "opacity": 0.6, "symbol": "x"},
    "partial": {"size": 6, "opacity": 0.5, "symbol": "circle-open"},
    "dominated": {"size": 6, "opacity": 0.45, "symbol": "circle"},
    "front": {"size": 11, "opacity": 1.0, "symbol": "circle", "line": {"width": 1.5, "color": "#111"}},
}
ROLE_NAME = {"front": "Pareto front", "dominated": "dominated", "infeasible": "over budget (study)",
             "excluded": "outside budget / filter", "partial": "off the front (cut short, dead, duplicate)"}
ROLE_COLOR = {"dominated": "#1f77b4", "excluded": "#9e9e9e", "infeasible": "#555555", "partial": "#8c564b",
              "front": "#d62728"}
# Trials drawn one by one on the Pareto chart; the rest are density layers. Measured (bench/dashboard_profile.py,
# 10,000 trials, load 10-12): the renderer's CPU per widget change was 0.88 s with 150 markers, 1.0 s with 300,
# 1.45 s with 600 and 3.6 s with all 10,000 as WebGL markers.
DETAIL_MAX = 300
DENSITY_BINS = (100, 50)  # density cells across and up the chart: about 13 x 8 px each at 1400x900
STUDY_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "star", "hexagon")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
UNITS = {"params": "", "macs": " MACs", "size_mb": " MB", "size_mib": " MiB", "latency_ms": " ms",
         "activations": ""}


def fmt_count(value: float) -> str:
    """1234567 -> '1.23M', with k/M/G suffixes; 'n/a' for a missing value."""
    return si(value, missing="n/a")


@dataclass(frozen=True)
class Hover:
    """Hover labels: numbers travel as float32 customdata, formatted by the template in the
    browser; only text knobs (and over-budget reasons) travel as strings. Per-point label
    strings doubled the time of a rerun at 10,000 trials (measured)."""

    numbers: np.ndarray  # (n, k) float32; the figure prepends the row id as column 0
    template: str
    text: np.ndarray  # (n,) str, possibly all empty


def hover_data(frame: pd.DataFrame, knobs: list[str]) -> Hover:
    """Hover content per trial: number, accuracy (%) with its seed noise, costs with units, any
    other objective, knobs, and how the trial ended when it did not simply complete (pure)."""
    cols: list[str] = ["number"]

    def ref(col: str, fmt: str) -> str:  # customdata[0] is the row id, then `cols` in order
        cols.append(col)
        return f"%{{customdata[{len(cols)}]{fmt}}}"

    lines = ["<b>%{meta} #%{customdata[1]:d}</b>"]
    if frame["val_acc"].notna().any():
        lines.append(f"val acc {ref('val_acc', ':.2f')}% (best {ref('best_val_acc', ':.2f')}%)")
    cost = [f"params {ref('params', ':.3s')}", f"{ref('macs', ':.3s')} MACs", f"{ref('size_mb', ':.3~g')} MB"]
    if frame["params"].notna().any():
        if frame["latency_ms"].notna().any():
            cost.append(f"{ref('latency_ms', ':.3~g')} ms")
        lines.append(" · ".join(cost))
    else:
        cols[:] = cols[:len(cols) - 3]
    objectives = [c for c in frame.columns if c.startswith(OBJECTIVE_PREFIX)
                  and c.removeprefix(OBJECTIVE_PREFIX) not in ("val_acc", "params", "macs", "size_mb")]
    if objectives:
        lines.append(" · ".join(f"{c.removeprefix(OBJECTIVE_PREFIX)} {ref(c, ':.4~g')}" for c in objectives))
    numeric = [k for k in knobs if _is_number(frame[k])]
    if numeric:
        lines.append(" · ".join(f"{k.removeprefix('knob_')}={ref(k, ':.4~g')}" for k in numeric))
    text = np.full(len(frame), "", dtype=object)
    labels = [k.removeprefix("knob_") + "=" + _fmt(frame[k], str) for k in knobs if k not in numeric]
    if labels:  # text knobs continue the knob line
        text = (" · " if numeric else "<br>") + labels[0]
        for label in labels[1:]:
            text = text + " · " + label
    std = 100 * frame["acc_std"].to_numpy(dtype=float)
    noise = np.where(np.isfinite(std), "<br>seed noise ± " + _fmt(pd.Series(np.round(std, 2)), str) + " pts", "")
    text = text + noise + "<br>" + ending(frame)
    over = frame["over_budget"].astype(str).to_numpy(dtype=object)
    text = text + np.where(over != "", "<br>over budget: " + over, "")
    numbers = frame[cols].to_numpy(dtype=np.float32)
    for i, col in enumerate(cols):
        if col in ACC_AXES:
            numbers[:, i] *= 100
    template = "<br>".join(lines) + "%{text}<extra></extra>"
    return Hover(numbers, template, np.asarray(text, dtype=str))


def counts_line(frame: pd.DataFrame, roles: np.ndarray) -> str:
    """The chart's counts in one line (markdown): trials by outcome, duplicates apart (as `explorer run` and
    `explorer status` count them), then the front and the trials the page's budgets and filters leave out."""
    role = pd.Series(roles).value_counts()
    outcomes = counts_text(outcome_counts(frame)) if frame["spec"].map(bool).any() else ", ".join(
        f"{n:,} {s.lower()}" for s, n in frame["state"].value_counts().items())  # a plain Optuna study: its states
    return (f"**{len(frame):,} trials**: {outcomes} · **{int(role.get('front', 0)):,} on the front** · "
            f"{int(role.get('excluded', 0)):,} outside your budgets and filters")


CUT_ENDS = ("dead", "time_budget", "diverged", "stopped", "pruned", "rung")
END_WORDS = {"completed": "completed", "dead": "died (no learning)", "time_budget": "cut by the time budget",
             "diverged": "diverged", "stopped": "stopped early", "pruned": "pruned", "rung": "stopped at rung"}


def cut_short(frame: pd.DataFrame) -> np.ndarray:
    """True for trials that did not run their course: an `end` in CUT_ENDS, or pruned / failed."""
    end = frame["end"].astype(str).to_numpy()
    state = frame["state"].astype(str).to_numpy()
    return np.isin(end, CUT_ENDS) | np.isin(state, ("PRUNED", "FAIL"))


def ending(frame: pd.DataFrame) -> np.ndarray:
    """'ended: <how>' per trial (the state where no `end` was stored); 'stopped at rung 2' where a schedule
    stopped it."""
    end = frame["end"].astype(str)
    how = end.map(lambda e: END_WORDS.get(e, e)).to_numpy(dtype=object)
    rung = frame["rung"].to_numpy(dtype=float) if "rung" in frame.columns else np.full(len(frame), np.nan)
    at = np.where(np.isfinite(rung), " " + _fmt(pd.Series(rung), lambda v: f"{v:.0f}"), "")
    how = np.where(end.to_numpy() == "rung", how + at, how)
    state = frame["state"].astype(str).str.lower().to_numpy(dtype=object)
    return np.where(end.to_numpy() != "", "ended: " + how, "state: " + state)


def rung_caption(frame: pd.DataFrame) -> str:
    """'4 trained the whole recipe; 9 stopped at rung 1, 3 at rung 2 (off the front)' ('' without a schedule)."""
    if "rung" not in frame.columns:
        return ""
    stopped = frame.loc[(frame["end"] == "rung") & (frame["state"] == "PRUNED") & frame["duplicate_of"].isna(),
                        "rung"].dropna().astype(int).value_counts().sort_index()
    if stopped.empty:
        return ""
    parts = [f"{n} at rung {r}" for r, n in stopped.items()]
    whole = int(((frame["state"] == "COMPLETE") & frame["duplicate_of"].isna() & ~frame["infeasible"]).sum())
    return (f"Multi-fidelity schedule: {whole} trained the whole recipe; {int(stopped.sum())} stopped at a rung ("
            + ", ".join(parts) + "): drawn off the front as cut short (their accuracy is from fewer epochs).")


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _knob_str(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt(col: pd.Series, func) -> np.ndarray:
    """func applied once per distinct value (knobs and costs repeat a lot); 'n/a' for missing."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    labels = np.array([func(u) for u in uniques] + ["n/a"], dtype=object)
    return labels[codes]  # code -1 (missing) picks the trailing 'n/a'


def color_values(values: pd.Series) -> tuple[str, np.ndarray, list[str]]:
    """('numeric', floats, []) or ('categorical', colour strings, sorted category names)."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > len(PALETTE):
        return "numeric", values.to_numpy(dtype=float), []
    cats = sorted(values.astype(str).unique(), key=_natural)
    lut = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}
    return "categorical", values.astype(str).map(lut).to_numpy(dtype=object), cats


def _natural(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def pareto_data(frame: pd.DataFrame, roles: np.ndarray, size_col: str, acc_col: str,
                color_col: str | None = None, *, log_x: bool = False, log_y: bool = False,
                detail: int | None = None) -> list[dict[str, Any]]:
    """The Pareto plot's traces as data: points, density layers and each study's front line.

    At most `detail` (DETAIL_MAX) trials are 'points' traces (one per study, role, colour category and cut
    or not; see `detail_mask`): `rows` (row ids of `frame`), x, y, err (the calibrated seed std
    of val_acc, NaN where none), role, study and colour. The other trials are 'density' traces,
    one per study and role: their `rows`, and `counts` on the cell edges `x_edges`, `y_edges`
    (`density_grid`, shared by every layer). Each study's front also gets a 'line' trace sorted
    by size. Trials with no accuracy that a study's budget rejected sit on a strip just below
    the lowest accuracy (`floor_y`).
    """
    size = frame[size_col].to_numpy(dtype=float)
    scale = 100.0 if acc_col in ACC_AXES else 1.0  # accuracy in percent, as the CLI prints it
    acc = frame[acc_col].to_numpy(dtype=float) * scale
    # seed noise (`explorer calibrate`): +- one std around the short-run val_acc
    std = (frame["acc_std"].to_numpy(dtype=float) * scale if acc_col == "val_acc" and "acc_std" in frame
           else np.full(len(frame), np.nan))
    cut = cut_short(frame)
    y = np.where(np.isnan(acc) & (roles == "infeasible"), floor_y(acc), acc)
    keep = np.isfinite(size) & np.isfinite(y) & (size > 0 if log_x else True) & (y > 0 if log_y else True)
    study_of = frame["study"].to_numpy()
    shown = detail_mask(size, y, roles, study_of, keep, log_x=log_x, log_y=log_y,
                        limit=DETAIL_MAX if detail is None else detail)
    edges = density_grid(size[keep], y[keep], log_x=log_x, log_y=log_y) if (keep & ~shown).any() else None
    kind, colors, cats = ("none", None, [])
    if color_col:
        kind, colors, cats = color_values(frame[color_col])
    traces = []
    for s_idx, study in enumerate(pd.unique(study_of)):
        in_study = (study_of == study) & keep
        for role in ROLE_STYLE:
            sel = in_study & (roles == role)
            groups = cats if kind == "categorical" and role != "excluded" else [None]
            for cat, short in [(c, k) for k in (False, True) for c in groups]:
                m = sel & shown & (cut == short)
                m = m if cat is None else m & (frame[color_col].astype(str) == cat).to_numpy()
                rows = np.flatnonzero(m)
                if rows.size:
                    traces.append({"kind": "points", "study": study, "study_index": s_idx,
                                   "role": role, "category": cat, "rows": rows, "cut": short,
                                   "x": size[rows], "y": y[rows], "err": std[rows],
                                   "color": None if colors is None else colors[rows]})
            rows = np.flatnonzero(sel & ~shown)
            if rows.size:
                traces.append({"kind": "density", "study": study, "study_index": s_idx, "role": role, "rows": rows,
                               "x_edges": edges[0], "y_edges": edges[1],
                               "counts": density_counts(size[rows], y[rows], *edges, log_x=log_x, log_y=log_y)})
        front = np.flatnonzero(in_study & (roles == "front"))
        if front.size:
            xs, ys = pareto.step_line(size[front], acc[front])
            traces.append({"kind": "line", "study": study, "study_index": s_idx, "x": xs, "y": ys})
    return traces


def _scaled(values: np.ndarray, log: bool) -> np.ndarray:
    """Values in the chart's own scale: log10 on a log axis (non-positive values: NaN)."""
    if not log:
        return np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)


def detail_mask(size: np.ndarray, y: np.ndarray, roles: np.ndarray, groups: np.ndarray, drawn: np.ndarray, *,
                log_x: bool, log_y: bool, limit: int = DETAIL_MAX) -> np.ndarray:
    """The drawn trials shown one by one: all when at most `limit`; else every front point, then the
    points nearest below their group's front (the vertical gap to the front's step at their size, in
    the chart's scale, as a share of the drawn y range), up to `limit` points in all (ties: row order).
    Points smaller than a group's smallest front point have a gap of 0; in a group without a front,
    the gap is to the group's highest point."""
    drawn = np.asarray(drawn, dtype=bool)
    if drawn.sum() <= limit:
        return drawn.copy()
    xs, ys = _scaled(size, log_x), _scaled(y, log_y)
    gap = np.full(len(size), np.inf)
    for g in pd.unique(groups):
        member = drawn & (groups == g)
        front = member & (roles == "front")
        if not front.any():
            gap[member] = np.nanmax(ys[member]) - ys[member]
            continue
        order = np.argsort(xs[front], kind="stable")
        fx, fy = xs[front][order], np.maximum.accumulate(ys[front][order])
        pos = np.searchsorted(fx, xs[member], side="right") - 1
        step = np.where(pos >= 0, fy[np.maximum(pos, 0)], -np.inf)
        gap[member] = np.maximum(step - ys[member], 0.0)
    span = float(np.nanmax(ys[drawn]) - np.nanmin(ys[drawn])) or 1.0
    gap = np.where(np.isfinite(gap), gap / span, np.inf)
    gap[drawn & (roles == "front")] = -1.0  # the front first, whatever the limit
    order = np.lexsort((np.arange(len(size)), gap))
    out = np.zeros(len(size), dtype=bool)
    out[order[:limit]] = True
    return (out | (roles == "front")) & drawn


def density_grid(x: np.ndarray, y: np.ndarray, *, log_x: bool, log_y: bool,
                 bins: tuple[int, int] = DENSITY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges (data units) over the points' range, uniform in the chart's scale (log10 on a log axis)."""
    def edges(values: np.ndarray, log: bool, n: int) -> np.ndarray:
        v = _scaled(values, log)
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        pad = (hi - lo) * 1e-9 or 0.5  # the largest value falls inside the last cell
        e = np.linspace(lo - pad, hi + pad, n + 1)
        return 10 ** e if log else e

    return edges(x, log_x, bins[0]), edges(y, log_y, bins[1])


def density_counts(x: np.ndarray, y: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray, *,
                   log_x: bool, log_y: bool) -> np.ndarray:
    """Points per cell as float32, rows = y cells (a heatmap's z); NaN for an empty cell (drawn transparent)."""
    counts, _, _ = np.histogram2d(_scaled(x, log_x), _scaled(y, log_y),
                                  bins=(_scaled(x_edges, log_x), _scaled(y_edges, log_y)))
    return np.where(counts.T > 0, counts.T, np.nan).astype(np.float32)


def floor_y(acc: np.ndarray) -> float:
    """Where untrained points go: 10% of the accuracy range below the lowest accuracy."""
    ok = acc[np.isfinite(acc)]
    if ok.size == 0:
        return 0.0
    span = float(ok.max() - ok.min()) or 0.1
    return float(ok.min() - 0.1 * span)


def loading_figure() -> dict[str, Any]:
    """A blank chart the size of the Pareto chart, saying the trials are on their way: the page sends
    it before reading the storage, so the browser fetches and evaluates Plotly.js (4.7 MB, loaded
    when a session's first chart arrives) while the server works."""
    hidden = {"visible": False}
    empty = {"type": "scatter", "x": [], "y": [], "hoverinfo": "skip", "showlegend": False}  # Plotly needs a trace
    return {"data": [empty], "layout": {
        "xaxis": hidden, "yaxis": hidden, "height": 520, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "annotations": [{"text": "Loading trials…", "showarrow": False, "xref": "paper", "yref": "paper",
                         "x": 0.5, "y": 0.5, "font": {"size": 16, "color": "#888"}}]}}


def pareto_figure(traces: list[dict[str, Any]], hover: Hover, size_col: str, acc_col: str,
                  *, log_x: bool, log_y: bool, color_col: str | None, color_kind: str,
                  multi_study: bool) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A Plotly figure dict (SVG markers over heatmap density layers) and, per trace, its row ids
    (for selection events; none for the density layers and lines)."""
    data, trace_rows = [], []
    colorbar_done = False
    scale = {}  # one colour range for every trace
    if color_kind == "numeric":
        values = np.concatenate([t["color"] for t in traces if t["kind"] == "points"] or [np.zeros(0)])
        scale = {"cmin": float(np.nanmin(values)), "cmax": float(np.nanmax(values))} if values.size else {}
    labels = (axis_title(size_col, SIZE_AXES), axis_title(acc_col, ACC_AXES))
    axes = ((labels[0], ".3s" if size_col in SI_AXES else ".3~g"), (labels[1], ".3~g"))
    for t in sorted(traces, key=lambda t: t["kind"] != "density"):  # density layers beneath the points
        s_idx = t["study_index"]
        if t["kind"] == "density":
            data.append(density_trace(t, axes, multi_study))
            trace_rows.append(np.array([], dtype=int))
            continue
        if t["kind"] == "line":
            data.append({"type": "scatter", "mode": "lines", "x": t["x"], "y": t["y"],
                         "line": {"shape": "hv", "width": 2, "color": PALETTE[s_idx % len(PALETTE)]},
                         "name": f"front · {t['study']}" if multi_study else "front",
                         "hoverinfo": "skip", "showlegend": multi_study})
            trace_rows.append(np.array([], dtype=int))
            continue
        marker = _marker(t, color_kind, multi_study, scale, color_col, not colorbar_done)
        colorbar_done |= "colorbar" in marker
        shown_cut = t.get("cut") and t["role"] not in ("partial", "infeasible")
        name = ROLE_NAME[t["role"]] + (" · cut short" if shown_cut else "")
        if t["category"] is not None:
            name += f" · {color_col.removeprefix('knob_')}={t['category']}"
        if multi_study:
            name += f" · {t['study']}"
        rows = t["rows"]
        trace = {"type": "scatter", "mode": "markers", "x": t["x"], "y": t["y"],
                 "customdata": np.column_stack([rows.astype(np.float32), hover.numbers[rows]]),
                 "text": hover.text[rows], "meta": t["study"], "hovertemplate": hover.template,
                 "marker": marker, "name": name}
        err = t.get("err")
        if t["role"] == "front" and err is not None and np.isfinite(err).any():
            # error bars on the front only, where a calibration measured the noise (None: no bar);
            # elsewhere the hover gives the noise (10,000 bars make solid columns)
            trace["error_y"] = {"type": "data", "visible": True, "thickness": 1.2, "width": 4,
                                "array": [float(e) if np.isfinite(e) else None for e in err]}
        data.append(trace)
        trace_rows.append(t["rows"])
    layout = {
        "xaxis": {"title": {"text": labels[0]}, **_axis_type(size_col, log_x)},
        "yaxis": {"title": {"text": labels[1]}, **_axis_type(acc_col, log_y)},
        # above the plot: visible without scrolling at 1400x900
        "legend": {"orientation": "h", "x": 0, "y": 1.01, "yanchor": "bottom"},
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50}, "height": 520,
        "hovermode": "closest", "uirevision": "pareto",
    }
    return {"data": data, "layout": layout}, trace_rows


def _marker(t: dict[str, Any], color_kind: str, multi_study: bool, scale: dict, color_col: str | None,
            colorbar: bool) -> dict[str, Any]:
    """A points trace's marker: its role's style, shape and colour (a colour bar on the first numeric one)."""
    s_idx = t["study_index"]
    marker: dict[str, Any] = dict(ROLE_STYLE[t["role"]])
    if multi_study and t["role"] != "infeasible":
        marker["symbol"] = STUDY_SYMBOLS[s_idx % len(STUDY_SYMBOLS)]
    if t.get("cut") and t["role"] != "infeasible":  # dead, time budget, diverged, stopped, pruned
        marker["symbol"] = CUT_SYMBOL[t["role"] == "front"]
    if t["role"] == "excluded":
        marker["color"] = ROLE_COLOR["excluded"]
    elif t["role"] == "infeasible" and color_kind != "categorical":
        marker["color"] = ROLE_COLOR["infeasible"]
    elif color_kind == "numeric":
        marker.update(color=t["color"], colorscale="Viridis", showscale=colorbar, **scale)
        if colorbar:
            marker["colorbar"] = {"title": {"text": color_col.removeprefix("knob_")}}
    elif color_kind == "categorical":
        marker["color"] = t["color"][0]
    else:
        marker["color"] = PALETTE[s_idx % len(PALETTE)] if multi_study else (
            ROLE_COLOR["front"] if t["role"] == "front" else ROLE_COLOR["dominated"])
    return marker


def density_trace(t: dict[str, Any], axes: tuple[tuple[str, str], ...], multi_study: bool) -> dict[str, Any]:
    """A density layer as a heatmap: transparent where empty, darker where more trials fall.

    Its meta is 'density' and z counts trials, so bench/dashboard_load.py counts them as drawn."""
    s_idx, role = t["study_index"], t["role"]
    color = PALETTE[s_idx % len(PALETTE)] if multi_study and role == "dominated" else ROLE_COLOR[role]
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    name = f"{ROLE_NAME[role]} · density ({len(t['rows']):,} trials)" + (f" · {t['study']}" if multi_study else "")
    return {"type": "heatmap", "meta": "density", "x": t["x_edges"], "y": t["y_edges"],
            "z": t["counts"], "zmin": 0, "showscale": False, "hoverongaps": False, "showlegend": True,
            "name": name, "legendgroup": f"density-{s_idx}-{role}",
            "colorscale": [[0, f"rgba({r},{g},{b},0.10)"], [0.25, f"rgba({r},{g},{b},0.45)"],
                           [1, f"rgba({r},{g},{b},0.85)"]],
            "hovertemplate": f"%{{z}} trials ({ROLE_NAME[role]}" + (f", {t['study']}" if multi_study else "")
                             + "".join(f"<br>{label} ≈ %{{{xy}:{fmt}}}" for xy, (label, fmt) in zip("xy", axes))
                             + "<extra></extra>"}


CUT_SYMBOL = {False: "triangle-down", True: "diamond"}  # cut-short trials; True: on the front


def axis_title(col: str, known: dict[str, str]) -> str:
    """An axis's title: explorer's names, 'trial number', or an objective's own name."""
    if col == "number":
        return "trial number"
    return known.get(col) or SIZE_AXES.get(col) or ACC_AXES.get(col) or col.removeprefix(OBJECTIVE_PREFIX)


def _axis_type(col: str, log: bool) -> dict[str, Any]:
    """Log or linear; a log axis labels every tick in full (3k, 5k, not a bare 3, 5)."""
    if not log:
        return {"type": "linear"}
    return {"type": "log", "tickformat": "~s" if col in SI_AXES else "~g", "dtick": "D2"}  # 1, 2, 5 per decade


def knob_effect_data(frame: pd.DataFrame, knob: str, acc_col: str, size_col: str) -> pd.DataFrame:
    """Per value (or quantile bin) of a knob: count, median and best accuracy, median size."""
    groups = pareto.knob_groups(frame[knob])
    g = pd.DataFrame({"value": groups, "acc": frame[acc_col].to_numpy(dtype=float),
                      "size": frame[size_col].to_numpy(dtype=float)}).groupby("value", sort=False)
    out = pd.DataFrame({"trials": g.size(), "acc_median": g["acc"].median(),
                        "acc_best": g["acc"].max(), "size_median": g["size"].median()})
    return out.loc[sorted(out.index, key=_natural)].reset_index()


def scatter_by_knob_figure(frame: pd.DataFrame, knob: str, col: str, title: str,
                           log_y: bool = False) -> dict[str, Any]:
    """A metric against a knob: a box per category, or a scatter for a continuous knob."""
    values = frame[knob]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    y = frame[col].to_numpy(dtype=float)
    if numeric and values.nunique() > 12:
        trace = {"type": "scattergl", "mode": "markers", "x": values.to_numpy(dtype=float).tolist(),
                 "y": y.tolist(), "marker": {"size": 5, "opacity": 0.5}}
    else:
        trace = {"type": "box", "x": values.astype(str).tolist(), "y": y.tolist(),
                 "boxpoints": False}
    xaxis = {"title": {"text": knob.removeprefix("knob_")}, "type": "linear"}
    if trace["type"] == "box":
        xaxis.update(type="category", categoryorder="array",
                     categoryarray=sorted(values.astype(str).unique(), key=_natural))
    return {"data": [trace], "layout": {
        "xaxis": xaxis,
        "yaxis": {"title": {"text": title}, "type": "log" if log_y else "linear"},
        "height": 320, "margin": {"l": 60, "r": 10, "t": 30, "b": 50}, "showlegend": False}}


def edf_data(frame: pd.DataFrame, knob: str, acc_col: str, size_col: str,
             normalise: bool, bins: int = 8) -> list[dict[str, Any]]:
    """Error EDF per knob choice (error = 1 - accuracy), optionally size-normalised."""
    acc = frame[acc_col].to_numpy(dtype=float)
    groups = pareto.knob_groups(frame[knob])
    ok = np.isfinite(acc)
    weights = np.ones(len(frame))
    if normalise:
        weights = pareto.size_normalised_weights(frame[size_col].to_numpy(dtype=float),
                                                 np.where(ok, groups, None), bins=bins)
    out = []
    for g in sorted(set(groups[ok]), key=_natural):
        m = ok & (groups == g)
        x, y = pareto.edf(1.0 - acc[m], weights[m])
        out.append({"choice": g, "x": x, "y": y, "n": int(m.sum()),
                    "n_weighted": int(((weights > 0) & m).sum())})
    return out


def edf_figure(curves: list[dict[str, Any]], knob: str, normalise: bool) -> dict[str, Any]:
    """Step lines of the EDFs, one per choice."""
    data = [{"type": "scatter", "mode": "lines", "x": c["x"].tolist(), "y": c["y"].tolist(),
             "line": {"shape": "hv", "color": PALETTE[i % len(PALETTE)]},
             "name": f"{knob.removeprefix('knob_')}={c['choice']} (n={c['n_weighted']})"}
            for i, c in enumerate(curves) if len(c["x"])]
    return {"data": data, "layout": {
        "xaxis": {"title": {"text": "error (1 − validation accuracy)"}},
        "yaxis": {"title": {"text": "share of models with lower error"
                            + (" (size-normalised)" if normalise else "")},
                  "range": [0, 1.02]},
        "height": 380, "margin": {"l": 60, "r": 10, "t": 30, "b": 50}}}


def curve_figure(curve: list[float], val_loss: list[float]) -> dict[str, Any]:
    """Validation accuracy (and loss, right axis) per epoch."""
    epochs = list(range(1, len(curve) + 1))
    curve = [100 * c for c in curve]
    data = [{"type": "scatter", "mode": "lines+markers", "x": epochs, "y": list(curve), "name": "val acc (%)"}]
    if val_loss:
        data.append({"type": "scatter", "mode": "lines+markers", "x": list(range(1, len(val_loss) + 1)),
                     "y": list(val_loss), "name": "val loss", "yaxis": "y2"})
    return {"data": data, "layout": {
        "xaxis": {"title": {"text": "epoch"}, "dtick": 1, "range": [0.5, max(len(curve), 1) + 0.5]},
        "yaxis": {"title": {"text": "validation accuracy (%)"}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "validation loss"}, "overlaying": "y", "side": "right"},
        "height": 300, "margin": {"l": 60, "r": 60, "t": 20, "b": 40}}}

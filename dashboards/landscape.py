"""The dashboard's landscape view: a study's whole space costed analytically, its trials drawn over it.

It needs only the config stored with the study, so it shows what the space holds before any
trial has run; once trials exist they are overlaid, which shows where the search has looked
and where it has not. The numbers are explorer.study.landscape's (tested there); `scatter_data`,
`scatter_figure` and `coverage_figure` are pure; `show` only draws.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from explorer.core.util import si
from explorer.store import stored_config
from explorer.study import landscape as ls
from explorer.study.config import StudyConfig

SAMPLES = 5_000  # networks drawn from a space too large to cost whole: about 0.3 s, then cached
AXES = {"params": "parameters", "macs": "MACs (multiply-adds per image)", "size_mb": "model size (MB, fp32)"}
SPACE_STYLE = {"in": ("within the study's budgets", "#b0b0b0"), "over": ("over the study's budgets", "#e45756")}


@st.cache_resource(show_spinner="Costing the space…", max_entries=8)
def get_landscape(config_json: str, num_classes: int) -> ls.Landscape:
    """The landscape of a stored config (never mutated, so cached as a resource)."""
    return ls.landscape(StudyConfig.from_dict(json.loads(config_json)), samples=SAMPLES,
                        num_classes=num_classes)


def num_classes(trials: pd.DataFrame) -> int:
    """The classes the study's networks were built for (from a stored spec), else 10 (CIFAR-10)."""
    for spec in trials.get("spec", pd.Series(dtype=object)):
        if isinstance(spec, dict) and isinstance(spec.get("num_classes"), int):
            return spec["num_classes"]
    return 10


def scatter_data(land: ls.Landscape, trials: pd.DataFrame, x: str, y: str) -> dict[str, Any]:
    """The space's valid points split by budget, and the trials: trained (with accuracy) or not."""
    valid = land.points[land.points["valid"]]
    over = valid["over"].to_numpy(dtype=bool)
    space = {k: {"x": valid[x].to_numpy(float)[m], "y": valid[y].to_numpy(float)[m]}
             for k, m in (("in", ~over), ("over", over))}
    have = trials[trials[x].notna() & trials[y].notna()] if len(trials) else trials
    trained = have["val_acc"].notna().to_numpy() if len(have) else np.zeros(0, bool)
    pick = {"trained": trained, "untrained": ~trained}
    out = {k: {"x": have[x].to_numpy(float)[m], "y": have[y].to_numpy(float)[m],
               "number": have["number"].to_numpy()[m], "acc": have["val_acc"].to_numpy(float)[m]}
           for k, m in pick.items()} if len(have) else {}
    return {"space": space, "trials": out}


def scatter_figure(data: dict[str, Any], x: str, y: str) -> dict[str, Any]:
    """Plotly figure: the space in grey (over-budget networks pink), trials on top."""
    traces = [{"type": "scattergl", "mode": "markers", "x": p["x"], "y": p["y"], "hoverinfo": "skip",
               "name": f"space: {SPACE_STYLE[k][0]} ({len(p['x']):,})",
               "marker": {"size": 4, "opacity": 0.35, "color": SPACE_STYLE[k][1]}}
              for k, p in data["space"].items() if len(p["x"])]
    t = data["trials"]
    if t and len(t["trained"]["x"]):
        traces.append({"type": "scattergl", "mode": "markers", "x": t["trained"]["x"], "y": t["trained"]["y"],
                       "name": f"trained trials ({len(t['trained']['x'])})", "customdata": t["trained"]["number"],
                       "text": [f"{100 * a:.1f}%" for a in t["trained"]["acc"]],
                       "hovertemplate": "trial #%{customdata}: val acc %{text}<extra></extra>",
                       "marker": {"size": 9, "color": 100 * t["trained"]["acc"], "colorscale": "Viridis",
                                  "line": {"width": 1, "color": "#111"},
                                  "colorbar": {"title": {"text": "val acc %"}}}})
    if t and len(t["untrained"]["x"]):
        traces.append({"type": "scattergl", "mode": "markers", "x": t["untrained"]["x"],
                       "y": t["untrained"]["y"], "customdata": t["untrained"]["number"],
                       "name": f"trials without accuracy ({len(t['untrained']['x'])})",
                       "hovertemplate": "trial #%{customdata}: not trained or not finished<extra></extra>",
                       "marker": {"size": 8, "symbol": "x", "color": "#111"}})
    return {"data": traces, "layout": {
        "xaxis": {"title": {"text": AXES[x]}, "type": "log"}, "yaxis": {"title": {"text": AXES[y]}, "type": "log"},
        "legend": {"orientation": "h", "y": -0.2}, "height": 520, "margin": {"l": 60, "r": 20, "t": 30, "b": 60}}}


def coverage_figure(table: pd.DataFrame, knob: str) -> dict[str, Any]:
    """Bars per value of a knob: its share of the space against its share of the trials run."""
    values = table["value"].astype(str).tolist()
    bars = [{"type": "bar", "x": values, "y": (100 * table["share"]).tolist(), "name": "share of the space",
             "marker": {"color": "#b0b0b0"}}]
    if "trial_share" in table:
        bars.append({"type": "bar", "x": values, "y": (100 * table["trial_share"]).tolist(),
                     "name": "share of the trials", "marker": {"color": "#1f77b4"}})
    return {"data": bars, "layout": {
        "barmode": "group", "xaxis": {"title": {"text": knob}, "type": "category"},
        "yaxis": {"title": {"text": "% of networks / trials"}}, "height": 320,
        "margin": {"l": 60, "r": 10, "t": 30, "b": 50}, "legend": {"orientation": "h", "y": -0.3}}}


def show(storage, studies: list[str], frame: pd.DataFrame) -> None:
    """The view: pick a study, then its space's summary, scatter and per-knob coverage."""
    study = st.selectbox("Study", studies, key="ls_study") if len(studies) > 1 else studies[0]
    try:
        stored = stored_config(storage, study)
        config = StudyConfig.from_dict(stored, source=f"study {study!r}") if stored else None
    except Exception as exc:  # an old or foreign config must not break the page
        st.info(f"No landscape for {study}: its stored config does not parse ({exc}).")
        return
    if config is None:
        st.info(f"No landscape for {study}: it stores no explorer config (the space is unknown).")
        return
    trials = frame[frame["study"] == study] if len(frame) else frame
    land = get_landscape(json.dumps(config.to_dict(), sort_keys=True), num_classes(trials))
    summary(land, len(trials))
    c1, c2 = st.columns(2)
    x = c1.selectbox("Landscape x axis", list(AXES), format_func=AXES.get, key="ls_x")
    y = c2.selectbox("Landscape y axis", list(AXES), index=1, format_func=AXES.get, key="ls_y")
    st.plotly_chart(scatter_figure(scatter_data(land, trials, x, y), x, y), key="ls_chart",
                    config={"displaylogo": False})
    if not land.knobs:
        return
    knob = st.selectbox("Knob", land.knobs, key="ls_knob")
    table = ls.knob_table(land, knob, trials if len(trials) else None)
    st.plotly_chart(coverage_figure(table, knob), key="ls_coverage")
    st.dataframe(display_table(table), hide_index=True)


def summary(land: ls.Landscape, n_trials: int) -> None:
    """Metrics: what was costed, invalid share, the share the budgets cut, the trials run."""
    row = ls.overall(land)
    n = len(land.points)
    cols = st.columns(4)
    cols[0].metric("networks costed", f"{n:,}", help="the whole space" if land.whole else
                   f"a uniform sample of {'an infinite' if land.space_size is None else f'a {land.space_size:,}'}"
                   "-network space")
    cols[1].metric("invalid", f"{100 * row['invalid'] / max(n, 1):.1f}%")
    cols[2].metric("cut by the study's budgets", f"{100 * row['cut']:.1f}%" if land.budgets else "none",
                   help=", ".join(f"{k} <= {si(v)}" for k, v in land.budgets.items()) or None)
    cols[3].metric("trials run", f"{n_trials:,}")
    scope = "every network of the space" if land.whole else f"{n:,} networks drawn at random"
    notes = "".join(f" A {k} budget ({v:g}) is measured per trial, so it is not shown here."
                    for k, v in land.not_assessed.items())
    st.caption(f"Analytic cost of {scope} ({land.input_size}x{land.input_size} px, {land.num_classes} "
               f"classes), before any training.{notes}")


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-knob rows with readable columns: counts, percentages and min / median / max per cost."""
    out = pd.DataFrame({"value": table["value"], "networks": table["networks"],
                        "% of space": (100 * table["share"]).round(1), "invalid": table["invalid"],
                        "% cut by budgets": (100 * table["cut"]).round(1)})
    if "trials" in table:
        out["trials"] = table["trials"]
    for c in ls.COSTS:
        out[f"{ls.COST_LABELS[c]} (min / median / max)"] = [
            " / ".join(si(r[f"{c}_{q}"]) for q in ("min", "median", "max")) for _, r in table.iterrows()]
    return out

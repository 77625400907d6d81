"""The dashboard's fidelity view: does a study's short trial predict a long one?

It shows what `explorer fidelity` stored with the study (user attrs `fidelity/<recipe>/<N>`):
short against long accuracy per measured trial, the rank correlations with their bootstrap
intervals, front agreement and a plain-language verdict. The figures are
explorer.results.fidelity.report's (tested there); `scatter_data` and `scatter_figure` are pure;
`show` only draws.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from explorer.results import fidelity as fd
from explorer.store import read_study

SIGNAL_NAMES = {"val_acc": "short val_acc", "train_loss_sum": "training-loss sum (Ru et al. 2021)"}


def scatter_data(rep: dict[str, Any]) -> dict[str, list]:
    """Per measured trial: short and long accuracy (%), number, size, and its front membership."""
    short_front = set(rep["signals"]["val_acc"].get("short_front") or [])
    long_front = set(rep.get("long_front") or [])
    rows = sorted(rep["trials"], key=lambda r: r["size"])
    role = {(True, True): "on both fronts", (True, False): "short front only",
            (False, True): "long front only", (False, False): "on neither front"}
    return {"short": [100 * r["short"] for r in rows], "long": [100 * r["long"] for r in rows],
            "number": [r["number"] for r in rows], "size": [r["size"] for r in rows],
            "role": [role[(r["number"] in short_front, r["number"] in long_front)] for r in rows]}


def scatter_figure(data: dict[str, list], size_key: str):
    """Short against long accuracy, one trace per front role, with the y = x line for scale."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for role in ("on both fronts", "short front only", "long front only", "on neither front"):
        idx = [i for i, r in enumerate(data["role"]) if r == role]
        if not idx:
            continue
        fig.add_trace(go.Scatter(
            x=[data["short"][i] for i in idx], y=[data["long"][i] for i in idx], mode="markers+text",
            name=f"{role} ({len(idx)})", text=[f"#{data['number'][i]}" for i in idx], textposition="top center",
            customdata=[[data["size"][i]] for i in idx],
            hovertemplate=f"%{{text}}<br>short %{{x:.1f}}%<br>long %{{y:.1f}}%<br>{size_key} %{{customdata[0]:,}}"
                          "<extra></extra>"))
    values = data["short"] + data["long"]
    if values:
        lo, hi = min(values), max(values)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="long = short",
                                 line={"dash": "dot", "color": "#999"}, hoverinfo="skip"))
    fig.update_layout(xaxis_title="short trial val_acc (%)", yaxis_title="long recipe val_acc (%)",
                      height=460, margin={"t": 30})
    return fig


def signal_table(rep: dict[str, Any]) -> pd.DataFrame:
    """One row per short signal: correlations with their intervals, front agreement, HV ratio."""
    rows = []
    for name, s in rep["signals"].items():
        rows.append({"signal": SIGNAL_NAMES.get(name, name), "trials": s["n"],
                     "Spearman": _ci(s["spearman"], s["spearman_ci"]), "Kendall": _ci(s["kendall"], s["kendall_ci"]),
                     "front precision": _num(s["front_precision"]), "front recall": _num(s["front_recall"]),
                     "HV ratio": _num(s["hv_ratio"])})
    return pd.DataFrame(rows)


def _ok(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _num(v: Any) -> str:
    return f"{v:.2f}" if _ok(v) else "n/a"


def _ci(v: Any, ci: list) -> str:
    return f"{v:.2f} [{_num(ci[0])}, {_num(ci[1])}]" if _ok(v) else "n/a"


def show(storage, studies: list[str]) -> None:
    """The view: pick a study (and a recipe), then the chart, figures, export changes and verdict."""
    study = st.selectbox("Study", studies, key="fid_study") if len(studies) > 1 else studies[0]
    rec = read_study(storage, study)
    if not rec.fidelity:
        st.info(f"No fidelity measured for {study} yet: run `explorer fidelity {study} --storage ...` "
                "to retrain a sample of its trials with a longer recipe (docs/fidelity.md).")
        return
    keys = sorted(rec.fidelity)
    key = st.selectbox("Long recipe", keys, key="fid_recipe") if len(keys) > 1 else keys[0]
    cut = st.checkbox("Include trials the time budget cut", key="fid_cut",
                      help="their short accuracy comes from fewer epochs (explorer fidelity --include-cut)")
    rep = fd.report(rec, key, include_cut=cut)
    verdict = st.success if (rep["signals"]["val_acc"]["spearman"] or 0) >= 0.8 else st.warning
    verdict(rep["verdict"])
    s = rep["signals"]["val_acc"]
    cols = st.columns(4)
    cols[0].metric("Spearman (short vs long)", _num(s["spearman"]),
                   help=f"95% bootstrap interval {_num(s['spearman_ci'][0])} to {_num(s['spearman_ci'][1])}")
    cols[1].metric("Kendall tau", _num(s["kendall"]),
                   help=f"95% bootstrap interval {_num(s['kendall_ci'][0])} to {_num(s['kendall_ci'][1])}")
    cols[2].metric("front recall", _num(s["front_recall"]),
                   help="the share of the long front's trials that the short front found")
    cols[3].metric("hypervolume ratio", _num(s["hv_ratio"]),
                   help="the short front's trials measured at the long budget, against the long front")
    st.plotly_chart(scatter_figure(scatter_data(rep), rep["size_key"]), key="fid_chart",
                    config={"displaylogo": False})
    st.dataframe(signal_table(rep), hide_index=True)
    st.caption(f"{rep['n']} trials retrained with {rep['change']}; intervals: paired percentile bootstrap, "
               f"{rep['bootstrap']['n_boot']} resamples, seed {rep['bootstrap']['seed']}.")
    for line in fd.export_lines(rep["export"]):
        st.markdown(f"- {line}")

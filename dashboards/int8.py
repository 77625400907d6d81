"""The dashboard's int8 block: trials whose trained network was quantized to int8 (`explorer train
--int8`, `explorer export --int8`; study user attrs `int8/N`), beside their fp32 figures.

`int8_table` is pure (tested on its data); `show` only draws. It reads the study's user attrs
alone (explorer.store.study_int8), never its trials.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from explorer.store import study_int8

# column -> (the int8 record's key, scale): accuracies in %, sizes in kB (10**3 bytes), latencies in ms
FIGURES = {"fp32 test %": ("fp32_test_acc", 100), "int8 test %": ("int8_test_acc", 100),
           "drop (points)": ("test_acc_drop", 100), "fp32 kB": ("fp32_bytes", 1e-3), "int8 kB": ("int8_bytes", 1e-3),
           "int8 / fp32 size": ("size_ratio", 1), "fp32 ms": ("fp32_latency_ms", 1), "int8 ms": ("int8_latency_ms", 1),
           "int8 / fp32 latency": ("latency_ratio", 1)}
COLUMNS = ("study", "trial", "epochs", *FIGURES)


def int8_table(study: str, results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """One row per quantized trial, by trial number, with FIGURES' columns (NaN where a figure is missing)."""
    rows = [{"study": study, "trial": n, "epochs": r.get("epochs"),
             **{col: _scaled(r.get(key), k) for col, (key, k) in FIGURES.items()}}
            for n, r in sorted(results.items())]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _scaled(v: Any, k: float) -> float:
    """v * k for a finite number, else NaN (a missing figure stays visibly missing)."""
    return v * k if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


def show(storage, studies: list[str]) -> None:
    """The int8 table of the given studies, with the latency setting; a hint when none is stored."""
    results = {s: study_int8(storage, s) for s in studies}
    table = pd.concat([int8_table(s, r) for s, r in results.items() if r] or [int8_table("", {})],
                      ignore_index=True)
    if table.empty:
        st.caption("No int8 results stored: `explorer train STUDY --trial N --epochs 10 --out DIR --int8`, or "
                   "`explorer export STUDY --pareto --out DIR --int8 --models MODELS` (docs/export.md#int8).")
        return
    st.markdown("**int8**: trained networks quantized with onnxruntime (static, calibrated on training images); "
                "accuracies and latencies of both ONNX files through onnxruntime")
    st.dataframe(table, hide_index=True)
    settings = sorted({r.get("latency_setting") for rs in results.values() for r in rs.values()} - {None})
    if settings:
        st.caption("latency: median ms per image on " + "; ".join(settings))

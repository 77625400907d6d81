"""The dashboard's int8 block (dashboards/int8.py): its table, and the page showing stored results."""

from __future__ import annotations

import math
from pathlib import Path

from test_export import HAND, make_study

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")
RECORD = {"epochs": 10, "fp32_test_acc": 0.5593, "int8_test_acc": 0.5561, "test_acc_drop": 0.0032,
          "fp32_bytes": 20_000, "int8_bytes": 7_000, "size_ratio": 0.35, "fp32_latency_ms": 0.2,
          "int8_latency_ms": 0.1, "latency_ratio": 0.5, "latency_setting": "cpu (X) on h, 1 thread"}


def test_int8_table_scales_each_figure_and_keeps_missing_ones_missing():
    from dashboards.int8 import int8_table

    table = int8_table("s", {3: RECORD, 1: {"epochs": 5, "int8_test_acc": 0.25}})
    assert list(table["trial"]) == [1, 3]
    row = table.iloc[1].to_dict()
    assert math.isclose(row["int8 test %"], 55.61) and math.isclose(row["fp32 test %"], 55.93)
    assert math.isclose(row["drop (points)"], 0.32) and row["int8 kB"] == 7.0 and row["fp32 kB"] == 20.0
    assert row["int8 / fp32 latency"] == 0.5
    assert math.isnan(table.iloc[0]["fp32 test %"]) and table.iloc[0]["int8 test %"] == 25.0


def test_the_export_tab_shows_stored_int8_results(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    path = make_study(tmp_path / "hand.journal", "hand", HAND, study_attrs={"int8/3": RECORD})
    monkeypatch.setenv("EXPLORER_STORAGE", str(path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["view"] = "Feasible front & export"
    at.run()
    assert not at.exception and not at.error
    table = next(df.value for df in at.dataframe if "int8 test %" in df.value.columns)
    assert list(table["trial"]) == [3] and math.isclose(table.iloc[0]["int8 test %"], 55.61)
    assert any("cpu (X) on h, 1 thread" in c.value for c in at.caption)


def test_the_export_tab_says_how_to_get_int8_results(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EXPLORER_STORAGE", str(make_study(tmp_path / "hand.journal", "hand", HAND)))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["view"] = "Feasible front & export"
    at.run()
    assert not at.exception and any("No int8 results stored" in c.value for c in at.caption)

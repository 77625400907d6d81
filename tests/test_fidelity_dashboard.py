"""The dashboard's Fidelity view (dashboards/fidelity.py) in Streamlit's AppTest."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fidelity import FakeTrainer, make_study  # noqa: E402

from explorer.results import fidelity as fd  # noqa: E402
from explorer.store import read_study  # noqa: E402


def test_dashboard_fidelity_view(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "d.journal"
    storage = make_study(str(path), "d", n=10)
    rec = read_study(storage, "d")
    recipe = fd.long_recipe(rec.config)
    fd.run_fidelity(storage, rec, recipe, fd.plan(rec, recipe, 6)[1], types.SimpleNamespace(source="synthetic"),
                    device="cpu", trainer=FakeTrainer())
    rep = fd.report(read_study(storage, "d"), recipe.key)
    monkeypatch.setenv("EXPLORER_STORAGE", str(path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    at.session_state["view"] = "Fidelity"
    at.run()
    assert not at.exception and not at.error
    chart = next(c for c in at.get("plotly_chart") if "fid_chart" in (c.proto.id or ""))
    traces = json.loads(chart.proto.spec)["data"]
    points = sum(len(t["x"]) for t in traces if t["name"] != "long = short")
    assert points == rep["n"] == 6
    metric = {m.label: m.value for m in at.metric}
    assert metric["Spearman (short vs long)"] == f"{rep['signals']['val_acc']['spearman']:.2f}"
    assert any(rep["verdict"] == box.value for box in [*at.success, *at.warning])
    table = next(df.value for df in at.dataframe if "Spearman" in df.value.columns)
    assert list(table["signal"]) == ["short val_acc", "training-loss sum (Ru et al. 2021)"]
    at.checkbox(key="fid_cut").check().run()  # no trial of this study was cut: the same figures
    assert not at.exception and {m.label: m.value for m in at.metric} == metric


def test_dashboard_fidelity_view_before_any_measurement(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "n.journal"
    make_study(str(path), "n", n=4)
    monkeypatch.setenv("EXPLORER_STORAGE", str(path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    at.session_state["view"] = "Fidelity"
    at.run()
    assert not at.exception and any("No fidelity measured for n" in i.value for i in at.info)


def test_scatter_data_marks_front_membership():
    from dashboards.fidelity import scatter_data, signal_table

    rep = {"trials": [{"number": 4, "size": 900, "short": 0.5, "long": 0.7},
                      {"number": 1, "size": 100, "short": 0.4, "long": 0.6},
                      {"number": 2, "size": 300, "short": 0.3, "long": 0.65}],
           "long_front": [1, 2, 4],
           "signals": {"val_acc": {"n": 3, "short_front": [1, 4], "spearman": 0.5, "spearman_ci": [-1.0, 1.0],
                                   "kendall": 0.33, "kendall_ci": [None, None], "front_precision": 1.0,
                                   "front_recall": 2 / 3, "hv_ratio": 0.9}}}
    data = scatter_data(rep)
    assert data["number"] == [1, 2, 4] and data["short"] == [40.0, 30.0, 50.0]
    assert data["role"] == ["on both fronts", "long front only", "on both fronts"]
    row = signal_table(rep).iloc[0]
    assert row["Spearman"] == "0.50 [-1.00, 1.00]" and row["Kendall"] == "0.33 [n/a, n/a]"
    assert row["front recall"] == "0.67"

"""The landscape of a space: counts, cuts and cost quantiles by hand, the CLI on every shipped study,
and the dashboard's landscape view (AppTest) before any trial and with trials overlaid."""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.commands import main
from explorer.design.cost import estimate_cost
from explorer.design.spec import SqueezeSpec
from explorer.study import landscape as ls
from explorer.study.config import StudyConfig, load_config
from explorer.study.loop import open_study

from test_study import FakeTrainer, run

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import _studyfactory as factory  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")
STUDIES = sorted(ROOT.glob("studies/*.yaml"))
TINY = {"name": "tiny", "data": {"resolution": 16}, "n_trials": 4,
        "space": {"stem": "cifar", "stem_width": 16, "incr_e": 0, "pools": [3],
                  "base_e": {"choices": [16, 32]}, "n_fire": {"choices": [2, 4]}}}


def spec(base_e: int, n_fire: int = 4) -> SqueezeSpec:
    return SqueezeSpec(base_e=base_e, incr_e=0, n_fire=n_fire, stem="cifar", stem_width=16, pools=(3,),
                       num_classes=10, input_size=16)


def test_a_small_space_by_hand():
    """4 networks: n_fire 2 cannot hold a pool after fire module 3, so 2 are invalid; a budget
    between the two valid networks' sizes cuts exactly the larger one."""
    small, big = estimate_cost(spec(16)).params, estimate_cost(spec(32)).params
    cfg = StudyConfig.from_dict({**TINY, "budgets": {"params": (small + big) // 2, "latency_ms": 2}})
    land = ls.landscape(cfg)
    assert land.whole and land.space_size == 4 and len(land.points) == 4
    row = ls.overall(land)
    assert (row["networks"], row["invalid"]) == (4, 2)
    assert row["cut"] == row["cut_params"] == 0.5  # one of the two valid networks
    assert (row["params_min"], row["params_max"], row["params_median"]) == (small, big, (small + big) / 2)
    assert land.not_assessed == {"latency_ms": 2} and list(land.budgets) == ["params"]
    by_fire = ls.knob_table(land, "n_fire").set_index("value")
    assert by_fire.loc["2", "invalid"] == 2 and by_fire.loc["4", "invalid"] == 0
    assert np.isnan(by_fire.loc["2", "params_median"]) and by_fire.loc["4", "cut"] == 0.5
    by_width = ls.knob_table(land, "base_e").set_index("value")
    assert by_width.loc["16", "cut"] == 0.0 and by_width.loc["32", "cut"] == 1.0
    assert by_width.loc["32", "macs_max"] == estimate_cost(spec(32)).macs


def test_the_quickstart_space_is_costed_whole():
    land = ls.landscape(load_config(ROOT / "studies/quickstart.yaml"))
    # stem_width 2 x base_e 4 x incr_e 3 x pct_3x3 3 x sr 3 x n_fire 2 x pools 2 x bypass 2
    assert land.whole and land.space_size == len(land.points) == 2 * 4 * 3 * 3 * 3 * 2 * 2 * 2
    biggest = SqueezeSpec(base_e=64, incr_e=32, freq=2, pct_3x3=0.75, sr=0.5, n_fire=6, stem="cifar",
                          stem_width=32, pools=(2, 4), bypass="simple", batchnorm=True, dropout=0.1,
                          head_bn=True, head_relu=False, num_classes=10, input_size=16)
    assert ls.overall(land)["params_max"] == estimate_cost(biggest).params
    table = ls.knob_table(land, "bypass")
    assert table["value"].tolist() == ["none", "simple"] and table["networks"].tolist() == [864, 864]


def test_a_continuous_space_is_sampled_and_binned():
    cfg = StudyConfig.from_dict({**TINY, "space": {**TINY["space"], "n_fire": 4, "sr": {"low": 0.1, "high": 1.0}}})
    land = ls.landscape(cfg, samples=3000, seed=1)
    assert not land.whole and land.space_size is None and len(land.points) == 3000
    table = ls.knob_table(land, "sr")
    assert len(table) == ls.BINS and table["networks"].sum() == 3000
    assert table["share"].sum() == pytest.approx(1.0)
    low, high = table["value"].iloc[0], table["value"].iloc[-1]
    assert low.startswith("0.1") and high.endswith("1")  # bins named by their members' range
    again = ls.landscape(cfg, samples=3000, seed=1)
    assert again.points.equals(land.points)  # seeded


def test_a_space_of_fixed_knobs_is_one_network(capsys):
    cfg = StudyConfig.from_dict({**TINY, "space": {**TINY["space"], "base_e": 16, "n_fire": 4}})
    land = ls.landscape(cfg)
    assert land.whole and land.space_size == 1 and land.knobs == []
    assert ls.overall(land)["params_max"] == estimate_cost(spec(16)).params
    assert ls.to_json(land)["knobs"] == {} and len(ls.table(land)) == 1


def test_knob_table_counts_the_trials_run_per_value():
    land = ls.landscape(StudyConfig.from_dict(TINY))
    import pandas as pd

    trials = pd.DataFrame({"knob_base_e": [16, 16, 32.0], "knob_n_fire": [4, 4, 4]})
    table = ls.knob_table(land, "base_e", trials).set_index("value")
    assert table.loc["16", "trials"] == 2 and table.loc["32", "trials"] == 1
    assert table.loc["16", "trial_share"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_landscape_command_on_every_shipped_study(path, capsys):
    assert main(["landscape", str(path), "--samples", "2000"]) == 0
    text = capsys.readouterr().out
    config = load_config(path)
    assert text.startswith(f"landscape of {config.name}: ") and "invalid networks:" in text
    searched = [k.name for k in config.space if k.kind != "fixed"]
    assert all(f"\n{k} " in text for k in searched)
    assert main(["landscape", str(path), "--samples", "2000", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["study"] == config.name and set(doc["knobs"]) == set(searched)
    assert doc["costed"] == (doc["space_size"] if doc["whole_space"] else 2000)
    assert all(sum(r["networks"] for r in rows) == doc["costed"] for rows in doc["knobs"].values())
    assert main(["landscape", str(path), "--samples", "2000", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["knob"] == "(all)" and int(rows[0]["networks"]) == doc["costed"]
    assert len(rows) == 1 + sum(len(v) for v in doc["knobs"].values())


def test_landscape_of_a_stored_study_and_its_errors(tmp_path, capsys):
    url = str(tmp_path / "s.journal")
    # a space a run accepts (a study file whose n_fire choice 2 can never hold the pool is refused)
    space = {**TINY["space"], "n_fire": {"choices": [3, 4]}}
    run(StudyConfig.from_dict({**TINY, "space": space, "name": "t", "sampler": {"name": "grid"}}), url, FakeTrainer())
    assert main(["landscape", "t", "--storage", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["costed"] == 4
    plain = factory.make_storage(tmp_path / "plain.journal", {"plain": 2})
    assert main(["landscape", "plain", "--storage", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "study 'plain': its stored config: dataset: unknown key" in err and "give its study file" in err
    assert main(["landscape", "nothere", "--storage", str(plain)]) == 2
    assert "no study named 'nothere'" in capsys.readouterr().err
    assert main(["landscape", str(STUDIES[0]), "--samples", "0"]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err


# --- the dashboard's landscape view ------------------------------------------------------------

def app(monkeypatch, storage) -> AppTest:
    monkeypatch.setenv("EXPLORER_STORAGE", str(storage))
    return AppTest.from_file(APP, default_timeout=60).run()


def traces(at: AppTest, key: str) -> list[dict]:
    chart = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return json.loads(chart.proto.spec)["data"]


def points(trace: dict) -> int:
    """How many points a trace draws (a list, or numpy's base64 {'dtype', 'bdata'} form)."""
    x = trace["x"]
    return len(x) if isinstance(x, list) else len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_landscape_view_before_any_trial_on_every_shipped_study(path, tmp_path, monkeypatch):
    url = str(tmp_path / "s.journal")
    config = load_config(path)
    open_study(config, url)  # created, as `explorer run` does first; no trial yet
    at = app(monkeypatch, url)
    assert not at.exception and not at.error
    assert "No trial with a validation accuracy yet" in at.info[0].value
    land = ls.landscape(config, samples=5000)
    space = [t for t in traces(at, "ls_chart") if t["name"].startswith("space")]
    valid = int(land.points["valid"].sum())
    assert sum(points(t) for t in space) == valid
    assert metric(at, "networks costed") == f"{len(land.points):,}"


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_landscape_view_overlays_the_trials(tmp_path, monkeypatch):
    url = str(tmp_path / "s.journal")
    cfg = StudyConfig.from_dict({**TINY, "name": "t", "n_trials": 2, "sampler": {"name": "random", "seed": 3},
                                 "space": {**TINY["space"], "n_fire": 4, "sr": {"choices": [0.25, 0.5]}}})
    run(cfg, url, FakeTrainer())
    at = app(monkeypatch, url)
    at.session_state["view"] = "Space landscape"
    at.run()
    assert not at.exception and not at.error
    names = [t["name"] for t in traces(at, "ls_chart")]
    assert "trained trials (2)" in names and any(n.startswith("space: within") for n in names)
    table = next(df.value for df in at.dataframe if "% of space" in df.value.columns)
    assert table["trials"].sum() == 2 and table["networks"].sum() == 4
    at.selectbox(key="ls_knob").select("sr").run()
    at.selectbox(key="ls_x").select("size_mb").run()
    assert not at.exception


def test_landscape_view_of_a_study_without_a_config(tmp_path, monkeypatch):
    storage = factory.make_storage(tmp_path / "p.journal", {"plain": 5})
    at = app(monkeypatch, storage)
    at.session_state["view"] = "Space landscape"
    at.run()
    assert not at.exception
    assert any("does not parse" in i.value or "stores no explorer config" in i.value for i in at.info)

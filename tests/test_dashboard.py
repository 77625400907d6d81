"""The dashboard: loading, exports and Streamlit AppTest flows on small stored studies."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # dashboards/ is not an installed package

from dashboards import exports, figures  # noqa: E402
from dashboards import loading as ld  # noqa: E402
from explorer.design.spec import SqueezeSpec, load_spec  # noqa: E402
from explorer.results import pareto  # noqa: E402

import _studyfactory as factory  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")
SMALL = {"sr": 0.25, "pct_3x3": 0.5, "pools": "1,4", "bypass": "none"}


def knobs(base_e: int, **kw) -> dict:
    return {**SMALL, "base_e": base_e, **kw}


def hand_study() -> list:
    """Params grow with base_e (16 < 32 < 64), so the front is known by hand:
    #0 (16, .60) and #1 (32, .70) are optimal, #2 (64, .65) is beaten by #1,
    #3 (64, no accuracy) was rejected by the study's budget."""
    return [factory.trial(0, knobs(16), 0.60), factory.trial(1, knobs(32), 0.70),
            factory.trial(2, knobs(64), 0.65),
            factory.trial(3, knobs(64, bypass="complex"), None, infeasible="params > 100k")]


@pytest.fixture
def hand_storage(tmp_path) -> Path:
    return factory.make_storage(tmp_path / "hand.journal", {"hand": hand_study()})


def run_app(monkeypatch, storage, timeout: float = 30) -> AppTest:
    monkeypatch.setenv("EXPLORER_STORAGE", str(storage))
    return AppTest.from_file(APP, default_timeout=timeout).run()


def chart_spec(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def decode(array) -> np.ndarray:
    """A Plotly array: a list, or numpy's {'dtype', 'bdata', 'shape'} base64 form."""
    if isinstance(array, dict):
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = array.get("shape")
        return flat.reshape([int(d) for d in str(shape).split(",")]) if shape else flat
    return np.asarray(array)


def rows_of(trace: dict) -> list[int]:
    """The row ids a Pareto trace carries (customdata column 0)."""
    return sorted(int(r) for r in decode(trace["customdata"])[:, 0])


def parse_count(text: str) -> float:
    """'26k' -> 26000.0 (the slider's labels)."""
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def counts(at: AppTest) -> str:
    """The Pareto tab's counts line."""
    return next(m.value for m in at.markdown if "trials**:" in m.value)


@pytest.fixture
def downloads(monkeypatch) -> list:
    """Captures the bytes handed to Streamlit's media storage (the download payloads)."""
    captured = []
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        captured.append((filename, path_or_data))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return captured


# --- loading --------------------------------------------------------------------------

@pytest.mark.parametrize("url, masked", [
    ("postgresql://user:s3cret@db.example/studies", "postgresql://user:***@db.example/studies"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db?sslmode=require",
     "postgresql+psycopg://u:***@h:5432/db?sslmode=require"),
    ("postgresql://h/db?user=u&password=hunter2", "postgresql://h/db?user=u&password=***"),
    ("sqlite:///studies.db", "sqlite:///studies.db"),
    ("runs/a.journal", "runs/a.journal"),
])
def test_mask_url(url, masked):
    assert ld.mask_url(url) == masked


def test_missing_file_is_an_error_and_is_not_created(tmp_path):
    for url in (tmp_path / "nope.journal", f"sqlite:///{tmp_path / 'nope.db'}"):
        with pytest.raises(ld.StorageError, match="does not exist"):
            ld.open_storage(str(url))
    assert list(tmp_path.iterdir()) == []


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.journal"
    bad.write_text("this is not json\n")
    with pytest.raises(ld.StorageError, match="not an Optuna journal"):
        ld.open_storage(str(bad))


def test_reader_follows_a_running_study_without_its_lock(hand_storage):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    reader = ld.open_storage(str(hand_storage))
    before = ld.study_fingerprint(reader, "hand")
    assert before[:2] == (4, 4)  # trials, finished trials (then the study attrs)
    writer = optuna.load_study(study_name="hand",
                               storage=JournalStorage(JournalFileBackend(str(hand_storage))))
    writer.add_trial(factory.trial(4, knobs(16, sr=0.5), 0.66))
    lock = JournalFileSymlinkLock(str(hand_storage))
    assert lock.acquire()  # a writer mid-append holds the lock; reading must not wait for it
    try:
        t0 = time.perf_counter()
        assert ld.study_fingerprint(reader, "hand")[:2] == (5, 5)
        assert ld.load_trials(reader, "hand")["val_acc"].tolist()[-1] == 0.66
        assert time.perf_counter() - t0 < 5  # Optuna's lock wait would log after 10 s
    finally:
        lock.release()


def test_reader_skips_a_torn_last_line_until_it_is_complete(hand_storage):
    reader = ld.open_storage(str(hand_storage))
    text = hand_storage.read_text()
    last = text.splitlines()[-1]  # the last trial's log line, appended again as a new trial
    with open(hand_storage, "a") as f:
        f.write(last[:20])  # a writer killed (or still writing) mid-line
    assert len(ld.load_trials(reader, "hand")) == 4
    with open(hand_storage, "a") as f:
        f.write(last[20:] + "\n")
    assert len(ld.load_trials(reader, "hand")) == 5


def test_reader_cannot_write_and_skips_a_corrupt_line_naming_it(hand_storage):
    reader = ld.open_storage(str(hand_storage))
    with pytest.raises(ld.StorageError, match="read-only"):
        reader.set_study_user_attr(reader.get_study_id_from_name("hand"), "x", 1)
    lines = hand_storage.read_text().splitlines()
    lines.insert(2, "{not json")  # issue 13: one garbage line must not hide the study
    hand_storage.write_text("\n".join(lines) + "\n")
    reader = ld.open_storage(str(hand_storage))
    assert ld.load_trials(reader, "hand")["number"].tolist() == [0, 1, 2, 3]
    assert "skipped line 3 (not a journal entry)" in ld.skipped_lines(reader)[0]


def test_load_trials_reads_attrs_knobs_and_study_list(hand_storage):
    storage = ld.open_storage(str(hand_storage))
    assert ld.list_studies(storage)["study"].tolist() == ["hand"]
    frame = ld.load_trials(storage, "hand")
    assert frame["number"].tolist() == [0, 1, 2, 3]
    assert frame["val_acc"].tolist()[:3] == [0.60, 0.70, 0.65]
    assert np.isnan(frame["val_acc"].iloc[3])
    assert frame["infeasible"].tolist() == [False, False, False, True]
    assert frame["over_budget"].iloc[3] == "params > 100k"
    assert frame["knob_pools"].tolist() == ["1,4"] * 4  # params' "1,4" and spec's [1, 4] agree
    assert frame["knob_base_e"].tolist() == [16, 32, 64, 64]
    assert frame["curve"].iloc[1][-1] == 0.70
    assert frame["params"].is_monotonic_increasing  # the premise of the hand-computed front
    with pytest.raises(ld.StorageError, match="no study named"):
        ld.load_trials(storage, "other")


def test_sqlite_storage_is_read_only(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="sq", directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["val_acc", "params"])
    study.add_trials(hand_study())
    before = (tmp_path / "s.db").read_bytes()
    storage = ld.open_storage(url)
    frame = ld.load_trials(storage, "sq")
    assert frame["val_acc"].tolist()[:3] == [0.60, 0.70, 0.65]
    with pytest.raises(Exception):
        storage.set_study_user_attr(storage.get_study_id_from_name("sq"), "x", 1)
    assert (tmp_path / "s.db").read_bytes() == before


# --- exports --------------------------------------------------------------------------

def test_trial_config_round_trips_through_load_spec(hand_storage, tmp_path):
    frame = ld.load_trials(str(hand_storage), "hand")
    config = exports.trial_config(frame.iloc[1], "postgresql://u:pw@h/db")
    assert config["provenance"]["storage"] == "postgresql://u:***@h/db"
    assert config["provenance"]["trial"] == 1 and config["metrics"]["val_acc"] == 0.70
    path = tmp_path / "t.yaml"
    path.write_text(exports.to_yaml(config))
    assert load_spec(path) == SqueezeSpec.from_dict(factory.spec_dict(**knobs(32)))
    path = tmp_path / "t.json"
    path.write_text(exports.to_json(config))
    assert load_spec(path).base_e == 32


def test_configs_zip_holds_one_yaml_per_trial(hand_storage):
    frame = ld.load_trials(str(hand_storage), "hand")
    data = exports.configs_zip(frame.iloc[[0, 2]], str(hand_storage))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["hand_trial00000.yaml", "hand_trial00002.yaml"]
        assert yaml.safe_load(zf.read("hand_trial00002.yaml"))["spec"]["base_e"] == 64


# --- figure data ----------------------------------------------------------------------

def test_pareto_data_roles_and_rows(hand_storage):
    frame = ld.load_trials(str(hand_storage), "hand")
    roles = pareto.classify(frame["params"], frame["val_acc"], frame["infeasible"],
                            np.ones(4, bool), frame["study"])
    assert roles.tolist() == ["front", "front", "dominated", "infeasible"]
    traces = figures.pareto_data(frame, roles, "params", "val_acc")
    by_role = {t["role"]: t["rows"].tolist() for t in traces if t["kind"] == "points"}
    assert by_role == {"front": [0, 1], "dominated": [2], "infeasible": [3]}
    infeasible = next(t for t in traces if t.get("role") == "infeasible")
    # in percent; no accuracy: drawn 10% of the accuracy range (60 to 70) below the lowest, at 59
    assert infeasible["y"].tolist() == [pytest.approx(59.0)]
    line = next(t for t in traces if t["kind"] == "line")
    assert line["y"].tolist() == [pytest.approx(60.0), pytest.approx(70.0)]


def test_hover_data_numbers_and_template(hand_storage):
    frame = ld.load_trials(str(hand_storage), "hand")
    knobs = ld.knob_columns(frame)
    assert knobs == ["knob_base_e", "knob_incr_e", "knob_bypass"]  # incr_e follows base_e
    hover = figures.hover_data(frame, knobs)
    # columns: number, val_acc, best_val_acc, params, macs, size_mb, base_e, incr_e (no latency)
    assert hover.numbers.shape == (4, 8)
    assert hover.numbers[1, [0, 1, 6]].tolist() == [1, pytest.approx(70.0), 32]  # accuracy in percent
    assert hover.numbers[1, 3] == frame["params"].iloc[1]
    assert "%{customdata[5]:.3s} MACs" in hover.template  # units named: MACs, not FLOPs
    assert "base_e=%{customdata[7]:.4~g} · incr_e=%{customdata[8]:.4~g}%{text}" in hover.template
    # the seed noise (acc_std 0.01 = 1 point) and how each trial ended
    assert hover.text.tolist()[:3] == [" · bypass=none<br>seed noise ± 1.0 pts<br>ended: completed"] * 3
    assert hover.text[3] == " · bypass=complex<br>ended: pruned<br>over budget: params > 100k"


def test_edf_data_per_choice(hand_storage):
    frame = ld.load_trials(str(hand_storage), "hand").iloc[:3]
    curves = figures.edf_data(frame, "knob_base_e", "val_acc", "params", normalise=False)
    assert [c["choice"] for c in curves] == ["16", "32", "64"]
    assert [c["x"].round(6).tolist() for c in curves] == [[0.4], [0.3], [0.35]]


# --- the app --------------------------------------------------------------------------

def test_app_shows_the_front_of_the_study(monkeypatch, hand_storage):
    at = run_app(monkeypatch, hand_storage)
    assert not at.exception and not at.error
    assert counts(at) == ("**4 trials**: 3 networks trained, 1 over budget (not trained) · **2 on the front** · "
                          "0 outside your budgets and filters")
    spec = chart_spec(at)
    points = {d["name"]: rows_of(d) for d in spec["data"] if d["mode"] == "markers"}
    assert points == {"Pareto front": [0, 1], "dominated": [2], "over budget (study)": [3]}
    # a log axis labels every tick in full (20k, not a bare 2), at 1, 2 and 5 per decade
    assert spec["layout"]["xaxis"] == {"title": {"text": "parameters"}, "type": "log", "tickformat": "~s",
                                       "dtick": "D2"}
    assert spec["layout"]["legend"]["y"] > 1  # above the plot, not below the fold
    # every trained trial of the factory stores acc_std 0.01: +-1 point error bars, on the front only
    bars = {d["name"]: d.get("error_y", {}).get("array") for d in spec["data"] if d["mode"] == "markers"}
    assert bars == {"Pareto front": [1.0, 1.0], "dominated": None, "over budget (study)": None}


def test_error_bars_only_where_noise_was_measured(hand_storage):
    frame = ld.load_trials(str(hand_storage), "hand")
    frame.loc[frame["number"] == 0, "acc_std"] = np.nan  # #0 never calibrated
    roles = pareto.classify(frame["params"], frame["val_acc"], frame["infeasible"],
                            np.ones(4, bool), frame["study"])
    hover = figures.hover_data(frame, [])
    fig, _ = figures.pareto_figure(figures.pareto_data(frame, roles, "params", "val_acc"), hover,
                                   "params", "val_acc", log_x=True, log_y=False, color_col=None,
                                   color_kind="none", multi_study=False)
    front = next(d for d in fig["data"] if d.get("name") == "Pareto front")
    assert front["error_y"]["array"] == [None, 1.0]  # percentage points
    # best_val_acc has no seed-noise estimate: no bars at all
    fig, _ = figures.pareto_figure(figures.pareto_data(frame, roles, "params", "best_val_acc"), hover,
                                   "params", "best_val_acc", log_x=True, log_y=False, color_col=None,
                                   color_kind="none", multi_study=False)
    assert not any("error_y" in d for d in fig["data"])


def test_app_changing_the_axis_redraws(monkeypatch, hand_storage):
    at = run_app(monkeypatch, hand_storage)
    at.selectbox(key="size_axis").select("macs")
    at.checkbox(key="log_x").uncheck()
    at.run()
    assert not at.exception
    assert chart_spec(at)["layout"]["xaxis"] == {"title": {"text": "MACs (multiply-adds per image)"},
                                                  "type": "linear"}


def test_app_colour_by_a_knob(monkeypatch, hand_storage):
    at = run_app(monkeypatch, hand_storage)
    at.selectbox(key="color_by").select("knob_bypass").run()
    names = {d["name"]: rows_of(d) for d in chart_spec(at)["data"] if d["mode"] == "markers"}
    assert names == {"over budget (study) · bypass=complex": [3], "dominated · bypass=none": [2],
                     "Pareto front · bypass=none": [0, 1]}


def test_app_budget_recomputes_the_front(monkeypatch, hand_storage):
    at = run_app(monkeypatch, hand_storage)
    assert not at.select_slider  # closed: its widgets are not drawn
    at.session_state["filters_open"] = True  # the user opens "Budgets and filters"
    at.run()
    frame = ld.load_trials(str(hand_storage), "hand")
    limits = [parse_count(o) for o in at.select_slider(key="max_params").options if o != "no limit"]
    limit = max(x for x in limits if x < frame["params"].iloc[1])  # just below trial #1's params
    assert limit >= frame["params"].iloc[0]
    at.select_slider(key="max_params").set_value(limit).run()
    assert "**1 on the front** · 2 outside your budgets and filters" in counts(at)  # only #0 fits
    at.session_state["filters_open"] = False  # closed again: the budget still applies, and says so
    at.run()
    assert not at.select_slider and "**1 on the front** · 2 outside your budgets and filters" in counts(at)
    assert any(c.value == f"Applied: params <= {figures.fmt_count(limit)}" for c in at.sidebar.caption)
    at.session_state["filters_open"] = True  # reopened: the slider shows the limit set
    assert at.run().select_slider(key="max_params").value == limit


def test_app_selected_trial_detail_and_download(monkeypatch, hand_storage, downloads):
    at = run_app(monkeypatch, hand_storage)
    at.session_state["selected_trials"] = [("hand", 2)]  # what a click on #2 leaves behind
    at.session_state["view"] = "Trial detail"
    at.run()
    assert not at.exception and not at.error
    assert "trial #2" in at.subheader[0].value
    assert [b.label for b in at.download_button] == ["Download config (YAML)", "Download config (JSON)"]
    payload = dict(downloads)["hand_trial00002.yaml"]
    config = yaml.safe_load(payload)
    assert config["spec"]["base_e"] == 64 and config["provenance"]["trial"] == 2
    layer_table = next(df.value for df in at.dataframe if "out_shape" in df.value.columns)
    assert layer_table["name"].iloc[0] == "conv1"


def test_app_export_tab_csv_of_the_feasible_front(monkeypatch, hand_storage, downloads):
    at = run_app(monkeypatch, hand_storage)
    at.session_state["view"] = "Feasible front & export"
    at.run()
    assert not at.exception
    csv = pd.read_csv(io.BytesIO(dict(downloads)["pareto_front.csv"]))
    assert csv["number"].tolist() == [0, 1]
    with zipfile.ZipFile(io.BytesIO(dict(downloads)["front_configs.zip"])) as zf:
        assert zf.namelist() == ["hand_trial00000.yaml", "hand_trial00001.yaml"]


def test_app_design_space_tab(monkeypatch, tmp_path):
    storage = factory.make_storage(tmp_path / "r.journal", {"rand": 60})
    at = run_app(monkeypatch, storage)
    at.session_state["view"] = "Design space"
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="ds_knob").value == "knob_sr"
    assert len(at.get("plotly_chart")) == 3  # acc vs knob, size vs knob, EDF
    at.checkbox(key="ds_normalise").check().run()
    at.button(key="imp_go").click().run()
    assert not at.exception
    importances = next(df.value for df in at.dataframe if "importance" in df.value.columns)
    assert set(importances["knob"]) == {"sr", "pct_3x3", "base_e", "pools", "bypass", "lr"}
    # accuracy is driven by params in the factory, so base_e (widths) must matter most
    assert importances["knob"].iloc[0] == "base_e"


def test_importances_come_from_the_trials_already_read(monkeypatch, tmp_path):
    import warnings

    import optuna

    storage = factory.make_storage(tmp_path / "r.journal", {"rand": 60})
    study = optuna.load_study(study_name="rand", storage=ld.open_storage(str(storage)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA says it ranks by low target values: the error
        expected = optuna.importance.get_param_importances(study, target=lambda t: 1 - t.user_attrs["val_acc"])
    at = run_app(monkeypatch, storage)
    at.session_state["view"] = "Design space"
    at.run()
    reads = []
    monkeypatch.setattr(optuna, "load_study", lambda *a, **k: reads.append(a) or 1 / 0)
    monkeypatch.setattr(ld, "load_records", lambda *a, **k: reads.append(a) or 1 / 0)
    at.button(key="imp_go").click().run()
    assert not at.exception and reads == []
    shown = next(df.value for df in at.dataframe if "importance" in df.value.columns)
    assert dict(zip(shown["knob"], shown["importance"])) == pytest.approx(expected)
    assert list(shown["knob"]) == list(expected)  # largest first


def test_app_overlays_several_studies(monkeypatch, tmp_path):
    storage = factory.make_storage(tmp_path / "two.journal", {"a": 30, "b": 20}, seed=1)
    at = run_app(monkeypatch, storage)
    assert at.multiselect(key="studies").value == ["b"]  # newest study by default
    linked = AppTest.from_file(APP, default_timeout=30)
    linked.query_params["study"] = "a"  # a link naming a study: ?study=a
    assert linked.run().multiselect(key="studies").value == ["a"]
    at.multiselect(key="studies").select("a").run()
    assert counts(at).startswith("**50 trials**: 50 networks trained")
    names = [d["name"] for d in chart_spec(at)["data"]]
    assert "front · a" in names and "front · b" in names


def test_app_empty_storage(monkeypatch, tmp_path):
    empty = tmp_path / "empty.journal"
    empty.write_text("")
    at = run_app(monkeypatch, empty)
    assert not at.exception
    assert "holds no studies" in at.info[0].value


def test_app_missing_file(monkeypatch, tmp_path):
    at = run_app(monkeypatch, tmp_path / "missing.journal")
    assert not at.exception
    assert "does not exist" in at.error[0].value
    assert not (tmp_path / "missing.journal").exists()


def test_app_study_without_results(monkeypatch, tmp_path):
    storage = factory.make_storage(tmp_path / "p.journal",
                                   {"pending": [factory.trial(0, knobs(16), None, infeasible="too big")]})
    at = run_app(monkeypatch, storage)
    assert not at.exception
    assert "No trial with a validation accuracy yet" in at.info[0].value


def test_app_never_shows_a_password(monkeypatch):
    at = run_app(monkeypatch, "postgresql://me:hunter2@127.0.0.1:1/studies")
    assert not at.exception
    assert at.text_input(key="storage").value == "postgresql://me:***@127.0.0.1:1/studies"
    assert at.error and "me:***@" in at.error[0].value
    shown = [e.value for e in at.error] + [c.value for c in at.caption]
    assert not any("hunter2" in text for text in shown)


def test_app_without_a_storage(monkeypatch):
    monkeypatch.delenv("EXPLORER_STORAGE", raising=False)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No storage given" in at.info[0].value


# --- the command ----------------------------------------------------------------------

def test_dashboard_command_masks_and_binds_loopback(monkeypatch, capsys, tmp_path):
    from explorer.commands import dashboard, main

    calls = []
    monkeypatch.setattr(dashboard, "serve", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert main(["dashboard", "--storage", "postgresql://u:pw@h/db", "--port", "8600"]) == 0
    cmd, env = calls[0]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert env["EXPLORER_STORAGE"] == "postgresql://u:pw@h/db"
    assert "pw" not in " ".join(cmd)
    out = capsys.readouterr().out
    assert "postgresql://u:***@h/db" in out and "pw@" not in out
    assert main(["dashboard", "--storage", str(tmp_path / "none.journal")]) == 2


# --- review fixes: a stored spec that no longer parses; absolute journal paths -------------------

def bad_spec_study() -> list:
    """hand_study() whose #1 (on the front) stored a spec that no longer parses (pct_3x3 > 1)."""
    trials = hand_study()
    trials[1].user_attrs["spec"] = {**trials[1].user_attrs["spec"], "pct_3x3": 1.5}
    return trials


@pytest.fixture
def bad_storage(tmp_path) -> Path:
    return factory.make_storage(tmp_path / "bad.journal", {"bad": bad_spec_study()})


def test_configs_zip_skips_a_trial_whose_spec_no_longer_parses(bad_storage):
    frame = ld.load_trials(str(bad_storage), "bad")
    assert frame.loc[frame["number"] == 1, "spec"].iloc[0]["pct_3x3"] == 1.5
    skipped: list[str] = []
    data = exports.configs_zip(frame.iloc[[0, 1, 2]], str(bad_storage), skipped)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["bad_trial00000.yaml", "bad_trial00002.yaml"]
    assert len(skipped) == 1 and skipped[0].startswith("bad #1: ") and "pct_3x3" in skipped[0]
    # Without a list to report into it still skips rather than raising.
    with zipfile.ZipFile(io.BytesIO(exports.configs_zip(frame.iloc[[1]], str(bad_storage)))) as zf:
        assert zf.namelist() == []


def test_app_trial_detail_of_an_unparsable_spec_warns(monkeypatch, bad_storage, downloads):
    at = run_app(monkeypatch, bad_storage)
    at.session_state["selected_trials"] = [("bad", 1)]
    at.session_state["view"] = "Trial detail"
    at.run()
    assert not at.exception and not at.error
    assert "trial #1" in at.subheader[0].value
    assert any("No config download" in w.value and "pct_3x3" in w.value for w in at.warning)
    assert [b.label for b in at.download_button] == []


def test_app_export_zip_leaves_out_an_unparsable_spec_and_says_so(monkeypatch, bad_storage, downloads):
    at = run_app(monkeypatch, bad_storage)
    at.session_state["selected_trials"] = [("bad", 0), ("bad", 1), ("bad", 2)]
    at.session_state["view"] = "Feasible front & export"
    at.run()
    assert not at.exception and not at.error
    assert any("Left out of the zip: 1 trial(s)" in w.value and "bad #1" in w.value for w in at.warning)
    with zipfile.ZipFile(io.BytesIO(dict(downloads)["selected_configs.zip"])) as zf:
        assert zf.namelist() == ["bad_trial00000.yaml", "bad_trial00002.yaml"]


def test_trial_config_records_an_absolute_journal_path(hand_storage, monkeypatch):
    # The dashboard was started in the journal's folder with a relative path; `explorer
    # calibrate` on the downloaded file, run from elsewhere, must still find the study.
    monkeypatch.chdir(hand_storage.parent)
    frame = ld.load_trials("hand.journal", "hand")
    for url in ("hand.journal", "journal:hand.journal"):
        config = exports.trial_config(frame.iloc[0], url)
        assert config["provenance"]["storage"] == str(hand_storage.resolve())
    sqlite = exports.trial_config(frame.iloc[0], "sqlite:///studies.db?mode=ro")
    assert sqlite["provenance"]["storage"] == f"sqlite:///{hand_storage.parent.resolve()}/studies.db?mode=ro"
    assert exports.trial_config(frame.iloc[0], "sqlite:////abs/s.db")["provenance"]["storage"] == "sqlite:////abs/s.db"


def test_trials_cut_short_look_different_and_say_how_they_ended(tmp_path):
    """A dead trial (it trained, learned nothing) that lands on the front is drawn apart from the
    completed ones, and its hover says it died."""
    dead = factory.trial(0, knobs(16), 0.10)
    dead.user_attrs["end"] = "dead"
    storage = factory.make_storage(tmp_path / "d.journal", {"d": [dead, factory.trial(1, knobs(32), 0.70)]})
    frame = ld.load_trials(str(storage), "d")
    roles = pareto.classify(frame["params"], frame["val_acc"], frame["infeasible"], np.ones(2, bool),
                            frame["study"])
    assert roles.tolist() == ["front", "front"]  # smaller and (barely) better than nothing
    hover = figures.hover_data(frame, [])
    fig, _ = figures.pareto_figure(figures.pareto_data(frame, roles, "params", "val_acc"), hover,
                                   "params", "val_acc", log_x=True, log_y=False, color_col=None,
                                   color_kind="none", multi_study=False)
    by_name = {d["name"]: d for d in fig["data"] if d.get("mode") == "markers"}
    assert set(by_name) == {"Pareto front", "Pareto front · cut short"}
    assert by_name["Pareto front · cut short"]["marker"]["symbol"] != by_name["Pareto front"]["marker"]["symbol"]
    assert "ended: died" in hover.text[0] and "ended: completed" in hover.text[1]


def test_a_single_epoch_curve_has_a_sane_axis():
    fig = figures.curve_figure([0.42], [1.9])
    assert fig["layout"]["xaxis"]["range"] == [0.5, 1.5]  # one epoch, not -0.5..1
    assert fig["data"][0]["y"] == [pytest.approx(42.0)]  # percent


def test_a_widget_change_never_reads_the_storage(monkeypatch, hand_storage):
    calls = []
    for name in ("study_fingerprint", "list_studies", "load_records"):
        real = getattr(ld, name)
        monkeypatch.setattr(ld, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    at = run_app(monkeypatch, hand_storage)
    assert set(calls) == {"study_fingerprint", "list_studies", "load_records"}
    calls.clear()
    time.sleep(2.1)  # past every cache expiry: only the session's own reading may stop a reread
    at.selectbox(key="size_axis").select("macs").run()
    at.checkbox(key="log_x").uncheck().run()
    assert not at.exception and calls == []
    at.button[0].click().run()  # Refresh reads again
    assert "study_fingerprint" in calls


def test_the_dashboard_command_does_not_import_pandas():
    import subprocess

    code = ("import sys, argparse; from explorer.commands import dashboard; from explorer.store import mask_url;"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False"


"""Optuna's studies are first-class: a study written by `explorer run` opens through Optuna's public
API and the `optuna` CLI, and studies written by plain Optuna (journal and SQLite, multi- and
single-objective, any metric names) open in our dashboard and in `explorer status` with their front."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from explorer.store import _optuna, find_study, open_storage  # noqa: E402

import _studyfactory as factory  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")
# (x, y) of a hand-made two-objective study, minimise both: the front is #0, #1, #3 by hand
# (#2 (3, 3) is beaten by #1 (2, 2); #4 (4, 4) by all three).
POINTS = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (4.0, 1.0), (4.0, 4.0)]
FRONT = [0, 1, 3]
# single objective, maximised: the running best is #0 (0.2), #2 (0.5), #3 (0.7)
SINGLE = [0.2, 0.1, 0.5, 0.7, 0.6]


def plain_study(storage, name: str, *, single: bool = False, metric_names=None, attrs=None):
    """A study written with plain Optuna, no explorer attributes (unless `attrs`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name,
                                directions=["maximize"] if single else ["minimize", "minimize"])
    if metric_names:
        study.set_metric_names(metric_names)
    for k, v in (attrs or {}).items():
        study.set_user_attr(k, v)
    values = [[v] for v in SINGLE] if single else [list(p) for p in POINTS]
    for i, vals in enumerate(values):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 10)})
        trial.set_user_attr("note", f"t{i}")
        study.tell(trial, vals)
    return study


def storage_url(tmp_path: Path, kind: str) -> str:
    return str(tmp_path / "plain.journal") if kind == "journal" else f"sqlite:///{tmp_path / 'plain.db'}"


def writable(url: str):
    return open_storage(url, create=True)


def run_app(monkeypatch, url: str, study: str | None = None) -> AppTest:
    monkeypatch.setenv("EXPLORER_STORAGE", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    if study is not None and at.multiselect(key="studies").value != [study]:
        at.multiselect(key="studies").set_value([study]).run()
    assert not at.exception, at.exception
    return at


def front_numbers(at: AppTest) -> list[int]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    out = []
    for trace in spec["data"]:
        if trace.get("name", "").startswith("Pareto front") and trace.get("mode") == "markers":
            out += [int(r[1]) for r in _decode(trace["customdata"])]
    return sorted(out)


def _decode(array):
    import base64

    import numpy as np
    if isinstance(array, dict):
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = array.get("shape")
        return flat.reshape([int(d) for d in str(shape).split(",")]) if shape else flat
    return np.asarray(array)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_dashboard_draws_the_front_of_a_plain_two_objective_study(tmp_path, monkeypatch, kind):
    url = storage_url(tmp_path, kind)
    plain_study(writable(url), "plain", metric_names=["loss", "latency"])
    at = run_app(monkeypatch, url)
    assert front_numbers(at) == FRONT
    assert at.selectbox(key="acc_axis").options == ["loss (minimized)", "latency (minimized)"]
    assert any("explorer's attributes" in c.value for c in at.caption)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_dashboard_draws_the_running_best_of_a_single_objective_study(tmp_path, monkeypatch, kind):
    url = storage_url(tmp_path, kind)
    plain_study(writable(url), "single", single=True)
    at = run_app(monkeypatch, url)
    assert front_numbers(at) == [0, 2, 3]


def test_metric_names_val_acc_and_params_are_read_as_such(tmp_path, monkeypatch):
    url = storage_url(tmp_path, "sqlite")
    study = optuna.create_study(storage=writable(url), study_name="named", directions=["maximize", "minimize"])
    study.set_metric_names(["val_acc", "params"])
    for i, (p, a) in enumerate([(100, 0.5), (200, 0.7), (300, 0.6)]):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 10)})
        study.tell(t, [a, p])
    at = run_app(monkeypatch, url)
    assert front_numbers(at) == [0, 1]
    assert not any("No trial with" in i.value for i in at.info)


def test_objectives_attr_without_cost_attrs_does_not_crash(tmp_path, monkeypatch):
    url = storage_url(tmp_path, "journal")
    plain_study(writable(url), "half", attrs={"objectives": ["val_acc", "params"]})
    at = run_app(monkeypatch, url)
    assert not at.exception


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
@pytest.mark.parametrize("single", [False, True])
def test_status_opens_a_plain_study(tmp_path, kind, single):
    url = storage_url(tmp_path, kind)
    plain_study(writable(url), "plain", single=single, metric_names=None if single else ["loss", "latency"])
    out = subprocess.run([sys.executable, "-m", "explorer", "status", "plain", "--storage", url],
                         capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    want = "1 of 5" if single else f"{len(FRONT)} of 5"  # one objective: the best trial
    assert want in out.stdout, out.stdout


def _env():
    import os
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# --- an explorer study through Optuna's public API -----------------------------------------

@pytest.fixture
def explorer_sqlite(tmp_path) -> str:
    """A study stored the way `explorer run` stores one (its attrs, its objectives) in SQLite."""
    trials = factory.random_trials(20, seed=3, infeasible_above=1.2e6)
    return factory.make_rdb(f"sqlite:///{tmp_path / 'ex.db'}", {"ex": trials})


def test_bulk_reader_matches_optuna(explorer_sqlite):
    storage = open_storage(explorer_sqlite, read_only=True)
    study_id = find_study(storage, "ex")
    assert _optuna.rdb_trials(storage, study_id) == storage.get_all_trials(study_id, deepcopy=False)
    fp = _optuna.rdb_fingerprint(storage, study_id)
    assert sum(n for state, n, *_ in fp[:-1]) == 20


def test_a_study_written_by_explorer_run_opens_through_optunas_public_api(tmp_path):
    from test_study import FakeTrainer, config, run

    url = f"sqlite:///{tmp_path / 'run.db'}"
    run(config(n_trials=4), url, FakeTrainer())
    summaries = optuna.get_all_study_summaries(url)
    assert [s.study_name for s in summaries] == ["t"]
    assert summaries[0].n_trials >= 4 and summaries[0].directions is not None
    study = optuna.load_study(study_name="t", storage=url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 4
    for t in complete:  # the values are the stored objectives, the attrs explorer's own
        assert t.values == [t.user_attrs["val_acc"], t.user_attrs["params"]]
        assert {"spec", "spec_id", "params", "macs", "val_acc", "curve", "end"} <= set(t.user_attrs)
    # Optuna's best_trials is the front by the definition (max val_acc, min params), checked by hand
    pts = [(t.number, t.values[0], t.values[1]) for t in complete]
    front = sorted(n for n, a, p in pts
                   if not any(a2 >= a and p2 <= p and (a2 > a or p2 < p) for _, a2, p2 in pts))
    assert sorted(t.number for t in study.best_trials) == front
    out = subprocess.run(["optuna", "studies", "--storage", url, "-f", "json"], capture_output=True, text=True,
                         env=_env())
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [s["name"] for s in listed] == ["t"] and listed[0]["n_trials"] >= 4


@pytest.mark.skipif(not __import__("os").environ.get("EXPLORER_TEST_PG_URL"),
                    reason="EXPLORER_TEST_PG_URL is not set: no PostgreSQL server to test against")
def test_bulk_reader_matches_optuna_on_postgresql():
    import os
    import uuid

    url, name = os.environ["EXPLORER_TEST_PG_URL"], f"plain-{uuid.uuid4().hex[:8]}"
    factory.make_rdb(url, {name: factory.random_trials(12, seed=5, infeasible_above=1.2e6)})
    try:
        storage = open_storage(url, read_only=True)
        study_id = find_study(storage, name)
        assert _optuna.rdb_trials(storage, study_id) == storage.get_all_trials(study_id, deepcopy=False)
        assert sum(n for _, n, *_ in _optuna.rdb_fingerprint(storage, study_id)[:-1]) == 12
    finally:
        optuna.delete_study(study_name=name, storage=url)

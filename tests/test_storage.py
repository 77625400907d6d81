"""Storage URLs, masking, unopenable storages, journal safety, trial tables, concurrent workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from explorer import store as st
from explorer.commands import main
from explorer.core.errors import UserError
from explorer.core.util import defer_interrupts
from explorer.store import attrs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url,masked", [
    ("postgresql://alice:s3cr%40t@db.example.org:5432/nas", "postgresql://alice:***@db.example.org:5432/nas"),
    ("postgresql+psycopg://bob:pw@h/db?sslmode=require", "postgresql+psycopg://bob:***@h/db?sslmode=require"),
    ("postgresql://carol@h/db", "postgresql://carol@h/db"),
    ("sqlite:///runs/a.db", "sqlite:///runs/a.db"),
    ("runs/a.journal", "runs/a.journal"),
])
def test_mask_url_hides_passwords_only(url, masked):
    assert st.mask_url(url) == masked
    shown = st.mask_url(f"error: could not connect to {url} (timeout)")
    assert shown == f"error: could not connect to {masked} (timeout)"


def test_url_kinds():
    assert st.storage_kind("runs/x.journal") == "journal" and st.storage_kind("journal:/a/b") == "journal"
    assert st.journal_path("journal:/a/b.journal") == Path("/a/b.journal")
    assert st.storage_kind("sqlite:///x.db") == "sqlite" and st.storage_kind("postgresql://u@h/d") == "postgresql"
    assert st.storage_kind("postgres://u@h/d") == "postgresql" and st.storage_kind("mysql://u@h/d") == "rdb"


def test_missing_storage_is_an_error_and_creates_nothing(tmp_path):
    for url in (str(tmp_path / "none.journal"), f"sqlite:///{tmp_path}/none.db"):
        with pytest.raises(UserError, match="no study storage"):
            st.open_storage(url)
    assert list(tmp_path.iterdir()) == []


def test_unopenable_storage_is_one_masked_line_exit_2(capsys):
    url = "postgresql://explorer:hunter2@127.0.0.1:1/nas"  # nothing listens on port 1
    assert main(["status", "somestudy", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot reach PostgreSQL at 127.0.0.1:1" in err
    assert "connection refused" in err and "hunter2" not in err and "explorer:***@127.0.0.1" in err


def test_unknown_scheme_is_refused(capsys):
    assert main(["status", "s", "--storage", "redis://localhost:6379"]) == 2
    assert "unknown storage URL" in capsys.readouterr().err


def test_a_torn_last_line_is_repaired_on_open(tmp_path):
    path = tmp_path / "s.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(str(path), create=True))
    study.set_user_attr("k", 1)
    with open(path, "ab") as f:
        f.write(b'{"op_code": 2, "worker_id": "x", "study_id": 0, "user_attr": {"k"')  # killed mid-write
    storage = st.open_storage(str(path))
    study = optuna.load_study(study_name="s", storage=storage)
    study.set_user_attr("k", 2)  # would land on the torn line and corrupt the file without repair
    again = optuna.load_study(study_name="s", storage=st.open_storage(str(path)))
    assert again.user_attrs["k"] == 2
    assert all(line.endswith("}") for line in path.read_text().splitlines())


def test_a_line_torn_while_a_live_process_has_the_file_open_is_cut_before_its_next_append(tmp_path):
    # the reader (this process) opened the file before another writer died mid-append
    path = tmp_path / "s.journal"
    storage = st.open_storage(str(path), create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("k", 1)
    with open(path, "ab") as f:
        f.write(b'{"op_code": 2, "worker_id": "x", "study_id": 0, "user_attr": {"k"')  # died mid-write
    study.set_user_attr("k", 2)  # same open storage: no repair-on-open happens
    again = optuna.load_study(study_name="s", storage=st.open_storage(str(path)))
    assert again.user_attrs["k"] == 2
    assert all(line.endswith("}") for line in path.read_text().splitlines())


def test_an_intact_read_only_journal_can_be_read(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "s.journal"
    optuna.create_study(study_name="s", storage=st.open_storage(str(path), create=True))
    before = path.read_bytes()
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):  # root ignores file modes: simulate them
        if str(file) == str(path) and any(c in mode for c in "wa+"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(os, "access", lambda p, m, **kw: not (str(p) == str(path) and m & os.W_OK))
    storage = st.open_storage(str(path))
    assert st.study_names(storage) == ["s"]
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_ctrl_c_waits_until_the_write_is_done():
    events = []
    with pytest.raises(KeyboardInterrupt):
        with defer_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            events.append("after the signal, still writing")
    assert events == ["after the signal, still writing"]


WORKER = """
import pathlib, sys, time
sys.path.insert(0, {tests!r})
from test_study import FakeTrainer, config, run
# A barrier: both processes start trials only once both have imported (so both get some).
ready = pathlib.Path({url!r} + ".ready")
with open(ready, "a") as f:
    f.write("x")
while len(ready.read_text()) < 2:
    time.sleep(0.05)
run(config(n_trials=6, space=dict(config().to_dict()["space"], base_e={{"low": 8, "high": 64}})),
    {url!r}, FakeTrainer(sleep_s=0.05))
"""


def test_two_local_processes_share_one_journal_study(tmp_path):
    url = str(tmp_path / "s.journal")
    script = WORKER.format(tests=str(Path(__file__).parent), url=url)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("locked" in e for e in errors)
    df = st.read_trials(st.open_storage(url), "t")
    assert (df["state"] == "COMPLETE").sum() >= 6 and not (df["state"] == "RUNNING").any()
    assert df["number"].is_unique
    pids = {t.system_attrs[attrs.WORKER_PID] for t in optuna.load_study(
        study_name="t", storage=st.open_storage(url)).trials}
    assert len(pids) == 2  # both processes ran trials


def test_load_trials_and_list_studies(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_study import FakeTrainer, config, run

    url = str(tmp_path / "s.journal")
    run(config(n_trials=2, budgets={"params": 5000}), url, FakeTrainer())
    df = st.read_trials(st.open_storage(url), "t")
    for col in ("number", "state", "knob_base_e", "knob_sr", "knob_pools", "params", "macs", "size_mb",
                "val_acc", "spec_id", "duplicate_of", "infeasible", "curve", "spec"):
        assert col in df.columns
    assert df["knob_pools"].iloc[0] == "1,3"
    stored = [t.user_attrs["params"] for t in optuna.load_study(study_name="t", storage=st.open_storage(url)).trials]
    assert df["params"].tolist() == stored
    assert set(df.loc[df["infeasible"], "state"]) <= {"COMPLETE"}
    (row,) = st.list_studies(st.open_storage(url))
    assert row["name"] == "t" and row["objectives"] == ["val_acc", "params"] and row["n_trials"] == len(df)
    with pytest.raises(UserError, match="no study named 'x'.*found: t"):
        st.read_trials(st.open_storage(url), "x")


def test_the_trials_table_as_files_keeps_counts_whole_and_missing_text_null(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_study import FakeTrainer, config, run

    url = str(tmp_path / "s.journal")
    run(config(n_trials=2, budgets={"params": 5000}), url, FakeTrainer())
    params = [t.user_attrs["params"] for t in optuna.load_study(study_name="t", storage=st.open_storage(url)).trials]
    import csv
    import io
    import json

    assert main(["trials", "t", "--storage", url]) == 0
    reader = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert reader.fieldnames[:2] == ["number", "state"]
    assert "study" not in reader.fieldnames and "trainer" not in reader.fieldnames
    assert [row["params"] for row in reader] == [str(p) for p in params]  # 1234, not 1234.0
    assert main(["trials", "t", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["params"] for r in rows] == params and all(isinstance(r["params"], int) for r in rows)
    assert all(r["fail_reason"] is None for r in rows)  # missing text is null, not ""


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:hunter2@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:hun@ter2@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
    ("postgresql://u@h/db?password=hunter2&connect_timeout=3", "postgresql://u@h/db?password=***&connect_timeout=3"),
    ("postgresql://u@h/db?sslmode=require&PASSWORD=hunter2", "postgresql://u@h/db?sslmode=require&PASSWORD=***"),
    ("runs/x.journal", "runs/x.journal"),
])
def test_mask_url_hides_every_password_form(url, shown):
    from dashboards.loading import mask_url as dashboard_mask

    assert st.mask_url(url) == dashboard_mask(url) == shown


def test_query_string_password_never_printed(capsys):
    url = "postgresql://u@127.0.0.1:1/db?password=hunter2"  # nothing listens on port 1
    assert main(["status", "s", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "password=***" in err


@pytest.mark.parametrize("url, words", [
    ("sqlite:runs/x.db", "without '//'"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
])
def test_storage_urls_that_would_lose_the_study_are_refused(tmp_path, monkeypatch, capsys, url, words):
    monkeypatch.chdir(tmp_path)
    assert main(["status", "s", "--storage", url]) == 2
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no file or folder named "sqlite:" was made

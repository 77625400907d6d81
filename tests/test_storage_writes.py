"""Storage write errors in `explorer run`: found before the data load, or one line mid-run.

A storage a run cannot write (an immutable journal, a folder it cannot create files in)
is named in one line before any data is loaded. A write that fails mid-trial (a full disk,
simulated by failing the journal's append) is one line (a UserError: exit 2), and the
trial is failed and queued again, not left RUNNING.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import explorer.store.journal as journal
from explorer import store as st
from explorer.commands import main
from explorer.core.errors import UserError

sys.path.insert(0, str(Path(__file__).parent))
from test_study import BASE, FakeTrainer, config, run  # noqa: E402


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps(dict(BASE, n_trials=2)))  # JSON is YAML
    return path


def _trials(url: str):
    return optuna.load_study(study_name="t", storage=st.open_storage(url)).get_trials()


def test_an_immutable_journal_is_named_before_the_data_load(tmp_path, capsys):
    url = tmp_path / "t.journal"
    run(config(n_trials=1), str(url), FakeTrainer())
    size = url.stat().st_size
    if os.geteuid() != 0 or not shutil.which("chattr") or subprocess.run(
            ["chattr", "+i", str(url)], capture_output=True).returncode != 0:
        pytest.skip("needs root and a file system with chattr +i")
    try:
        # the data path does not exist: a check after the data load would name it instead
        code = main(["run", str(_study_file(tmp_path)), "--storage", str(url), "--data", "/nonexistent"])
    finally:
        subprocess.run(["chattr", "-i", str(url)], check=True)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "t.journal is not writable (Operation not permitted)" in err and "nonexistent" not in err, err
    assert url.stat().st_size == size


def test_a_folder_run_cannot_write_in_is_named_before_the_data_load(tmp_path, capsys):
    # /proc takes no new files, even from root
    code = main(["run", str(_study_file(tmp_path)), "--storage", "/proc/runs/t.journal", "--data", "/nonexistent"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("explorer: error: cannot write in /proc ") and "nonexistent" not in err, err


def test_a_write_failing_mid_trial_is_one_line_and_the_trial_is_failed(tmp_path, monkeypatch):
    url = str(tmp_path / "t.journal")
    real, failures = journal._write, []

    def disk_full_once(f, text):
        if trainer.calls and not failures:  # the first write after training: the trial's result
            failures.append(text)
            f.write(text[: len(text) // 2])  # half of it reaches the disk, then ENOSPC
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, text)

    trainer = FakeTrainer()
    monkeypatch.setattr(journal, "_write", disk_full_once)
    with pytest.raises(UserError) as info:
        run(config(n_trials=2), url, trainer)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write to the storage {url}: No space left")
    monkeypatch.setattr(journal, "_write", real)
    assert Path(url).read_bytes().endswith(b"\n")  # the half line was taken back
    done = _trials(url)
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.WAITING]
    assert done[0].user_attrs["fail_reason"].startswith("storage write failed: cannot write")
    assert done[1].user_attrs == {"retry_of": 0, "retry_reason": "storage write failed"}
    run(config(n_trials=2), url, FakeTrainer())  # a rerun resumes: the retry and one more
    assert [t.state for t in _trials(url)].count(TrialState.COMPLETE) == 2


def test_a_write_that_keeps_failing_says_the_trial_stays_running(tmp_path, monkeypatch):
    url = str(tmp_path / "t.journal")
    trainer = FakeTrainer()
    real = journal._write

    def disk_full(f, text):
        if trainer.calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, text)

    monkeypatch.setattr(journal, "_write", disk_full)
    with pytest.raises(UserError, match=r"No space left on device; .*trial #0 stays RUNNING until the next run"):
        run(config(n_trials=2), url, trainer)

"""`explorer trials -o PATH`: an unwritable output path is one line, exit 2, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from explorer.commands import main


@pytest.fixture
def journal(tmp_path) -> Path:
    """A journal file holding study 'tiny' with one completed trial (built with Optuna, nothing trains)."""
    path = tmp_path / "tiny.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="tiny", directions=["maximize", "minimize"])
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 1000.0],
                                 user_attrs={"val_acc": 0.5, "params": 1000}))
    return path


def _trials(journal: Path, out: str, capsys) -> tuple[int, str]:
    code = main(["trials", "tiny", "--storage", str(journal), "-o", out])
    return code, capsys.readouterr().err.strip()


def test_output_written_when_path_is_good(journal, tmp_path, capsys):
    out = tmp_path / "t.csv"
    code, err = _trials(journal, str(out), capsys)
    assert code == 0 and err == ""
    lines = out.read_text().splitlines()
    assert lines[0].startswith("number,state,") and len(lines) == 2


@pytest.mark.parametrize("where,reason", [
    ("missing_dir", os.strerror(errno.ENOENT)),   # No such file or directory
    ("a_dir", os.strerror(errno.EISDIR)),         # Is a directory
])
def test_unwritable_output_is_one_line_exit_2(journal, tmp_path, capsys, where, reason):
    out = str(tmp_path / "nonexistent" / "x.csv") if where == "missing_dir" else str(tmp_path)
    code, err = _trials(journal, out, capsys)
    assert code == 2
    assert err == (f"explorer: error: cannot write {out}: {reason}; give --output a file path "
                   "in an existing, writable folder")
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write a read-only folder")
def test_read_only_folder_is_one_line_exit_2(journal, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, err = _trials(journal, str(folder / "x.csv"), capsys)
    finally:
        folder.chmod(0o700)
    assert code == 2
    assert err == (f"explorer: error: cannot write {folder / 'x.csv'}: {os.strerror(errno.EACCES)}; "
                   "give --output a file path in an existing, writable folder")

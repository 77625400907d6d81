"""One garbage line in the middle of a journal: named, skipped by readers, salvageable.

Read-only commands (status, trials, export, the dashboard) show the trials the readable
lines hold and name the skipped line; `run` refuses the file with one line naming it
(no "check the URL, the server and the credentials"); `explorer salvage` writes a copy
without the line that a run continues on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from explorer.commands import main

sys.path.insert(0, str(Path(__file__).parent))
from test_study import BASE, FakeTrainer, config, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def damaged(tmp_path) -> tuple[Path, int]:
    """A 4-trial study's journal with a garbage line inserted mid-file; (path, its line number)."""
    url = tmp_path / "t.journal"
    run(config(n_trials=4), str(url), FakeTrainer())
    lines = url.read_text().splitlines(keepends=True)
    at = len(lines) // 2
    url.write_text("".join(lines[:at] + ["}{ not json\n"] + lines[at:]))
    return url, at + 1


def test_read_only_commands_show_the_readable_trials_and_name_the_line(damaged, tmp_path, capsys):
    url, line = damaged
    assert main(["status", "t", "--storage", str(url)]) == 0
    out, err = capsys.readouterr()
    assert "trials: 4 networks trained" in out
    assert f"t.journal: skipped line {line} (not a journal entry)" in err and "explorer salvage" in err, err
    assert main(["trials", "t", "--storage", str(url), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["number"] for r in json.loads(out)] == [0, 1, 2, 3] and f"line {line}" in err
    assert main(["export", "t", "--storage", str(url), "--pareto", "--out", str(tmp_path / "ex")]) == 0
    assert f"line {line}" in capsys.readouterr().err and list((tmp_path / "ex").glob("t_trial*.yaml"))


def test_the_dashboard_shows_the_readable_trials_and_names_the_line(damaged):
    sys.path.insert(0, str(REPO))
    from dashboards import loading as ld

    url, line = damaged
    storage = ld.open_storage(str(url))
    assert len(ld.load_trials(storage, "t")) == 4
    assert [f"line {line} (not a journal entry)" in n for n in ld.skipped_lines(storage)] == [True]


def test_run_names_the_line_and_salvage_gives_a_copy_to_run_on(damaged, tmp_path, capsys):
    url, line = damaged
    study = tmp_path / "t.yaml"
    study.write_text(json.dumps(dict(BASE, n_trials=5)))
    assert main(["run", str(study), "--storage", str(url), "--data", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"t.journal line {line} is not a journal entry ('}}{{ not json')" in err, err
    assert "credentials" not in err and "explorer salvage" in err
    copy = tmp_path / "c.journal"
    assert main(["salvage", str(url), str(copy)]) == 0
    assert f"left out line(s) {line} of" in capsys.readouterr().out
    assert len(copy.read_text().splitlines()) == len(url.read_text().splitlines()) - 1
    run(config(n_trials=5), str(copy), FakeTrainer())  # the copy is a journal a run continues
    assert main(["status", "t", "--storage", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "trials: 5 networks trained" in out and err == ""
    assert main(["salvage", str(url), str(copy)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err

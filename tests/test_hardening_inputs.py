"""Hostile or unlucky inputs (issue 13): each answers with one line, quickly, and leaks no password.

Expected behaviours come from the issue's fault campaign: an alias bomb, huge files, FIFOs,
/dev/zero, deep nesting, passwords with unencoded characters, lenient values.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from explorer.cli import main

NO_DATA = "/nonexistent/cifar10-jpeg.tar.gz"  # a command that got as far as the data fails there
STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"


def _fails(capsys, args: list[str], *words: str) -> str:
    """Run the CLI; it must exit 2 with one line holding every word."""
    capsys.readouterr()
    assert main(args) == 2
    out = capsys.readouterr()
    assert out.err.startswith("explorer: error: ") and out.err.count("\n") == 1, out.err
    for w in words:
        assert w in out.err, out.err
    return out.err


def _bomb() -> str:
    """A ~1 KB 'billion laughs': nine levels of nine aliases, 9**9 strings once expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["describe", "train", "run"])
def test_alias_bomb_is_one_line_within_a_second(tmp_path, capsys, command):
    """Before: the wrongly typed value was repr()-ed into the message (324 s, 3.1 GB, MemoryError)."""
    path = tmp_path / "bomb.yaml"
    bomb = _bomb()
    assert len(bomb) < 1200
    if command == "run":  # a study file whose space value is the bomb
        path.write_text(STUDY.read_text().replace("  freq: 2\n", "  freq: *a8\n") + bomb)
        args = ["run", str(path), "--data", NO_DATA]
    elif command == "train":
        path.write_text("spec: *a8\n" + bomb)
        args = ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "o"), "--data", NO_DATA]
    else:
        path.write_text("stem: *a8\n" + bomb)
        args = ["describe", str(path)]
    import explorer.retrain  # noqa: F401 - torch's import time is not the bomb's
    import explorer.study  # noqa: F401

    start = time.perf_counter()
    _fails(capsys, args, str(path), "alias", "line ")
    assert time.perf_counter() - start < 1.0


def test_deep_nesting_is_one_line(tmp_path, capsys):
    """Before: 50,000 '[' was a 3,000-line RecursionError (libyaml's composer: a crash)."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nspace: " + "[" * 50_000 + "\n")
    _fails(capsys, ["run", str(path), "--data", NO_DATA], str(path), "nested more than 50 levels")
    spec = tmp_path / "deep.json"
    spec.write_text("[" * 50_000 + "]" * 50_000)
    _fails(capsys, ["describe", str(spec)], str(spec), "nested too deeply")


def test_huge_study_file_is_refused_naming_the_cap(tmp_path, capsys):
    """Before: a 52 MB study file printed nothing for over 400 s."""
    path = tmp_path / "big.yaml"
    path.write_text(STUDY.read_text() + "#" * 1_000_000 + "\n")
    start = time.perf_counter()
    _fails(capsys, ["run", str(path), "--data", NO_DATA], str(path), "1,000,000-byte limit")
    _fails(capsys, ["describe", str(path)], "1,000,000-byte limit")
    assert time.perf_counter() - start < 1.0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_dev_zero_and_directory_are_refused(tmp_path, capsys):
    """Before: a FIFO blocked for ever; a link to /dev/zero read until MemoryError."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    _fails(capsys, ["run", str(fifo), "--data", NO_DATA], str(fifo), "a FIFO, not a regular file")
    _fails(capsys, ["describe", str(fifo)], "a FIFO, not a regular file")
    _fails(capsys, ["train", str(fifo), "--epochs", "1", "--out", str(tmp_path / "o")], "a FIFO")
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    _fails(capsys, ["run", str(zero), "--data", NO_DATA], str(zero), "a device, not a regular file")
    _fails(capsys, ["describe", str(zero)], "a device, not a regular file")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    _fails(capsys, ["run", str(folder), "--data", NO_DATA], "a directory, not a regular file")


def test_line_numbers_survive_the_fast_loader(tmp_path, capsys):
    """libyaml's loader must still name the line of a bad key and of a syntax error."""
    import yaml

    from explorer import yamlio

    assert issubclass(yamlio.LineLoader, yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.read_text().replace("  epochs: 5\n", "  epochz: 5\n"))
    line = STUDY.read_text().splitlines().index("  epochs: 5") + 1
    _fails(capsys, ["run", str(path), "--data", NO_DATA], f"line {line}", "epochz")
    path.write_text("name: x\nspace: [1, 2\n")
    _fails(capsys, ["run", str(path), "--data", NO_DATA], "not valid YAML")

"""Hostile or unlucky inputs (issue 13): each answers with one line, quickly, and leaks no password.

Expected behaviours come from the issue's fault campaign: an alias bomb, huge files, FIFOs,
/dev/zero, deep nesting, passwords with unencoded characters, lenient values.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from explorer.commands import main

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
    """A ~1 KB 'billion laughs' as one flow value: nine levels of nine aliases, 9**9 strings once
    expanded (each anchor is defined before its use, so it is valid YAML)."""
    levels = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


@pytest.mark.parametrize("command", ["describe", "train", "run"])
def test_alias_bomb_is_one_line_within_a_second(tmp_path, capsys, command):
    """Before: the wrongly typed value was repr()-ed into the message (324 s, 3.1 GB, MemoryError)."""
    path = tmp_path / "bomb.yaml"
    bomb = _bomb()
    assert len(bomb) < 1200 and "n_trials: 16\n" in STUDY.read_text()
    if command == "run":  # a wrongly typed value of a study file
        path.write_text(STUDY.read_text().replace("n_trials: 16\n", f"n_trials: {bomb}\n"))
        args = ["run", str(path), "--data", NO_DATA]
    elif command == "train":
        path.write_text(f"spec:\n  base_e: {bomb}\n")
        args = ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "o"), "--data", NO_DATA]
    else:
        path.write_text(f"base_e: {bomb}\n")
        args = ["describe", str(path)]
    import explorer.results.retrain  # noqa: F401 - torch's import time is not the bomb's
    import explorer.study.loop  # noqa: F401

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

    from explorer.core import yamlio

    assert issubclass(yamlio.LineLoader, yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.read_text().replace("  epochs: 5\n", "  epochz: 5\n"))
    line = STUDY.read_text().splitlines().index("  epochs: 5") + 1
    _fails(capsys, ["run", str(path), "--data", NO_DATA], f"line {line}", "epochz")
    path.write_text("name: x\nspace: [1, 2\n")
    _fails(capsys, ["run", str(path), "--data", NO_DATA], "not valid YAML")


# --- item 1: passwords -------------------------------------------------------------------------

PASSWORD_URLS = [  # passwords SQLAlchemy and psycopg accept unencoded; the old masker stopped at / ? # space
    "postgresql://u:secret/pw@127.0.0.1:1/db",
    "postgresql://u:secret?pw@127.0.0.1:1/db",
    "postgresql://u:secret#pw@127.0.0.1:1/db",
    "postgresql://u:secret pw@127.0.0.1:1/db",
    "postgresql+psycopg://u:secret/pw@h:5432/db?sslmode=require",
]


@pytest.mark.parametrize("url", PASSWORD_URLS)
def test_mask_url_hides_the_password_sqlalchemy_sees(url):
    from sqlalchemy.engine import make_url

    from explorer.store import mask_url, password_note, runnable_url

    u = make_url(url)
    assert u.password == url.split("u:", 1)[1].split("@", 1)[0]  # SQLAlchemy reads the whole password
    shown = mask_url(url)
    assert "secret" not in shown and "pw@" not in shown
    assert shown == u.render_as_string(hide_password=True)  # SQLAlchemy's own masked form
    in_text = mask_url(f"cannot connect to {url}: refused", url)
    assert "secret" not in in_text and in_text.endswith(": refused"), in_text
    hint = runnable_url(url)  # pasteable: no password and no *** in it
    assert make_url(hint).password is None and "***" not in hint and "secret" not in hint
    assert make_url(hint).host == u.host and make_url(hint).database == u.database
    assert "PGPASSWORD" in password_note(url) and password_note(hint) == ""


def test_query_string_password_of_any_url_is_hidden():
    from explorer.store import mask_url, runnable_url

    assert mask_url("sqlite:///nonexist/dir/x.db?password=secretpw") == "sqlite:///nonexist/dir/x.db?password=***"
    assert runnable_url("sqlite:///nonexist/dir/x.db?password=secretpw") == "sqlite:///nonexist/dir/x.db"
    assert mask_url("postgresql://u@h/db?sslpassword=secretpw&application_name=a") == \
        "postgresql://u@h/db?sslpassword=***&application_name=a"
    assert mask_url("runs/x.journal") == "runs/x.journal"
    message = "cannot open postgresql://h:5432/db: refused for user@x"  # no password: nothing hidden
    assert mask_url(message) == message


@pytest.mark.parametrize("url", PASSWORD_URLS[:4] + ["sqlite:///nonexist/dir/x.db?password=secretpw",
                                                     "postgresql://u:secret pw@127.0.0.1:54x2/db"])  # bad port
def test_status_with_an_unencoded_password_prints_none_of_it(capsys, url):
    """The issue's reproduction: one line (server unreachable), no part of the password."""
    err = _fails(capsys, ["status", "quickstart", "--storage", url])
    assert "secret" not in err and "pw@" not in err, err


def test_export_and_model_card_keep_no_password(tmp_path):
    """provenance.storage in an export, and what `train` keeps of a file's provenance."""
    from explorer import store
    from explorer.core import yamlio
    from explorer.results import calibration, retrain
    from explorer.results.exportfile import export_doc, read_export
    from explorer.results.selection import Chosen

    from test_export import HAND, make_study

    url = "postgresql://u:secret/pw@h/db"
    storage = store.open_storage(str(make_study(tmp_path / "hand.journal", "hand", HAND)))
    rec = store.read_study(storage, "hand", url=url)
    done = next(t for t in rec.trials if t.state == "COMPLETE")
    doc = export_doc(rec, Chosen(trial=done, acc=0.5, std=float("nan"), std_source="none", size=1.0), {})
    assert doc["provenance"]["storage"] == "postgresql://u:***@h/db"
    path = tmp_path / "hand.yaml"  # a hand-written export that does carry a password
    doc["provenance"]["storage"] = url
    path.write_text(yamlio.dump(doc, "yaml"))
    exp = read_export(path)
    assert retrain.stored_provenance(exp)["storage"] == "postgresql://u:***@h/db"
    lines = "\n".join(retrain._provenance_lines(exp, {"git_rev": "x", "versions": {}}))
    assert "secret" not in lines and "u:***@h/db" in lines
    doc["provenance"]["storage"] = "postgresql://u:***@h/db"  # as exported: calibrate's hint is pasteable
    path.write_text(yamlio.dump(doc, "yaml"))
    target, why = calibration.study_target(read_export(path), None)
    assert target is None and "--storage postgresql://u@h/db (with the password in PGPASSWORD" in why


# --- item 14: lenient values ----------------------------------------------------------------------

def _study_with(tmp_path: Path, **sections: str) -> Path:
    """quickstart.yaml with top-level sections replaced by the given YAML text."""
    lines, skip = [], False
    for line in STUDY.read_text().splitlines():
        key = line.split(":", 1)[0]
        if not line.startswith((" ", "#")) and key in sections:
            lines.append(f"{key}: {sections[key]}")
            skip = True
            continue
        if skip and line.startswith(" "):
            continue
        skip = False
        lines.append(line)
    path = tmp_path / "study.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("section, value, words", [
    ("budgets", "0", ["budgets: must be a mapping", "got int 0"]),
    ("budgets", "[]", ["budgets: must be a mapping", "got list []"]),
    ("budgets", "''", ["budgets: must be a mapping", "got str"]),
    ("sampler", "0", ["sampler: must be a sampler name", "got int 0"]),
    ("sampler", "[]", ["sampler: must be a sampler name", "got list"]),
])
def test_falsy_budgets_and_sampler_are_refused(tmp_path, capsys, section, value, words):
    """Before: budgets: 0 / [] were taken as no budgets, sampler: 0 as the default sampler."""
    path = _study_with(tmp_path, **{section: value})
    _fails(capsys, ["run", str(path), "--data", NO_DATA], str(path), *words)


def test_left_out_or_null_sections_still_mean_none(tmp_path):
    from explorer.study.config import load_config

    config = load_config(_study_with(tmp_path, budgets="null", sampler="null"))
    assert config.budgets == () and config.sampler.name == "tpe"


def test_a_wrong_value_is_shown_bounded(tmp_path, capsys):
    big = "[" + ", ".join(str(i) for i in range(10_000)) + "]"
    err = _fails(capsys, ["run", str(_study_with(tmp_path, sampler=f"{{name: {big}}}")), "--data", NO_DATA],
                 "sampler.name", "[0, 1, 2, 3, ...]")
    assert len(err) < 300


# --- item 12, last bullet: a step that does not divide the range ----------------------------------

def _with_space(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "study.yaml"
    text = STUDY.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("knob, words", [
    # 16..60 step 16: Optuna would warn and shrink the range to 16..48; the nearest valid highs by hand
    ("base_e: {low: 16, high: 60, step: 16}", ["space.base_e.high", "step=16", "use high: 48 or 64"]),
    # 0.125 + 3 * 0.25 = 0.875; 1.125 is above sr's ceiling of 1, so only one suggestion
    ("base_e: {low: 16, high: 64, step: 16}\n  sr: {low: 0.125, high: 0.9, step: 0.25}",
     ["space.sr.high", "use high: 0.875", "0.775"]),
])
def test_step_not_dividing_the_range_is_refused(tmp_path, capsys, knob, words):
    path = _with_space(tmp_path, "base_e: {low: 16, high: 64, step: 16}", knob)
    path.write_text(path.read_text().replace("  sr: {choices: [0.125, 0.25, 0.5]}\n", "", 1 if "sr:" in knob else 0))
    _fails(capsys, ["run", str(path), "--data", NO_DATA], str(path), *words)


def test_steps_that_divide_exactly_are_kept(tmp_path):
    """0.1-steps are exact in decimal (0.7 - 0.1 = 0.6 = 3 x 0.2), whatever binary floats say."""
    from explorer.study.config import load_config

    path = _with_space(tmp_path, "  sr: {choices: [0.125, 0.25, 0.5]}", "  sr: {low: 0.1, high: 0.7, step: 0.2}")
    assert (0.7 - 0.1) % 0.2 != 0  # the binary-float answer the check must not use
    sr = load_config(path).knob("sr")
    assert (sr.low, sr.high, sr.step) == (0.1, 0.7, 0.2)


# --- item 11, validation half: choices no combination can make valid -----------------------------

@pytest.mark.parametrize("old, new, words", [
    # quickstart allows n_fire 4 or 6: a pool after Fire module 7 exists in neither network
    ("pools: {choices: [[1, 3], [2, 4]]}", "pools: {choices: [[1, 3], [2, 4], [5, 7]]}",
     ["space.pools", "[5, 7]", "n_fire=6"]),
    # base_e is at most 64 here: 64 x 0.005 = 0.32 squeeze channels rounds to 0 for every base_e
    ("sr: {choices: [0.125, 0.25, 0.5]}", "sr: {choices: [0.005, 0.125, 0.25]}", ["space.sr", "0.005"]),
])
def test_a_choice_no_combination_makes_valid_is_refused_before_the_data(tmp_path, capsys, old, new, words):
    """Before: accepted; every trial drawing it failed (with a traceback) after the data load."""
    path = _with_space(tmp_path, old, new)
    _fails(capsys, ["run", str(path), "--data", NO_DATA], "never gives a valid network", *words)


def test_choices_valid_with_some_combination_are_kept(tmp_path):
    """[5, 7] is fine once n_fire may be 8: the check must not refuse what some network allows."""
    from explorer.study.config import load_config
    from explorer.study.space import Space

    path = _with_space(tmp_path, "pools: {choices: [[1, 3], [2, 4]]}", "pools: {choices: [[1, 3], [5, 7]]}")
    path.write_text(path.read_text().replace("n_fire: {choices: [4, 6]}", "n_fire: {choices: [4, 8]}"))
    assert Space.from_config(load_config(path)).dead_choices() == []
    for study in sorted(STUDY.parent.glob("*.yaml")):  # the shipped studies have none
        assert Space.from_config(load_config(study)).dead_choices() == [], study


# --- item 13, train half: leftovers of a train killed in its final writes ----------------------------

_DIE_IN_CHECKPOINT = """
import os, sys
from pathlib import Path
import torch
from explorer.results import retrain
from explorer.design.spec import SqueezeSpec

def dying_save(obj, f):  # kill -9 in the middle of writing model.pt
    f.write(b"half a checkpoint")
    f.flush()
    os._exit(9)

torch.save = dying_save
retrain.write_outputs(Path(sys.argv[1]), SqueezeSpec(), torch.nn.Linear(2, 2), {"test_acc": 0.5}, {}, "# card")
"""


def test_train_killed_while_writing_leaves_no_model_without_its_card(tmp_path):
    """Before: model.pt was written first; a kill then left it without model_card.md and train.json,
    and the hidden .tmp files stayed for ever."""
    import subprocess
    import sys

    from explorer.results.exportfile import prepare_out

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"the previous run's model")  # no longer matches a new card
    p = subprocess.run([sys.executable, "-c", _DIE_IN_CHECKPOINT, str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(STUDY.parents[1])}, timeout=120)
    assert p.returncode == 9, p.stderr
    assert not (out / "model.pt").exists()
    assert (out / "model_card.md").read_text() == "# card" and (out / "train.json").is_file()
    left = list(out.glob(".model.pt.*.tmp"))
    assert len(left) == 1 and left[0].read_bytes() == b"half a checkpoint"
    young_old_style = out / ".train.json.abc123xy.tmp"  # another writer's, maybe still at work
    young_old_style.write_text("{")
    ancient = out / ".model_card.md.zz9876ab.tmp"
    ancient.write_text("#")
    os.utime(ancient, (time.time() - 7200, time.time() - 7200))
    alive = out / f".train.json.{os.getpid()}-q1w2e3r4.tmp"  # this process is alive: not stale
    alive.write_text("{")
    other = out / ".notes.tmp"  # not atomic_write's
    other.write_text("x")
    prepare_out(out)  # the next run
    assert not left[0].exists() and not ancient.exists()
    assert young_old_style.exists() and alive.exists() and other.exists()


PG_URL = os.environ.get("EXPLORER_TEST_PG_URL")


@pytest.mark.skipif(not PG_URL, reason="EXPLORER_TEST_PG_URL is not set: no PostgreSQL server")
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_run_on_postgres_stores_and_prints_no_password(tmp_path, capsys, cifar_archive, form):
    """The stored config, run's output and hints, and an export file hold the masked URL only."""
    import json
    import uuid

    import optuna
    from sqlalchemy.engine import make_url
    from test_workers import study_dict

    from explorer import store

    u = make_url(PG_URL)
    secret = u.password
    assert secret, "the test server's URL carries a password"
    url = (PG_URL if form == "userinfo" else  # libpq's ?password= form connects too
           u._replace(password=None).update_query_dict({"password": secret}).render_as_string(hide_password=False))
    name = f"test-pw-{uuid.uuid4().hex[:10]}"
    study_file = tmp_path / "s.yaml"
    study_file.write_text(json.dumps(study_dict(name, 1)))
    try:
        assert main(["run", str(study_file), "--storage", url, "--no-progress"]) == 0
        out = capsys.readouterr()
        assert secret not in out.out + out.err
        assert "PGPASSWORD" in out.out and f"--storage {u.username}@" not in out.out
        rec = store.read_study(store.open_storage(url), name, url=url)
        assert secret not in json.dumps(rec.config) and "***" in rec.config["storage"]
        assert main(["export", name, "--storage", url, "--out", str(tmp_path / "x"), "--pareto"]) == 0
        exported = "".join(p.read_text() for p in (tmp_path / "x").iterdir())
        assert secret not in exported + capsys.readouterr().out and "***" in exported
    finally:
        optuna.delete_study(study_name=name, storage=store.open_storage(store.pg.driver_url(url)))

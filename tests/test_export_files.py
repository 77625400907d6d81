"""Export files read back: hand edits and duplicate keys, command-line overrides, out folders,
plain types, checkpoints, and which study receives a calibration (nothing here trains).

The studies and helpers are test_export.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from explorer.design.spec import SqueezeSpec

from test_export import CIFAR8, DATA, HAND, TRAINER, C, _export_file, _fails, attrs, export, make_study, numbers


@pytest.fixture
def hand(tmp_path) -> Path:
    return make_study(tmp_path / "hand.journal", "hand", HAND)

NO_DATA = "/nonexistent/cifar10-jpeg.tar.gz"  # any command that got as far as the data fails there

def test_plain_turns_dates_and_odd_types_into_text():
    import datetime as dt

    import numpy as np
    import torch

    from explorer.core.util import plain as _plain

    utc = dt.timezone.utc
    got = _plain({"at": dt.datetime(2026, 11, 28, 6, 57, 29, tzinfo=utc), "day": dt.date(2026, 11, 28),
                  "path": Path("runs/x.journal"), "np": np.float32(0.5), "npi": np.int64(7),
                  "t": torch.tensor([1, 2]), "nan": float("nan"), "tuple": (1, 2.5), 3: "key"})
    assert got == {"at": "2026-11-28T06:57:29+00:00", "day": "2026-11-28", "path": "runs/x.journal",
                   "np": 0.5, "npi": 7, "t": [1, 2], "nan": None, "tuple": [1, 2.5], "3": "key"}
    assert [type(v) for v in (got["np"], got["npi"])] == [float, int]
    # Everything left is plain: json and torch's weights_only loader accept it.
    json.dumps(got)


def _edit_provenance(text: str, section: str, key: str, value: str) -> str:
    """Replace `key:` inside provenance.<section> (trainer or data) only."""
    head, _, rest = text.partition(f"  {section}:\n")
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("    "):
            break
        if line.startswith(f"    {key}:"):
            lines[i] = f"    {key}: {value}"
            return head + f"  {section}:\n" + "\n".join(lines)
    raise AssertionError(f"no {section}.{key} in the file")


@pytest.mark.parametrize("section, key, value, words", [
    ("trainer", "batch_size", "0", ["provenance.trainer.batch_size=0", "integer >= 1"]),
    ("trainer", "epochs", "2.5", ["provenance.trainer.epochs=2.5", "integer >= 1"]),
    ("trainer", "lr", "-1", ["provenance.trainer.lr=-1", "> 0"]),
    ("trainer", "lr", "true", ["provenance.trainer.lr=True"]),
    ("trainer", "momentum", "1.0", ["provenance.trainer.momentum=1.0", "[0, 1)"]),
    ("trainer", "weight_decay", "-0.1", ["provenance.trainer.weight_decay=-0.1", ">= 0"]),
    ("trainer", "label_smoothing", "1.5", ["provenance.trainer.label_smoothing=1.5", "[0, 1)"]),
    ("trainer", "time_budget_s", "0", ["provenance.trainer.time_budget_s=0", "> 0"]),
    ("trainer", "time_budget_s", ".nan", ["provenance.trainer.time_budget_s=nan"]),
    ("trainer", "seed", "-1", ["provenance.trainer.seed=-1", "[0, 4294967295]"]),
    ("trainer", "seed", str(2**40), [f"provenance.trainer.seed={2**40}"]),
    ("data", "per_class", "0", ["provenance.data.per_class=0", "integer >= 1"]),
    ("data", "val_per_class", "null", ["provenance.data.val_per_class=null", "integer >= 1"]),
    ("data", "resolution", "-8", ["provenance.data.resolution=-8"]),
    ("data", "seed", "x", ["provenance.data.seed='x'", "integer"]),
    ("data", "source", "5", ["provenance.data.source=5"]),
])
def test_hand_edited_settings_are_checked_by_type_and_range(hand, tmp_path, capsys, section, key, value, words):
    path = _export_file(hand, tmp_path)
    path.write_text(_edit_provenance(path.read_text(), section, key, value))
    # --data does not exist: should a check regress, the command fails there instead of training.
    for cmd in (["train", str(path), "--epochs", "1", "--out", str(tmp_path / "t"), "--data", NO_DATA],
                ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA]):
        _fails(capsys, cmd, *words)
    assert not (tmp_path / "t").exists()


def test_hand_edited_identity_fields_are_checked(hand, tmp_path, capsys):
    path = _export_file(hand, tmp_path)
    path.write_text(path.read_text().replace("  trial: 3\n", "  trial: three\n"))
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA], "provenance.trial='three'",
           "trial number")


def test_settings_within_range_still_load(hand, tmp_path):
    from explorer.results.exportfile import read_export
    from explorer.results.retrain import trainer_settings

    path = _export_file(hand, tmp_path)
    text = _edit_provenance(path.read_text(), "trainer", "time_budget_s", "null")
    text = _edit_provenance(text, "trainer", "lr", "5e-2")  # YAML 1.1 reads this as text; we accept it
    path.write_text(_edit_provenance(text, "data", "per_class", "null"))
    exp = read_export(path)
    assert trainer_settings(exp)["time_budget_s"] is None and exp.data["per_class"] is None
    assert trainer_settings(exp)["lr"] == 0.05


def test_duplicate_keys_are_refused(hand, tmp_path, capsys):
    path = _export_file(hand, tmp_path)
    text = path.read_text()
    path.write_text(text + "spec:\n  base_e: 99\n")  # a second top-level spec: which one counts?
    _fails(capsys, ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "t"), "--data", NO_DATA],
           "key 'spec' appears twice", "line")
    path.write_text(text.replace("  trainer:\n", "  trainer:\n    lr: 9\n", 1))  # nested, too
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA], "key 'lr' appears twice")
    export(hand, tmp_path / "j", "--trial", "3", "--format", "json")
    jpath = tmp_path / "j/hand_trial00003.json"
    jpath.write_text(jpath.read_text().replace('{\n  "spec": {', '{\n  "cost": {},\n  "spec": {', 1))
    assert jpath.read_text().count('"cost"') == 2
    _fails(capsys, ["calibrate", str(jpath), "--seeds", "2", "--data", NO_DATA], "key 'cost' appears twice")


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "0"], ["--batch-size=0", "integer >= 1"]),
    (["--lr", "-1"], ["--lr=-1.0", "number > 0"]),
    (["--lr", "nan"], ["--lr=nan"]),
    (["--momentum", "1"], ["--momentum=1.0", "[0, 1)"]),
    (["--weight-decay=-1e-4"], ["--weight-decay=-0.0001", ">= 0"]),
    (["--label-smoothing", "1.5"], ["--label-smoothing=1.5", "[0, 1)"]),
    (["--time-budget", "-5"], ["--time-budget=-5.0", "seconds > 0"]),
    (["--seed", "-1"], ["--seed=-1", "[0, 4294967295]"]),
    (["--seed", str(10**30)], [f"--seed={10**30}"]),
    (["--per-class", "0"], ["--per-class=0", "integer >= 1"]),
    (["--epochs", "0"], ["--epochs=0"]),
    (["--device", "nosuch"], ["--device 'nosuch'", "not a device"]),
])
def test_train_overrides_are_checked_up_front(hand, tmp_path, capsys, args, words):
    path = _export_file(hand, tmp_path)
    base = ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "t"), "--data", NO_DATA]
    err = _fails(capsys, base + args, *words)
    assert "or null" not in err
    assert not (tmp_path / "t").exists()  # refused before anything was created or loaded


@pytest.mark.parametrize("args, words", [
    (["--seed", "-3"], ["--seed=-3"]),
    (["--seed", "4294967295"], ["--seeds=2", "exceed 4294967295"]),  # seeds 2^32-1 and 2^32
    (["--per-class", "0"], ["--per-class=0"]),
    (["--epochs", "0"], ["--epochs=0"]),
    (["--device", "nosuch"], ["--device 'nosuch'"]),
])
def test_calibrate_overrides_are_checked_up_front(hand, tmp_path, capsys, args, words):
    path = _export_file(hand, tmp_path)
    before = path.read_text()
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA] + args, *words)
    assert path.read_text() == before


def test_out_folder_problems_are_one_line_errors_before_any_work(hand, tmp_path, capsys):
    path = _export_file(hand, tmp_path)
    (tmp_path / "file").write_text("")
    # --data does not exist: reaching the data would fail differently; the folder is checked first.
    _fails(capsys, ["train", str(path), "--epochs", "1", "--out", str(tmp_path / "file/sub"),
                    "--data", NO_DATA], "--out", "file/sub", "cannot create")
    _fails(capsys, ["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "file/sub"),
                    "--pareto"], "--out", "file/sub", "cannot create")


def test_export_writes_nothing_for_an_empty_budget(hand, tmp_path, capsys):
    _fails(capsys, ["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "o"), "--budget", ""],
           "budget is empty")
    _fails(capsys, ["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "o"), "--budget", " "],
           "budget is empty")
    assert not (tmp_path / "o").exists()


def test_tied_with_best_does_not_depend_on_the_trial_order(hand, tmp_path):
    # #6 failed (a spec, no val_acc), #1 has 0.60, #3 0.70. With std 0.03 the band is
    # 2 * sqrt(2) * 0.03 = 0.085: #3 is the best and tied with itself only; #1 is 0.10 away.
    from explorer.results.selection import assess, load_study

    rec = load_study("hand", str(hand))
    by = {t.number: t for t in rec.trials}
    for order in ([6, 3, 1], [1, 3, 6], [3, 6, 1]):
        flags = {c.trial.number: c.tied_with_best for c in assess(rec, [by[n] for n in order], noise_std=0.03)}
        assert flags == {6: False, 1: False, 3: True}, order
    for order in (["6", "3", "1"], ["1", "3", "6"]):
        rows = export(hand, tmp_path / "o", "--trial", *order, "--noise-std", "0.03")
        assert numbers(rows) == [6, 1, 3]  # by size: 60, 200, 400 params
        assert [r["tied_with_best"] for r in rows] == ["False", "False", "True"]


def test_load_checkpoint_failures_are_one_line_user_errors(tmp_path):
    import datetime as dt

    import torch

    from explorer.core.errors import UserError
    from explorer.design.model import seeded_model
    from explorer.results.retrain import load_checkpoint, save_checkpoint

    good = tmp_path / "good.pt"
    save_checkpoint(good, CIFAR8, seeded_model(CIFAR8, 0), {"test_acc": 0.1}, {})
    other = SqueezeSpec.from_dict({**CIFAR8.to_dict(), "base_e": 32, "incr_e": 32})
    wrong = torch.load(good, weights_only=True)
    wrong["state_dict"] = seeded_model(other, 0).state_dict()
    cases = {"text.pt": (lambda p: p.write_text("hello, not a checkpoint"), "not a PyTorch checkpoint"),
             "tensor.pt": (lambda p: torch.save(torch.zeros(3), p), "not an explorer checkpoint"),
             "nokeys.pt": (lambda p: torch.save({"spec": CIFAR8.to_dict()}, p), "no state_dict"),
             "shape.pt": (lambda p: torch.save(wrong, p), "weights do not fit the spec"),
             "badspec.pt": (lambda p: torch.save({**wrong, "spec": {**CIFAR8.to_dict(), "sr": 7}}, p), "spec:"),
             "object.pt": (lambda p: torch.save({"spec": {}, "state_dict": {}, "at": dt.datetime.now()}, p),
                           "objects other than tensors"),
             "missing.pt": (lambda p: None, "No such file")}
    for name, (make, words) in cases.items():
        make(tmp_path / name)
        with pytest.raises(UserError) as info:
            load_checkpoint(tmp_path / name)
        assert words in str(info.value) and "\n" not in str(info.value), (name, str(info.value))
    model, ckpt = load_checkpoint(good)
    assert ckpt["metrics"] == {"test_acc": 0.1}


# --- calibrate: which study receives the result ------------------------------------------------

def _journal_attrs(path: Path, name: str) -> dict:
    storage = JournalStorage(JournalFileBackend(str(path)))
    return storage.get_study_user_attrs(storage.get_study_id_from_name(name))


def test_calibrate_refuses_a_study_whose_trial_is_another_network(hand, tmp_path, capsys):
    # A study re-created under the same name: its trial #3 is a wider network.
    path = _export_file(hand, tmp_path)
    before = path.read_text()
    wider = SqueezeSpec.from_dict({**CIFAR8.to_dict(), "base_e": 32, "incr_e": 32})
    rows = [HAND[0], HAND[1], HAND[2], (C, attrs(wider, params=400, macs=30, acc=0.70))]
    other = make_study(tmp_path / "other.journal", "hand", rows)
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--storage", str(other), "--data", NO_DATA],
           "trial #3 of study 'hand'", "another network", "--storage")
    assert not any(k.startswith("calibration/") for k in _journal_attrs(other, "hand"))
    assert path.read_text() == before
    # The same study through the file's own provenance.storage passes this check (and then
    # fails on the missing data, before any training).
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA], "does not exist")


def test_store_calibration_refuses_a_foreign_trial_and_a_changed_recipe(hand, tmp_path):
    from explorer.results.calibration import store_calibration
    from explorer.results.exportfile import read_export

    path = _export_file(hand, tmp_path)
    exp = read_export(path)
    noise = {"k": 2, "mean": 0.5, "std": 0.1, "accs": [0.4, 0.6], "seeds": [0, 1],
             "trainer": dict(TRAINER), "data": {**DATA, "source": "/x/cifar10-jpeg.tar.gz"}}
    wider = SqueezeSpec.from_dict({**CIFAR8.to_dict(), "base_e": 32, "incr_e": 32})
    other = make_study(tmp_path / "other.journal", "hand",
                       [HAND[0], HAND[1], HAND[2], (C, attrs(wider, params=400, macs=30, acc=0.70))])
    note = store_calibration(exp, noise, str(other))
    assert note.startswith("not stored in the study") and "another network" in note
    assert not any(k.startswith("calibration/") for k in _journal_attrs(other, "hand"))
    changed = {**noise, "trainer": {**TRAINER, "epochs": 3}}
    note = store_calibration(exp, changed)
    assert "recipe differs" in note and "epochs 3 instead of 1" in note
    changed = {**noise, "data": {**noise["data"], "per_class": 20}}
    assert "data.per_class 20 instead of 6" in store_calibration(exp, changed)
    assert not any(k.startswith("calibration/") for k in _journal_attrs(hand, "hand"))
    # The study's own recipe (another seed is fine: calibrate varies it) is stored.
    same = {**noise, "trainer": {**TRAINER, "seed": 5}}
    assert store_calibration(exp, same).startswith("stored in")
    assert _journal_attrs(hand, "hand")["calibration/3"]["acc_std"] == 0.1


def test_calibrate_checks_the_folder_is_writable_before_training(hand, tmp_path, capsys, monkeypatch):
    from explorer.core import util

    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    path = _export_file(hand, tmp_path)
    monkeypatch.setattr(util, "probe_writable", refuse)
    # --data does not exist: had it got as far as training it would say so instead.
    _fails(capsys, ["calibrate", str(path), "--seeds", "2", "--data", NO_DATA],
           f"cannot write {path}", "Permission denied", "writable")

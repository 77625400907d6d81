"""The trial selector (issue 12.5): `--trial best | smallest | N` for export, train and calibrate.

A hand-made study (Optuna's create_trial, nothing trains but the two end-to-end tests):
(params, val_acc) #0 (1000, 0.30), #1 (2000, 0.40), #2 (4000, 0.45), #3 (8000, 0.50),
#4 (500, 0.99) cut by the time budget, #5 (3000, 0.35). The front (max acc, min params)
is #0, #1, #2, #3 (#5 is dominated by #1; #4 is never on it), so `best` is #3 (0.50).
With #3 calibrated at std 0.03, every trial's std is 0.03 (the study's RMS) and two
accuracies tie when |a - b| <= 2 * sqrt(0.03^2 + 0.03^2) = 0.0849: #2 (0.45) ties with
#3, #1 (0.40) does not, so `smallest` is #2. With --noise-std 0.05 instead the band is
2 * sqrt(2) * 0.05 = 0.1414: #1 (0.40) ties, #0 (0.30) does not, so `smallest` is #1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from optuna.trial import TrialState

from explorer.commands import main
from explorer.core.errors import UserError
from explorer.results.selection import choose, load_study, parse_selector

from test_export import CIFAR8, attrs, make_study

C, P = TrialState.COMPLETE, TrialState.PRUNED
ROWS = [(C, attrs(CIFAR8, params=1000, macs=1, acc=0.30)),
        (C, attrs(CIFAR8, params=2000, macs=1, acc=0.40)),
        (C, attrs(CIFAR8, params=4000, macs=1, acc=0.45)),
        (C, attrs(CIFAR8, params=8000, macs=1, acc=0.50)),
        (P, attrs(CIFAR8, params=500, macs=1, acc=0.99, end="time_budget", pruned_reason="time budget")),
        (C, attrs(CIFAR8, params=3000, macs=1, acc=0.35))]
CALIBRATED = {"calibration/3": {"acc_mean": 0.50, "acc_std": 0.03, "acc_seeds": [0.47, 0.53], "k": 2}}


@pytest.fixture
def sel(tmp_path) -> Path:
    return make_study(tmp_path / "sel.journal", "sel", ROWS, study_attrs=CALIBRATED)


@pytest.fixture
def uncalibrated(tmp_path) -> Path:
    return make_study(tmp_path / "raw.journal", "raw", ROWS)


def test_best_smallest_and_a_number_name_the_hand_worked_trials(sel, uncalibrated):
    rec = load_study("sel", str(sel))
    assert choose(rec, "best").number == 3  # not #4: a cut trial is never on the front
    assert choose(rec, "smallest").number == 2
    assert choose(rec, 5).number == 5  # a number is taken as given, on the front or not
    raw = load_study("raw", str(uncalibrated))
    assert choose(raw, "smallest", noise_std=0.05).number == 1
    with pytest.raises(UserError, match="no seed-noise estimate.*explorer calibrate STUDY --trial best"):
        choose(raw, "smallest")
    with pytest.raises(UserError, match="has no trial #9"):
        choose(raw, 9)


@pytest.mark.parametrize("text, want", [("best", "best"), (" Smallest", "smallest"), ("12", 12), ("0", 0)])
def test_parse_selector_reads_names_and_numbers(text, want):
    assert parse_selector(text) == want


@pytest.mark.parametrize("text", ["worst", "-1", "1.5", "", "#3"])
def test_a_bad_selector_is_one_line_naming_the_choices(text):
    with pytest.raises(UserError, match="give best, smallest or a trial number"):
        parse_selector(text)


def test_export_takes_selectors(sel, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["export", "sel", "--storage", str(sel), "--out", str(out), "--trial", "smallest", "best"]) == 0
    assert sorted(p.name for p in out.glob("*.yaml")) == ["sel_trial00002.yaml", "sel_trial00003.yaml"]
    capsys.readouterr()
    assert main(["export", "sel", "--storage", str(sel), "--out", str(out), "--trial", "worst"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trial 'worst': give best, smallest or a trial number" in err


def test_train_and_calibrate_a_bad_selector_fail_in_one_line_before_any_work(sel, tmp_path, capsys):
    for cmd in (["train", "sel", "--storage", str(sel), "--trial", "biggest", "--epochs", "1",
                 "--out", str(tmp_path / "m")],
                ["calibrate", "sel", "--storage", str(sel), "--trial", "biggest", "--seeds", "2"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "give best, smallest or a trial number" in err
    assert not (tmp_path / "m").exists()
    assert main(["train", "sel", "--storage", str(tmp_path / "none.journal"), "--trial", "best", "--epochs", "1",
                 "--out", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.startswith("explorer: error: ")


def test_train_and_calibrate_a_study_trial_by_selector(uncalibrated, cifar_archive, tmp_path, capsys):
    storage = str(uncalibrated)
    assert main(["calibrate", "raw", "--storage", storage, "--trial", "best", "--seeds", "2",
                 "--data", str(cifar_archive), "--device", "cpu"]) == 0
    assert "raw #3: val_acc" in capsys.readouterr().out
    rec = load_study("raw", storage)
    stored = rec.calibrations[3]
    assert stored["noise"]["seeds"] == [0, 1] and len(stored["acc_seeds"]) == 2  # the study holds it
    out = tmp_path / "m"
    assert main(["train", "raw", "--storage", storage, "--trial", "3", "--epochs", "1", "--per-class", "10",
                 "--data", str(cifar_archive), "--device", "cpu", "--out", str(out)]) == 0
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["provenance"]["study"] == "raw" and ckpt["provenance"]["trial"] == 3
    assert ckpt["provenance"]["selection"]["trial"] == "3"
    written = yaml.safe_load((out / "raw_trial00003.yaml").read_text())  # the export, beside the model
    assert written["spec"] == CIFAR8.to_dict() and written["provenance"]["trial"] == 3
    assert "raw_trial00003.yaml" in (out / "model_card.md").read_text()

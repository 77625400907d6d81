"""Study files: every shipped one validates; bad ones fail before anything runs, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.cli import main
from explorer.config import StudyConfig, load_config
from explorer.errors import UserError
from explorer.study import check_space

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
SHIPPED = {"quickstart", "sweep_sr", "sweep_pct3x3", "sweep_pools", "sweep_bypass", "full_nsga2"}

GOOD = """\
name: tiny
data: {per_class: 10, val_per_class: 5, resolution: 16}
trainer: {epochs: 1, batch_size: 32, weight_decay: 5e-4}
space:
  stem: cifar
  base_e: {low: 16, high: 32, step: 16}
  sr: {choices: [0.25, 0.5]}
  pools: {choices: [[1, 3], [2]]}
  bypass: {choices: [none, simple, complex]}
objectives: [val_acc, params]
sampler: random
n_trials: 2
"""


def test_every_shipped_study_loads_and_has_a_feasible_space():
    assert {p.stem for p in STUDIES} >= SHIPPED
    for path in STUDIES:
        config = load_config(path)
        assert config.name == path.stem
        shares = check_space(config, samples=300)
        assert shares["invalid"] + shares["over_budget"] < 1.0


def test_round_trip_through_the_stored_dict(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.trainer.weight_decay == 5e-4  # YAML 1.1 would read 5e-4 as text
    assert dict((k.name, k.kind) for k in config.space) == {
        "base_e": "range", "stem": "fixed", "bypass": "choices", "pools": "choices", "sr": "choices"}
    assert StudyConfig.from_dict(config.to_dict()) == config
    assert config.directions == ["maximize", "minimize"]


# (replacement of one line of GOOD, words the one-line error must contain, its line number)
BAD = [
    ("n_trials: 2", "n_trials: 2\nsampler_seed: 3", ["sampler_seed", "unknown key"], 13),
    ("  sr: {choices: [0.25, 0.5]}", "  sr: {low: 0.5, high: 0.25}", ["space.sr.high", "below low"], 7),
    ("  sr: {choices: [0.25, 0.5]}", "  sr: {low: 0.0, high: 0.5}", ["space.sr.low", "out of range"], 7),
    ("  base_e: {low: 16, high: 32, step: 16}", "  base_e: {low: 16.5, high: 32}", ["space.base_e.low", "integer"], 6),
    ("  base_e: {low: 16, high: 32, step: 16}", "  base_e: {low: 16, high: 32, step: 64}", ["space.base_e.step"], 6),
    ("  base_e: {low: 16, high: 32, step: 16}", "  widht: 3", ["space.widht", "unknown key"], 6),
    ("sampler: random", "sampler: cmaes", ["sampler", "cmaes", "tpe"], 11),
    ("objectives: [val_acc, params]", "objectives: [val_acc, flops]", ["objectives", "flops", "macs"], 10),
    ("trainer: {epochs: 1, batch_size: 32, weight_decay: 5e-4}", "trainer: {epochs: two}", ["trainer.epochs", "integer"], 3),
    ("  bypass: {choices: [none, simple, complex]}", "  bypass: {choices: [none, fancy]}", ["space.bypass.choices", "fancy"], 9),
    ("  pools: {choices: [[1, 3], [2]]}", "  pools: {low: 1, high: 3}", ["space.pools", "not a range"], 8),
    ("n_trials: 2", "n_trials: 0", ["n_trials", ">= 1"], 12),
]


@pytest.mark.parametrize("old,new,words,line", BAD, ids=[b[2][0] for b in BAD])
def test_bad_study_file_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, old, new, words, line):
    assert old in GOOD
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new))
    storage = tmp_path / "runs" / "bad.journal"
    code = main(["run", str(path), "--storage", str(storage), "--data", "synthetic", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("explorer: error: ")
    for w in words:
        assert w in err, (w, err)
    assert f"line {line}:" in err, err
    assert not storage.exists() and not storage.parent.exists()


def test_budget_that_no_point_meets_is_refused_before_running(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "budgets: {params: 100}\n")  # the smallest net here has ~2k params
    storage = tmp_path / "s.journal"
    code = main(["run", str(path), "--storage", str(storage), "--data", "synthetic"])
    err = capsys.readouterr().err
    assert code == 2 and "params <= 100" in err and "raise the budgets" in err
    assert not storage.exists()


def test_space_with_no_valid_network_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("  pools: {choices: [[1, 3], [2]]}", "  pools: [5, 9]\n  n_fire: 4"))
    with pytest.raises(UserError, match="no point of the search space is a valid network"):
        check_space(load_config(path))


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("objectives: [val_acc, params]", "objectives: [val_acc, params"))
    with pytest.raises(UserError, match=r"line 1[01]"):
        load_config(path)


def test_grid_needs_finite_knobs(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("sampler: random", "sampler: grid").replace(
        "  sr: {choices: [0.25, 0.5]}", "  sr: {low: 0.25, high: 0.5}"))
    with pytest.raises(UserError, match="space.sr: a grid needs a finite knob"):
        load_config(path)

"""Study files: every shipped one validates; bad ones fail before anything runs, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from explorer.commands import main
from explorer.core.errors import UserError
from explorer.study.config import StudyConfig, load_config
from explorer.study.loop import check_space

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
SHIPPED = {"quickstart", "sweep_sr", "sweep_pct3x3", "sweep_pools", "sweep_bypass", "full_nsga2",
           "paper_sr_cpu", "paper_pct3x3_cpu", "paper_bypass_cpu"}

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


# The paper's sweeps (Iandola et al. 2016, sections 5.1, 5.2, 6): the swept knob's values, as
# the paper lists them (the CPU pct_3x3 sweep: every other one). CPU version -> (GPU version, knob, values).
PAPER_SWEEPS = {
    "paper_sr_cpu": ("sweep_sr", "sr", [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]),
    "paper_pct3x3_cpu": ("sweep_pct3x3", "pct_3x3", [0.01, 0.25, 0.5, 0.75, 0.99]),  # 5 of the paper's 9
    "paper_bypass_cpu": ("sweep_bypass", "bypass", ["none", "simple", "complex"]),
}


@pytest.mark.parametrize("cpu", sorted(PAPER_SWEEPS))
def test_paper_sweeps_cpu_versions_grid_one_knob_on_one_network_and_gpu_versions_say_so(cpu):
    from explorer.study.space import Space

    root = Path(__file__).resolve().parents[1] / "studies"
    gpu, knob, values = PAPER_SWEEPS[cpu]
    config, gpu_config = load_config(root / f"{cpu}.yaml"), load_config(root / f"{gpu}.yaml")
    assert "CPU version" in config.description and "GPU version" in gpu_config.description
    assert config.sampler.name == "grid"
    points = Space.from_config(config).grid_points()
    assert [p[knob] for p in points] == values and all(list(p) == [knob] for p in points)
    # every point trains: the grid has no invalid point (all len(values) trials run)
    assert check_space(config, samples=50)["invalid"] == 0
    # the three CPU sweeps share one network and recipe but for the swept knob (SqueezeNet's
    # proportions: incr_e = base_e, freq 2; SR 0.125 / pct_3x3 0.5 where not swept), small
    # enough for a 2-core CPU
    fixed = {k.name: k.fixed for k in config.space if k.kind == "fixed"}
    assert fixed["base_e"] == fixed["incr_e"] and fixed["freq"] == 2 and fixed["n_fire"] == 8
    assert fixed["head_bn"] is True and fixed["head_relu"] is False
    assert fixed.get("pct_3x3", 0.5) == 0.5 and fixed.get("sr", 0.125 if knob == "bypass" else 0.5) in (0.125, 0.5)
    assert config.data.resolution <= 24 and config.data.per_class <= 500 and config.trainer.epochs <= 5
    other = load_config(root / "paper_sr_cpu.yaml")
    assert (config.data, config.trainer) == (other.data, other.trainer)


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
    ("trainer: {epochs: 1, batch_size: 32, weight_decay: 5e-4}", "trainer: {epochs: two}",
     ["trainer.epochs", "integer"], 3),
    ("  bypass: {choices: [none, simple, complex]}", "  bypass: {choices: [none, fancy]}",
     ["space.bypass.choices", "fancy"], 9),
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


# --- input-validation defects: null range bounds, non-UTF-8 files, width ceilings, budgets ---

def _write(tmp_path, text: str | bytes) -> Path:
    path = tmp_path / "s.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _refused(path: Path, capsys) -> str:
    """Run the study through the CLI: exit 2, one line on stderr; that line without the prefix."""
    code = main(["run", str(path), "--storage", str(path.parent / "r" / "s.journal"),
                 "--data", "synthetic", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("explorer: error: ")
    assert not (path.parent / "r").exists()
    return err[len("explorer: error: "):]


STEM_W = "  stem: cifar"  # line 5 of GOOD; a knob added after it is on line 6


@pytest.mark.parametrize("knob,bound,text", [
    ("stem_width", "low", "  stem_width: {low: null, high: 16}"),
    ("stem_width", "high", "  stem_width: {low: 16, high: null}"),
    ("stem_width", "high", "  stem_width: {low: 16, high: ~}"),
])
def test_null_stem_width_bound_is_refused_naming_the_key(tmp_path, capsys, knob, bound, text):
    path = _write(tmp_path, GOOD.replace(STEM_W, f"{STEM_W}\n{text}"))
    expected = (f"{path}: line 6: space.{knob}.{bound}: must be an integer, got null; a range needs "
                "numeric low and high; for the stem's default width use {choices: [null, ...]}")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == expected
    assert _refused(path, capsys) == expected


@pytest.mark.parametrize("text,expected", [
    ("  dropout: {low: null, high: 0.5}",
     "space.dropout.low: must be a number, got null; a range needs numeric low and high"),
    ("  freq: {low: 1, high: null}",
     "space.freq.high: must be an integer, got null; a range needs numeric low and high"),
    ("  stem_width: {low: wide, high: 16}", "space.stem_width.low: must be an integer, got 'wide'"),
])
def test_null_or_text_range_bound_of_other_knobs(tmp_path, text, expected):
    path = _write(tmp_path, GOOD.replace(STEM_W, f"{STEM_W}\n{text}"))
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 6: {expected}"


def test_stem_width_null_stays_allowed_as_a_value_and_a_choice(tmp_path):
    fixed = load_config(_write(tmp_path, GOOD.replace(STEM_W, f"{STEM_W}\n  stem_width: null")))
    assert fixed.knob("stem_width").kind == "fixed" and fixed.knob("stem_width").fixed is None
    chosen = load_config(_write(tmp_path, GOOD.replace(STEM_W, f"{STEM_W}\n  stem_width: {{choices: [null, 32]}}")))
    assert chosen.knob("stem_width").choices == (None, 32)


def test_study_file_not_utf8_is_one_line_naming_file_and_fix(tmp_path, capsys):
    latin1 = GOOD.replace("name: tiny\n", "name: tiny\ndescription: café\n").encode("latin-1")
    path = _write(tmp_path, latin1)
    expected = f"{path}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == expected
    assert _refused(path, capsys) == expected


def test_study_file_in_utf8_keeps_non_ascii_text(tmp_path):
    path = _write(tmp_path, GOOD.replace("name: tiny\n", "name: tiny\ndescription: café\n").encode("utf-8"))
    assert load_config(path).description == "caf\u00e9"


CEILING = "(study files cap widths at 4096 channels)"
FREQ_NOTE = "(a spec has at most 64 Fire modules, so a larger freq has no effect)"


@pytest.mark.parametrize("text,expected", [
    ("  base_e: 99999999999999999999999",
     f"space.base_e: 99999999999999999999999 is out of range: allowed 1..4096 {CEILING}"),
    ("  base_e: {low: 16, high: 4097}", f"space.base_e.high: 4097 is out of range: allowed 1..4096 {CEILING}"),
    ("  incr_e: 5000", f"space.incr_e: 5000 is out of range: allowed 0..4096 {CEILING}"),
    ("  stem_width: {choices: [32, 10000]}",
     f"space.stem_width.choices: 10000 is out of range: allowed 1..4096 {CEILING}"),
    ("  freq: 65", f"space.freq: 65 is out of range: allowed 1..64 {FREQ_NOTE}"),
    ("  base_e: 0", "space.base_e: 0 is out of range: allowed 1..4096"),  # the low side: no ceiling note
], ids=lambda v: v.strip()[:32] if v.startswith("  ") else None)
def test_integer_knobs_have_a_ceiling(tmp_path, capsys, text, expected):
    # Replaces GOOD's base_e line (line 6), so each knob sits on line 6.
    path = _write(tmp_path, GOOD.replace("  base_e: {low: 16, high: 32, step: 16}", text))
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 6: {expected}"
    assert _refused(path, capsys) == f"{path}: line 6: {expected}"


def test_integer_knobs_at_their_ceiling_are_accepted(tmp_path):
    text = "  base_e: {low: 16, high: 4096}\n  incr_e: 4096\n  freq: 64\n  stem_width: {low: 1, high: 4096}"
    config = load_config(_write(tmp_path, GOOD.replace("  base_e: {low: 16, high: 32, step: 16}", text)))
    assert (config.knob("base_e").high, config.knob("incr_e").fixed, config.knob("freq").fixed,
            config.knob("stem_width").high) == (4096, 4096, 64, 4096)


WHOLE = "must be a whole number >= 1 (such as 200000 or 2e5)"


@pytest.mark.parametrize("budget,expected", [
    ("params: 0.5", f"budgets.params: {WHOLE}, got 0.5"),
    ("params: 199999.9", f"budgets.params: {WHOLE}, got 199999.9"),
    ("params: 0", f"budgets.params: {WHOLE}, got 0"),
    ("params: -200000", f"budgets.params: {WHOLE}, got -200000"),
    ("params: true", f"budgets.params: {WHOLE}, got True"),
    ("params: 200k", f"budgets.params: {WHOLE}, got '200k'"),
    ("params: .inf", f"budgets.params: {WHOLE}, got inf"),
    ("params: 1" + "0" * 400, f"budgets.params: {WHOLE}, got 1" + "0" * 400),  # too big for a float
    ("params: 2e5, macs: 1.5e0", f"budgets.macs: {WHOLE}, got 1.5"),  # params is fine, macs is not
    ("macs: 1500000.5", f"budgets.macs: {WHOLE}, got 1500000.5"),
    ("size_mb: 0", "budgets.size_mb: must be a number > 0, got 0"),
    ("size_mb: -0.5", "budgets.size_mb: must be a number > 0, got -0.5"),
    ("size_mb: .nan", "budgets.size_mb: must be a number > 0, got nan"),
], ids=lambda v: v[:24] if v.startswith(("params", "macs", "size_mb")) else None)
def test_bad_budget_is_refused_not_truncated(tmp_path, capsys, budget, expected):
    path = _write(tmp_path, GOOD + f"budgets: {{{budget}}}\n")  # line 13
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 13: {expected}"
    assert _refused(path, capsys) == f"{path}: line 13: {expected}"


@pytest.mark.parametrize("budget,expected", [
    ("params: 2e5", {"params": 200000}),
    ("params: 200000.0", {"params": 200000}),
    ("params: 150000, macs: 3e6, size_mb: 0.75", {"params": 150000, "macs": 3000000, "size_mb": 0.75}),
    ("size_mb: 2", {"size_mb": 2.0}),
])
def test_good_budgets_are_exact(tmp_path, budget, expected):
    config = load_config(_write(tmp_path, GOOD + f"budgets: {{{budget}}}\n"))
    assert config.budget == expected
    assert {k: type(v) for k, v in config.budget.items()} == {
        k: (float if k == "size_mb" else int) for k in expected}
    assert StudyConfig.from_dict(config.to_dict()) == config


def test_command_line_n_trials_stands_in_for_a_missing_one(tmp_path):
    from explorer.study.config import load_config

    text = (Path(__file__).resolve().parents[1] / "studies/quickstart.yaml").read_text().replace("n_trials: 16", "")
    path = tmp_path / "no_n.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="n_trials: missing"):
        load_config(path)
    assert load_config(path, n_trials=3).n_trials == 3
    assert load_config(path, timeout_s=60).timeout_s == 60


@pytest.mark.parametrize("section", ["trainer", "data", "sampler"])
def test_seeds_must_be_what_torch_numpy_and_optuna_accept(tmp_path, section):
    from explorer.study.config import load_config

    text = (Path(__file__).resolve().parents[1] / "studies/quickstart.yaml").read_text()
    path = tmp_path / "s.yaml"
    for bad in (-1, 2**32):
        data = yaml.safe_load(text)
        data.setdefault(section, {})["seed"] = bad
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(UserError, match=rf"{section}\.seed.*an integer in \[0, 4294967295\]"):
            load_config(path)

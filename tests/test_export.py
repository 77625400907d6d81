"""`explorer export`: selection (trials, front, budget), round trips, the noise rule, bad input.

Studies are built directly with Optuna (create_trial + add_trial into a journal file), so
nothing here trains. Expected picks are worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from explorer.commands import main
from explorer.core.errors import SpecError
from explorer.design.budgets import parse_budget
from explorer.design.presets import preset
from explorer.design.spec import SqueezeSpec, load_spec
from explorer.results.selection import noise_ties, pooled_std, within_noise

TRAINER = {"epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
           "label_smoothing": 0.1, "time_budget_s": 60, "seed": 0}
DATA = {"source": None, "per_class": 6, "val_per_class": 3, "resolution": 8, "seed": 0}
CIFAR8 = SqueezeSpec(stem="cifar", stem_width=16, base_e=16, incr_e=16, n_fire=4, pools=(1, 3),
                     batchnorm=True, dropout=0.1, num_classes=10, input_size=8)


def attrs(spec: SqueezeSpec, *, params: int, macs: int, acc: float | None, **extra) -> dict:
    """The trial user attrs the study layer stores (docs/ARCHITECTURE.md)."""
    a = {"spec": spec.to_dict(), "spec_id": "0" * 16, "params": params, "macs": macs,
         "size_mb": params * 4 / 1e6, "size_mib": params * 4 / 2**20, "seed": 0, "device": "cpu",
         "versions": {"torch": "x"}, "git_rev": "abc123", "infeasible": False, "duplicate_of": None,
         "pruned_reason": None, "end": "completed"}
    if acc is not None:
        a.update(val_acc=acc, best_val_acc=acc, curve=[acc / 2, acc], val_loss=[2.0, 1.5],
                 train_seconds=1.0, images_per_s=100.0)
    a.update(extra)
    return a


def make_study(path: Path, name: str, rows: list[tuple], objectives=("val_acc", "params"),
               trainer=TRAINER, data=DATA, study_attrs: dict | None = None) -> Path:
    """A journal file with one study; rows are (state, user attrs)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    directions = ["maximize" if o == "val_acc" else "minimize" for o in objectives]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    study.set_user_attr("config", {"name": name, "trainer": trainer, "data": data})
    study.set_user_attr("objectives", list(objectives))
    for k, v in (study_attrs or {}).items():
        study.set_user_attr(k, v)
    for state, a in rows:
        values = [a["val_acc"]] + [float(a[o]) for o in objectives[1:]] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values, user_attrs=a))
    return path


C = TrialState.COMPLETE
# Hand-made study: (params, macs, acc). Front on (acc max, params min): #0, #1, #3.
# #2 is dominated by #1, #4 by #3; #5 infeasible, #6 failed, #7 a duplicate, #8 pruned.
HAND = [(C, attrs(CIFAR8, params=100, macs=50, acc=0.50)),
        (C, attrs(CIFAR8, params=200, macs=40, acc=0.60)),
        (C, attrs(CIFAR8, params=300, macs=90, acc=0.55)),
        (C, attrs(CIFAR8, params=400, macs=30, acc=0.70)),
        (C, attrs(CIFAR8, params=500, macs=20, acc=0.70)),
        (C, attrs(CIFAR8, params=50, macs=10, acc=0.90, infeasible=True)),
        (TrialState.FAIL, attrs(CIFAR8, params=60, macs=10, acc=None)),
        (C, attrs(CIFAR8, params=400, macs=30, acc=0.70, duplicate_of=3)),
        (TrialState.PRUNED, attrs(CIFAR8, params=70, macs=10, acc=0.80))]


@pytest.fixture
def hand(tmp_path) -> Path:
    return make_study(tmp_path / "hand.journal", "hand", HAND)


def export(journal: Path, out: Path, *args: str, study: str = "hand") -> list[dict]:
    """Run `explorer export` in-process; the summary CSV rows."""
    assert main(["export", study, "--storage", str(journal), "--out", str(out), *args]) == 0
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def numbers(rows: list[dict]) -> list[int]:
    return [int(r["trial"]) for r in rows]


# --- selection -------------------------------------------------------------------------------

def test_pareto_picks_the_hand_computed_front(hand, tmp_path):
    rows = export(hand, tmp_path / "out", "--pareto")
    assert numbers(rows) == [0, 1, 3]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "hand_trial00000.yaml", "hand_trial00001.yaml", "hand_trial00003.yaml", "summary.csv"]


@pytest.mark.parametrize("budget, expected", [
    ("params<=300", [0, 1]),                 # pool #0 #1 #2; #2 dominated by #1
    ("params<=450,macs<=35", [3]),           # only #3 has params <= 450 and macs <= 35
    ("macs<=45", [1, 3]),                    # pool #1 #3 #4; #4 dominated by #3 on (acc, params)
    ("params <= 0.2k", [0, 1]),              # suffixes and spaces
])
def test_budget_picks_the_feasible_front(hand, tmp_path, budget, expected):
    assert numbers(export(hand, tmp_path / "out", "--budget", budget)) == expected


def test_front_uses_every_cost_objective(tmp_path):
    # On (acc, params, macs) #4 (macs 20, the least) is no longer dominated by #3.
    journal = make_study(tmp_path / "m.journal", "m", HAND, objectives=("val_acc", "params", "macs"))
    assert numbers(export(journal, tmp_path / "out", "--pareto", study="m")) == [0, 1, 3, 4]


def test_trials_by_number_any_state_with_a_spec(hand, tmp_path):
    # Each once, sorted by size like a front: #8 has 70 params, #2 300, #4 500.
    assert numbers(export(hand, tmp_path / "out", "--trial", "4", "2", "8", "4")) == [8, 2, 4]


def test_study_file_path_names_study_and_storage(hand, tmp_path):
    study_file = tmp_path / "hand.yaml"
    text = (Path(__file__).resolve().parents[1] / "studies/quickstart.yaml").read_text()
    study_file.write_text(text.replace("name: quickstart", f"name: hand\nstorage: {hand}"))
    rows = export_file(study_file, tmp_path / "out")
    assert numbers(rows) == [0, 1, 3]


def export_file(study_file: Path, out: Path) -> list[dict]:
    assert main(["export", str(study_file), "--pareto", "--out", str(out)]) == 0
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


# --- the file format and round trips ---------------------------------------------------------

def test_file_format_holds_spec_provenance_metrics_cost(hand, tmp_path):
    export(hand, tmp_path / "out", "--trial", "3")
    doc = yaml.safe_load((tmp_path / "out/hand_trial00003.yaml").read_text())
    assert list(doc) == ["spec", "provenance", "metrics", "cost"]
    p = doc["provenance"]
    assert (p["study"], p["trial"], p["storage"], p["state"]) == ("hand", 3, str(hand.resolve()), "COMPLETE")
    assert p["trainer"] == TRAINER and p["data"] == DATA and p["git_rev"] == "abc123"
    assert p["versions"] == {"torch": "x"} and p["seed"] == 0 and p["objectives"] == ["val_acc", "params"]
    assert doc["metrics"]["val_acc"] == 0.70 and doc["metrics"]["curve"] == [0.35, 0.70]
    # CIFAR8 at 8 px: conv1 3*16*9+16 = 448 ... the total is fixed by the cost model's golden tests;
    # here the file's cost must describe the file's own spec.
    model_params = sum(p.numel() for p in _model(load_spec(tmp_path / "out/hand_trial00003.yaml")).parameters())
    assert doc["cost"]["params"] == model_params
    assert doc["cost"]["size_mb"] == pytest.approx(model_params * 4 / 1e6)
    assert doc["cost"]["size_mib"] == pytest.approx(model_params * 4 / 2**20)
    assert "multiply-adds" in doc["cost"]["units"]["macs"] and "MiB" in doc["cost"]["units"]["size_mib"]


def test_json_format_is_read_by_load_spec(hand, tmp_path):
    export(hand, tmp_path / "out", "--trial", "1", "--format", "json")
    path = tmp_path / "out/hand_trial00001.json"
    assert json.loads(path.read_text())["provenance"]["trial"] == 1
    assert load_spec(path) == CIFAR8


def test_no_temporary_files_are_left(hand, tmp_path):
    export(hand, tmp_path / "out", "--pareto")
    export(hand, tmp_path / "out", "--pareto")  # overwriting goes through a rename too
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def _model(spec):
    from explorer.design.model import build_model

    return build_model(spec)


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# torchvision's reference parameter counts (docs/DOMAIN.md), not our cost model's.
@pytest.mark.parametrize("name, params", [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)])
def test_preset_round_trip_matches_torchvision(tmp_path, capsys, name, params):
    import torchvision

    spec = preset(name)
    journal = make_study(tmp_path / "p.journal", "p", [(C, attrs(spec, params=params, macs=1, acc=0.5))])
    export(journal, tmp_path / "out", "--trial", "0", study="p")
    path = tmp_path / "out/p_trial00000.yaml"
    rebuilt = _model(load_spec(path))
    reference = getattr(torchvision.models, name)(weights=None)
    assert _shapes(rebuilt) == _shapes(reference)
    assert sum(p.numel() for p in rebuilt.parameters()) == params
    capsys.readouterr()
    assert main(["describe", str(path)]) == 0
    assert f"parameters   {params:,}" in capsys.readouterr().out


def _random_specs(n: int, seed: int = 6) -> list[SqueezeSpec]:
    """Seeded random valid specs at small inputs."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        n_fire = rng.randint(1, 6)
        try:
            out.append(SqueezeSpec(
                base_e=rng.choice([8, 16, 24]), incr_e=rng.choice([0, 8, 16]), freq=rng.randint(1, 3),
                pct_3x3=rng.choice([0.0, 0.25, 0.35, 0.5, 1.0]), sr=rng.choice([0.125, 0.25, 0.5, 1.0]),
                n_fire=n_fire, stem=rng.choice(["cifar", "v1_1"]), stem_width=rng.choice([None, 8, 12]),
                pools=tuple(sorted(rng.sample(range(n_fire + 1), rng.randint(0, 2)))),
                bypass=rng.choice(["none", "simple", "complex"]), batchnorm=rng.random() < 0.5,
                dropout=0.1, num_classes=rng.choice([3, 10]), input_size=rng.choice([16, 24])))
        except SpecError:
            continue
    return out


def test_random_specs_round_trip_params_macs_and_shapes(tmp_path):
    import logging

    from explorer.design.cost import fvcore_cost

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    specs = _random_specs(6)
    # What the trial trained, counted from the model itself (fvcore), not from the cost model.
    trained = [_model(s) for s in specs]
    figures = [fvcore_cost(m, s.input_size)[:2] for m, s in zip(trained, specs)]  # (macs, params)
    rows = [(C, attrs(s, params=p, macs=m, acc=0.1 * (i + 1))) for i, (s, (m, p)) in enumerate(zip(specs, figures))]
    journal = make_study(tmp_path / "r.journal", "r", rows)
    export(journal, tmp_path / "out", "--trial", *map(str, range(len(specs))), study="r")
    for i, (spec, model, (macs, params)) in enumerate(zip(specs, trained, figures)):
        loaded = load_spec(tmp_path / f"out/r_trial{i:05d}.yaml")
        assert loaded == spec
        rebuilt = _model(loaded)
        assert _shapes(rebuilt) == _shapes(model)
        assert sum(p.numel() for p in rebuilt.parameters()) == params
        assert fvcore_cost(rebuilt, loaded.input_size)[:2] == (macs, params)
        doc = yaml.safe_load((tmp_path / f"out/r_trial{i:05d}.yaml").read_text())
        assert (doc["cost"]["params"], doc["cost"]["macs"]) == (params, macs)


# --- the noise rule --------------------------------------------------------------------------

def test_within_noise_hand_cases():
    # 2 * sqrt(0.01^2 + 0.01^2) = 0.02828
    assert within_noise(0.70, 0.01, 0.72, 0.01)
    assert not within_noise(0.70, 0.01, 0.73, 0.01)
    assert within_noise(0.73, 0.01, 0.70, 0.01, k=3)  # 3 * 0.01414 = 0.0424; symmetric
    # k = 1: sqrt(0.03^2 + 0.04^2) = 0.05 < 0.06
    assert not within_noise(0.50, 0.03, 0.56, 0.04, k=1)
    assert within_noise(0.50, 0.03, 0.54, 0.04, k=1)
    assert within_noise(0.5, 0.0, 0.5, 0.0) and not within_noise(0.5, 0.0, 0.51, 0.0)
    assert not within_noise(0.5, math.nan, 0.5, 0.01)  # unknown noise never ties


def test_noise_ties_hand_case():
    # band 0.0283: #0~#1 (0.02), #2~#3 (0.01); #1 vs #2 differ by 0.08. Best #3; tied with it: #2, #3.
    tied, pick = noise_ties([1, 2, 3, 4], [0.50, 0.52, 0.60, 0.61], [0.01] * 4)
    assert tied == [1, None, 3, None] and pick == 2
    # A larger but less accurate trial is no reason to flag; the best picks itself.
    assert noise_ties([1, 2], [0.60, 0.59], [0.01, 0.01]) == ([None, None], 0)
    # Of several larger tied trials, the most accurate one is named.
    assert noise_ties([1, 2, 3], [0.60, 0.61, 0.62], [0.01] * 3)[0] == [2, 2, None]
    assert noise_ties([1, 2], [0.5, 0.6], [math.nan, math.nan]) == ([None, None], None)


def test_pooled_std_is_root_mean_square():
    assert pooled_std([0.03, 0.04, None, math.nan]) == pytest.approx(math.sqrt((0.0009 + 0.0016) / 2))
    assert math.isnan(pooled_std([]))


def test_export_flags_trials_within_noise_of_larger_ones(hand, tmp_path):
    # Front #0 (0.50), #1 (0.60), #3 (0.70). std 0.04: band 2*sqrt(2)*0.04 = 0.113 > 0.10,
    # so #0 ~ #1 and #1 ~ #3 (not #0 ~ #3: 0.20); the smallest tied with the best (#3) is #1.
    rows = export(hand, tmp_path / "out", "--pareto", "--noise-std", "0.04")
    assert [r["within_noise_of"] for r in rows] == ["1", "3", ""]
    assert [r["tied_with_best"] for r in rows] == ["False", "True", "True"]
    assert [r["pick"] for r in rows] == ["False", "True", "False"]
    assert {r["acc_std_source"] for r in rows} == {"cli"}
    # std 0.03: band 0.0849 < 0.10: nothing tied; the best is its own pick.
    rows = export(hand, tmp_path / "out2", "--pareto", "--noise-std", "0.03")
    assert [r["within_noise_of"] for r in rows] == ["", "", ""]
    assert [r["pick"] for r in rows] == ["False", "False", "True"]
    doc = yaml.safe_load((tmp_path / "out/hand_trial00000.yaml").read_text())
    assert doc["provenance"]["selection"]["within_noise_of"] == 1


def test_calibration_in_the_study_is_used(tmp_path, capsys):
    # calibrate stores study attr calibration/3; the study-level std is then 0.01 (RMS of one).
    calib = {"calibration/3": {"acc_mean": 0.69, "acc_std": 0.01, "acc_seeds": [0.68, 0.70], "k": 2}}
    journal = make_study(tmp_path / "c.journal", "c", HAND, study_attrs=calib)
    rows = export(journal, tmp_path / "out", "--pareto", study="c")
    assert [r["acc_std_source"] for r in rows] == ["study", "study", "trial"]
    assert rows[2]["acc_mean"] == "0.69" and float(rows[0]["acc_std_used"]) == 0.01
    assert [float(r["acc_used"]) for r in rows] == [0.50, 0.60, 0.69]  # the calibrated mean for #3
    doc = yaml.safe_load((tmp_path / "out/c_trial00003.yaml").read_text())
    assert doc["noise"] == {"k": 2, "mean": 0.69, "std": 0.01, "accs": [0.68, 0.70]}
    assert "pick: #3" in capsys.readouterr().out


def test_calibrated_mean_replaces_a_lucky_short_run(tmp_path):
    # #3 scored 0.70 once but averages 0.61 over seeds: now within 2*sqrt(2)*0.01 = 0.028 of #1
    # (0.60), so #1 is tied with the best (#3) and, being smaller, is the pick.
    calib = {"calibration/3": {"acc_mean": 0.61, "acc_std": 0.01, "acc_seeds": [0.60, 0.62], "k": 2}}
    journal = make_study(tmp_path / "c.journal", "c", HAND, study_attrs=calib)
    rows = export(journal, tmp_path / "out", "--pareto", study="c")
    assert [r["within_noise_of"] for r in rows] == ["", "3", ""]
    assert [r["pick"] for r in rows] == ["False", "True", "False"]


def test_without_noise_estimate_nothing_is_flagged(hand, tmp_path, capsys):
    rows = export(hand, tmp_path / "out", "--pareto")
    assert {r["pick"] for r in rows} == {"False"} and {r["acc_std_source"] for r in rows} == {"none"}
    assert "explorer calibrate" in capsys.readouterr().out


# --- bad input: one line, exit 2 ---------------------------------------------------------------

def test_parse_budget():
    assert parse_budget("params<=1e6,macs<=5e7") == {"params": 1e6, "macs": 5e7}
    assert parse_budget("size_mb<=0.5, params<=2M") == {"size_mb": 0.5, "params": 2e6}
    for bad in ("params<1e6", "params<=", "flops<=1e9", "params<=1e6,params<=2e6", "params<=-1",
                "", "params<=1e6;macs<=1"):
        with pytest.raises(Exception) as info:
            parse_budget(bad)
        assert type(info.value).__name__ == "UserError" and "\n" not in str(info.value)


def _fails(capsys, args: list[str], *words: str) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    return err


def test_export_bad_inputs(hand, tmp_path, capsys):
    base = ["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "o")]
    _fails(capsys, base + ["--trial", "3", "42"], "no trial #42", "0..8")
    _fails(capsys, base + ["--budget", "params<=10"], "meets the budget", "#0")
    _fails(capsys, base + ["--budget", "params=<10"], "malformed")
    _fails(capsys, base + ["--budget", "flops<=1e9"], "unknown cost 'flops'")
    _fails(capsys, ["export", "nope", "--storage", str(hand), "--out", "o", "--pareto"], "no study named 'nope'")
    _fails(capsys, ["export", "x", "--storage", str(tmp_path / "none.journal"), "--out", "o", "--pareto"],
           "no study storage")
    (tmp_path / "file").write_text("")
    _fails(capsys, ["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "file"), "--pareto"],
           "is a file")
    empty = make_study(tmp_path / "e.journal", "e", [HAND[5], HAND[6], HAND[8]])
    _fails(capsys, ["export", "e", "--storage", str(empty), "--out", "o", "--pareto"], "no completed, feasible")


def _export_file(hand: Path, tmp_path: Path) -> Path:
    assert main(["export", "hand", "--storage", str(hand), "--out", str(tmp_path / "x"), "--trial", "3"]) == 0
    return tmp_path / "x/hand_trial00003.yaml"


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("spec:\n", "spec:\n  bogus: 1\n", 1), ["unknown spec field 'bogus'"]),
    (lambda t: t.replace("pct_3x3: 0.5", "pct_3x3: 1.5"), ["pct_3x3=1.5", "out of range"]),
    (lambda t: t + "extra: {}\n", ["unknown top-level key 'extra'"]),
    (lambda t: t.replace("  trainer:\n", "  trainer:\n    lr_max: 3\n"), ["provenance.trainer.lr_max"]),
    (lambda t: t.replace("    lr: 0.05", "    lr: fast"), ["provenance.trainer.lr='fast'"]),
    (lambda t: t + "  : [\n", ["not valid YAML", "line"]),
    (lambda t: t.replace("spec:", "spek:", 1), ["no spec: mapping"]),
    (lambda t: "- a list\n", ["expected a mapping"]),
])
def test_damaged_files_are_one_line_errors(hand, tmp_path, capsys, edit, words):
    path = _export_file(hand, tmp_path)
    path.write_text(edit(path.read_text()))
    for cmd in (["train", str(path), "--epochs", "1", "--out", str(tmp_path / "t")],
                ["calibrate", str(path), "--seeds", "2"]):
        _fails(capsys, cmd, *words)


def test_hand_edited_spec_is_refused_by_calibrate(hand, tmp_path, capsys):
    path = _export_file(hand, tmp_path)
    path.write_text(path.read_text().replace("base_e: 16", "base_e: 24"))
    _fails(capsys, ["calibrate", str(path), "--seeds", "2"], "differs from provenance.spec_id")
    _fails(capsys, ["calibrate", str(path), "--seeds", "1"], "--seeds=1")
    _fails(capsys, ["train", str(tmp_path / "missing.yaml"), "--epochs", "1", "--out", "o"], "cannot read")


def test_cli_error_has_no_traceback(hand, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "explorer", "export", "hand", "--storage", str(hand),
                           "--out", str(tmp_path / "o"), "--trial", "99"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no trial #99" in proc.stderr


def test_dashboard_sees_calibration_and_exports_the_trainer_settings(tmp_path):
    # The dashboard reads the same study: the calibration (a study attr) fills acc_mean/acc_std
    # of trial #3, and its downloaded config carries the study's trainer/data settings, so
    # `explorer train` retrains with the settings the trial ran with (not the defaults).
    from dashboards import exports as dash_exports
    from dashboards import loading as dash_loading
    from explorer.results.exportfile import read_export
    from explorer.results.retrain import trainer_settings

    calib = {"calibration/3": {"acc_mean": 0.69, "acc_std": 0.01, "acc_seeds": [0.68, 0.70], "k": 2}}
    journal = make_study(tmp_path / "c.journal", "c", HAND, study_attrs=calib)
    frame = dash_loading.load_trials(str(journal), "c")
    row = frame[frame["number"] == 3].iloc[0]
    assert (row["acc_mean"], row["acc_std"]) == (0.69, 0.01)
    assert frame[frame["number"] == 1]["acc_std"].isna().all()
    path = tmp_path / "c_trial00003.yaml"
    path.write_text(dash_exports.to_yaml(dash_exports.trial_config(row, str(journal))))
    exp = read_export(path)
    assert exp.trainer == TRAINER and exp.data == DATA
    assert exp.doc["noise"] == {"k": 2, "mean": 0.69, "std": 0.01, "accs": [0.68, 0.70]}
    settings = trainer_settings(exp)
    assert (settings["lr"], settings["batch_size"], settings["epochs"]) == (0.05, 16, 1)


def test_status_counts_a_duplicates_training_time_once(tmp_path, capsys):
    # #1 reuses #0's result (and carries its train_seconds): 120 s of training, not 240.
    rows = [(C, attrs(CIFAR8, params=100, macs=50, acc=0.5, train_seconds=120.0)),
            (C, attrs(CIFAR8, params=100, macs=50, acc=0.5, train_seconds=120.0, duplicate_of=0))]
    journal = make_study(tmp_path / "d.journal", "d", rows)
    assert main(["status", "d", "--storage", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "trials: 1 network trained, 1 duplicate (reused)" in out and "(2.0 min training)" in out


def test_dashboard_download_has_the_export_commands_format(hand, tmp_path):
    # The same trial through `explorer export --trial 3` and through the dashboard's download:
    # the same sections, spec, metrics, cost and trainer/data settings.
    from dashboards import exports as dash_exports
    from dashboards import loading as dash_loading

    export(hand, tmp_path / "out", "--trial", "3")
    cli = yaml.safe_load((tmp_path / "out/hand_trial00003.yaml").read_text())
    row = dash_loading.load_trials(str(hand), "hand").set_index("number", drop=False).loc[3]
    dash = dash_exports.trial_config(row, str(hand))
    assert set(dash) == set(cli) == {"spec", "provenance", "metrics", "cost"}
    assert dash["spec"] == cli["spec"] and dash["cost"] == cli["cost"] and dash["metrics"] == cli["metrics"]
    same = ("study", "trial", "spec_id", "state", "seed", "device", "trainer", "data", "objectives",
            "end", "versions", "git_rev")
    assert {k: dash["provenance"][k] for k in same} == {k: cli["provenance"][k] for k in same}
    assert dash["provenance"]["selection"] == {"how": "dashboard"}
    assert cli["provenance"]["selection"]["how"] == "trial"

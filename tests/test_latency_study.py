"""Latency in a study: a budget checked before training, an objective, and every report naming its setting."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml
from optuna.trial import TrialState

from explorer.commands import main
from explorer.design.cost import estimate_cost
from explorer.latency.measure import Latency, Setting
from explorer.study.space import Space

from test_study import FakeTrainer, config, run, trials

SETTING = Setting("cpu", "Test CPU", "host-a", 1, 1, 16, True, "fp32", "2.0")
LATENCY = {"objectives": ["val_acc", "latency_ms"], "sampler": {"name": "grid"}}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))


def fake_ms(params: int) -> float:
    """The fake device: 1 ms per 10,000 parameters."""
    return params / 10_000


class FakeTiming:
    """Stands in for explorer.latency.measure.latency_of: fake_ms(params) under `setting`; counts the networks."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # the parameter count of each network timed
        self.setting = SETTING

    def __call__(self, model, spec_id, setting, cfg, **kw) -> Latency:
        params = sum(p.numel() for p in model.parameters())
        self.calls.append(params)
        return Latency(ms=fake_ms(params), spread=0.01, runs=20, warmup_runs=5, seconds=0.1, quiet=True,
                       setting=self.setting)


@pytest.fixture
def timed(monkeypatch) -> FakeTiming:
    fake = FakeTiming()
    monkeypatch.setattr("explorer.study.objective.latency_of", fake)
    return fake


def grid_params(cfg) -> list[int]:
    s = Space.from_config(cfg)
    return sorted(estimate_cost(s.spec(v)).params for v in s.grid_points())


def test_a_latency_budget_is_checked_before_training(tmp_path, timed):
    cfg = config(**LATENCY, budgets={"latency_ms": 1.5}, n_trials=6)
    every = grid_params(cfg)  # six networks: 3 widths x 2 squeeze ratios
    over = [p for p in every if fake_ms(p) > 1.5]
    assert over and len(over) < len(every)
    trainer = FakeTrainer()
    run(cfg, str(tmp_path / "s.journal"), trainer)
    done = trials(str(tmp_path / "s.journal"))
    assert len(done) == 6  # the grid stops once every point was visited, cut ones included
    assert sorted(timed.calls) == every  # each network timed once, before anything else
    assert sorted(trainer.calls) == [p for p in every if fake_ms(p) <= 1.5]  # none over budget trained
    for t in done:
        a = t.user_attrs
        assert a["latency_ms"] == fake_ms(a["params"]) and a["latency_setting"] == SETTING.label()
        assert a["latency"]["host"] == "host-a" and a["latency"]["runs"] == 20
        assert t.constraints["latency_ms"] == pytest.approx(a["latency_ms"] / 1.5 - 1)
        assert a["infeasible"] == (a["latency_ms"] > 1.5)
        if a["infeasible"]:
            assert a["over_budget"] == f"latency_ms {a['latency_ms']:.3g} > 1.5" and "curve" not in a
        assert t.values == [t.values[0], a["latency_ms"]]


def test_networks_over_an_analytic_budget_are_never_timed(tmp_path, timed):
    cfg = config(**LATENCY, budgets={"params": 12_000, "latency_ms": 100}, n_trials=6)
    run(cfg, str(tmp_path / "s.journal"), FakeTrainer())
    done = trials(str(tmp_path / "s.journal"))
    analytic = [t for t in done if "params" in (t.user_attrs.get("over_budget") or "")]
    assert analytic and all("latency_ms" not in t.user_attrs for t in analytic)
    assert all(t.values[1] == math.inf for t in analytic)  # never measured: no latency to minimise
    assert sorted(timed.calls) == sorted(t.user_attrs["params"] for t in done if t not in analytic)


def test_a_duplicate_keeps_the_accuracy_and_its_own_latency(tmp_path, timed):
    space = {**config().to_dict()["space"], "base_e": 16, "sr": {"choices": [0.25, 0.26]}}
    # one network under two spellings: trained once; the later proposals are duplicates (they
    # take no place of n_trials, so a random sampler proposes until the space looks exhausted)
    cfg = config(**{**LATENCY, "sampler": {"name": "random", "seed": 0}}, space=space, n_trials=2)
    run(cfg, str(tmp_path / "s.journal"), FakeTrainer())
    first, second, *_ = trials(str(tmp_path / "s.journal"))
    assert second.user_attrs["duplicate_of"] == first.number
    assert second.values == [first.values[0], second.user_attrs["latency_ms"]]


def test_status_trials_and_exports_carry_the_latency_and_its_setting(tmp_path, timed, capsys):
    url = str(tmp_path / "s.journal")
    cfg = config(**LATENCY, budgets={"latency_ms": 1.5}, n_trials=6)
    run(cfg, url, FakeTrainer())
    assert main(["status", "t", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "min latency_ms" in out and "latency ms" in out
    assert f"latency: median ms per forward pass on {SETTING.label()}" in out and "warning" not in out
    assert main(["trials", "t", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    timed_rows = [r for r in rows if r["latency_ms"] is not None]
    assert timed_rows and all(r["latency_setting"] == SETTING.label() for r in timed_rows)
    assert all(r["latency_spread"] == 0.01 for r in timed_rows)
    out_dir = tmp_path / "x"
    assert main(["export", "t", "--storage", url, "--pareto", "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "latency ms" in printed and SETTING.label() in printed
    files = sorted(out_dir.glob("t_trial*.yaml"))
    assert files
    for f in files:
        doc = yaml.safe_load(f.read_text())
        m = doc["metrics"]
        assert m["latency_ms"] == fake_ms(doc["cost"]["params"]) and m["latency_setting"] == SETTING.label()
        assert m["latency"]["device_name"] == "Test CPU" and m["latency"]["threads"] == 1
    with open(out_dir / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert all(r["latency_setting"] == SETTING.label() and float(r["latency_ms"]) > 0 for r in summary)
    assert main(["export", "t", "--storage", url, "--budget", "latency_ms<=1", "--out", str(tmp_path / "y")]) == 0
    chosen = [yaml.safe_load(f.read_text()) for f in (tmp_path / "y").glob("t_trial*.yaml")]
    assert chosen and all(d["metrics"]["latency_ms"] <= 1 for d in chosen)


def test_latencies_of_different_settings_are_flagged(tmp_path, timed, capsys):
    url = str(tmp_path / "s.journal")
    run(config(**LATENCY, n_trials=3), url, FakeTrainer())
    timed.setting = Setting(**{**SETTING.__dict__, "host": "host-b"})  # a worker on another machine
    run(config(**LATENCY, n_trials=6), url, FakeTrainer())
    assert main(["status", "t", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "measured on 2 different settings and do not compare across them (the front above" in out
    assert "host-a" in out and "host-b" in out
    assert main(["export", "t", "--storage", url, "--trial", "0", "5", "--out", str(tmp_path / "x")]) == 0
    assert "measured on 2 different settings" in capsys.readouterr().out


def test_end_to_end_latency_objective_and_budget_on_real_cifar(tmp_path, cifar_archive, monkeypatch, capsys):
    """`explorer run` with objectives [val_acc, latency_ms] and a latency budget, real timing;
    then status, export and `explorer train`'s model card all name the setting."""
    monkeypatch.chdir(tmp_path)
    study = {**config().to_dict(), "name": "lat", "trainer": {"epochs": 1, "batch_size": 32},
             "objectives": ["val_acc", "latency_ms"], "budgets": {"latency_ms": 1000},
             "latency": {"threads": 1, "batch_size": 1, "max_seconds": 1.0}, "n_trials": 2,
             "sampler": {"name": "random", "seed": 0}, "storage": None, "data": {"per_class": 20,
                                                                               "val_per_class": 10,
                                                                               "resolution": 16}}
    (tmp_path / "lat.yaml").write_text(json.dumps(study))
    assert main(["run", "lat.yaml", "--data", str(cifar_archive), "--no-progress", "--device", "cpu"]) == 0
    assert "latency" in capsys.readouterr().out
    done = trials("runs/lat.journal", "lat")
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    label = done[0].user_attrs["latency_setting"]
    assert label.startswith("cpu (") and "1 thread, batch 1, 16x16 px, fp32 channels-last" in label
    for t in done:
        assert 0 < t.user_attrs["latency_ms"] < 1000 and t.values[1] == t.user_attrs["latency_ms"]
        assert t.user_attrs["latency"]["quiet"] is True and t.user_attrs["latency"]["runs"] >= 3
    assert main(["status", "lat.yaml"]) == 0
    assert f"latency: median ms per forward pass on {label}" in capsys.readouterr().out
    assert main(["export", "lat.yaml", "--pareto", "--out", "x"]) == 0
    exported = sorted((tmp_path / "x").glob("lat_trial*.yaml"))[0]
    assert yaml.safe_load(exported.read_text())["metrics"]["latency_setting"] == label
    assert main(["train", str(exported), "--epochs", "1", "--data", str(cifar_archive), "--per-class", "10",
                 "--out", "m", "--device", "cpu"]) == 0
    card = (tmp_path / "m/model_card.md").read_text()
    assert "ms per forward pass, median (95% CI of the median" in card and label in card

"""The time budget is a guard (issue 12.3): a cut trial is stored with its reason, kept off every
front and out of exports, counted apart, and retried on request; the guard is not the study's identity.

The fake trainer below reports `end == "time_budget"` (what explorer.training.train.train returns when
time_budget_s runs out, tests/test_train.py) for chosen calls, with an accuracy above every
other trial's: on any front that forgot the guard, a cut trial would be the most accurate point.
"""

from __future__ import annotations

import os
import re
import types

import optuna
import pytest
from optuna.trial import TrialState

from explorer import store as st
from explorer.commands import main
from explorer.commands.status import report
from explorer.core.errors import UserError
from explorer.results.selection import select_trials
from explorer.store.table import comparable
from explorer.study.config import StudyConfig
from explorer.study.loop import run_study
from explorer.training.train import TrainResult

DATA = types.SimpleNamespace(num_classes=10)
BASE = {
    "name": "tb", "data": {"per_class": 20, "val_per_class": 10, "resolution": 16},
    "trainer": {"epochs": 3, "batch_size": 32, "seed": 0, "time_budget_s": 60},
    "space": {"stem": "cifar", "stem_width": 16, "batchnorm": True, "n_fire": 4, "pools": [1, 3], "incr_e": 0,
              "base_e": {"choices": [16, 32, 64]}, "sr": {"choices": [0.25, 0.5]}},
    "objectives": ["val_acc", "params"], "sampler": {"name": "grid", "seed": 0}, "n_trials": 6,
    "check_fvcore": False,  # fvcore traces each network (0.3 s); the cost is not what is tested here
}


class CuttingTrainer:
    """Trains calls not in `cut` to 0.1..0.6 (by size); calls in `cut` stop after one epoch at 0.99."""

    def __init__(self, cut=()):
        self.cut, self.calls = set(cut), []

    def __call__(self, model, data, *, epochs, on_epoch_end=None, **kw):
        params = sum(p.numel() for p in model.parameters())
        self.calls.append(params)
        res = TrainResult(train_seconds=0.01, images_per_s=1000.0, seed=kw["seed"], device=kw["device"])
        if len(self.calls) - 1 in self.cut:
            res.val_acc, res.val_loss, res.end, res.epochs = [0.99], [0.1], "time_budget", 1.0
        else:
            res.val_acc = [min(0.6, params / 50_000) * (e + 1) / epochs for e in range(epochs)]
            res.val_loss = [1 - a for a in res.val_acc]
        res.final_acc, res.best_acc = res.val_acc[-1], max(res.val_acc)
        return res


def config(**changes) -> StudyConfig:
    return StudyConfig.from_dict({**BASE, **changes})


def run(cfg, url, trainer, **kw):
    return run_study(cfg, storage_url=url, trainer=trainer, data=DATA, device="cpu", progress=False,
                     out=open(os.devnull, "w"), **kw)


def stored(url: str, name: str = "tb"):
    return optuna.load_study(study_name=name, storage=st.open_storage(url)).get_trials()


@pytest.fixture()
def cut_study(tmp_path):
    """Six grid trials, calls 1 and 4 cut by the time budget."""
    url = str(tmp_path / "s.journal")
    summary = run(config(), url, CuttingTrainer(cut={1, 4}))
    return url, summary


def test_a_cut_trial_is_stored_pruned_with_its_reason_and_counted_apart(cut_study):
    url, summary = cut_study
    trials = stored(url)
    cut = [t for t in trials if t.user_attrs.get("end") == "time_budget"]
    assert [t.number for t in cut] == [1, 4]
    for t in cut:
        assert t.state == TrialState.PRUNED and t.values is None  # no value for the sampler to learn from
        assert t.user_attrs["val_acc"] == 0.99  # the partial result is kept, for the record
        assert "time_budget_s=60 s reached after 1 of 3 epochs" in t.user_attrs["pruned_reason"]
    assert summary.states == {"COMPLETE": 4, "CUT": 2} and summary.ran == 6
    assert summary.counts_text() == "4 networks trained, 2 cut by the time budget"
    assert st.count_done(optuna.load_study(study_name="tb", storage=st.open_storage(url))) == 6


def test_a_cut_trial_is_never_on_a_front_nor_exported(cut_study):
    url, _ = cut_study
    rec = st.read_study(st.open_storage(url), "tb", url=url)
    front = select_trials(rec, pareto=True)
    assert 1 not in {t.number for t in front} and 4 not in {t.number for t in front}
    # the most accurate comparable trial is the largest network trained to the end (0.6 cap or less)
    assert max(t.num("val_acc") for t in front) < 0.99
    assert {t.number for t in select_trials(rec, budget={"params": 1e9})} == {t.number for t in front}
    table = st.trial_table(rec)
    assert comparable(table).tolist() == [n not in (1, 4) for n in table["number"]]
    text = report(table, "tb", url, rec.objectives)
    assert "trials: 4 networks trained, 2 cut by the time budget" in text
    assert "of 4 trained trials" in text and "   #1 " not in text and "   #4 " not in text
    assert "retry #1, #4 with `explorer run STUDY --retry-cut`" in text


def test_a_cut_trial_stored_complete_by_an_older_version_is_kept_off_too(tmp_path):
    """Before issue 12 a cut trial was COMPLETE with its partial accuracy as its value."""
    url = str(tmp_path / "s.journal")
    run(config(n_trials=3), url, CuttingTrainer())
    study = optuna.load_study(study_name="tb", storage=st.open_storage(url))
    old = stored(url)[2]
    study.add_trial(optuna.trial.create_trial(
        params=old.params, distributions=old.distributions, values=[0.99, old.values[1]],
        user_attrs={**old.user_attrs, "val_acc": 0.99, "end": "time_budget"}))
    rec = st.read_study(st.open_storage(url), "tb", url=url)
    assert 3 not in {t.number for t in select_trials(rec, pareto=True)}
    assert not comparable(st.trial_table(rec))[3]
    assert "3 networks trained, 1 cut by the time budget" in report(st.trial_table(rec), "tb", url, rec.objectives)


def test_retry_cut_reruns_the_cut_trials_and_keeps_the_trial_count(cut_study, capsys):
    url, _ = cut_study
    before = stored(url)
    trainer = CuttingTrainer()
    summary = run(config(), url, trainer, retry_cut=True)
    after = stored(url)
    assert summary.requeued == [1, 4] and len(trainer.calls) == 2
    retries = after[len(before):]
    assert [t.user_attrs["retry_of"] for t in retries] == [1, 4]
    assert [t.params for t in retries] == [before[1].params, before[4].params]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["end"] == "completed" for t in retries)
    study = optuna.load_study(study_name="tb", storage=st.open_storage(url))
    assert st.count_done(study) == 6  # each retry took its cut trial's place
    rec = st.read_study(st.open_storage(url), "tb", url=url)
    assert "all retried" in report(st.trial_table(rec), "tb", url, rec.objectives)
    again = run(config(), url, CuttingTrainer(), retry_cut=True)  # nothing left to retry
    assert again.requeued == [] and again.ran == 0


def test_a_retry_cut_again_is_retried_again(cut_study):
    url, _ = cut_study
    run(config(), url, CuttingTrainer(cut={0}), retry_cut=True)  # #1's retry (#6) is cut again
    second = run(config(), url, CuttingTrainer(), retry_cut=True)
    assert second.requeued == [6] and second.ran == 1
    assert stored(url)[-1].user_attrs["retry_of"] == 6


def test_changing_the_time_budget_resumes_the_same_study(cut_study):
    url, _ = cut_study
    cfg = config(trainer={**BASE["trainer"], "time_budget_s": 900})
    run(cfg, url, CuttingTrainer(), retry_cut=True)  # no "different trainer" error
    study = optuna.load_study(study_name="tb", storage=st.open_storage(url))
    assert study.user_attrs["config"]["trainer"]["time_budget_s"] == 900  # workers follow the new guard
    with pytest.raises(UserError, match="different trainer"):
        run(config(trainer={**BASE["trainer"], "epochs": 4}), url, CuttingTrainer())


def test_run_prints_the_cut_trials_apart_and_how_to_retry(tmp_path, monkeypatch, capsys):
    import explorer.study.loop

    (tmp_path / "tb.yaml").write_text(
        "name: tb\ndata: {per_class: 20, val_per_class: 10, resolution: 16}\n"
        "trainer: {epochs: 3, batch_size: 32, seed: 0, time_budget_s: 60}\n"
        "space: {stem: cifar, stem_width: 16, batchnorm: true, n_fire: 4, pools: [1, 3], incr_e: 0,\n"
        "        base_e: {choices: [16, 32, 64]}, sr: {choices: [0.25, 0.5]}}\n"
        "objectives: [val_acc, params]\nsampler: {name: grid}\nn_trials: 6\ncheck_fvcore: false\n")
    monkeypatch.chdir(tmp_path)
    real = explorer.study.loop.run_study
    monkeypatch.setattr(explorer.study.loop, "run_study", lambda cfg, **kw: real(
        cfg, **{**kw, "trainer": CuttingTrainer(cut={2}), "data": DATA, "device": "cpu"}))
    assert main(["run", "tb.yaml", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"tb: ran 6 trials in \d+s: 5 networks trained, 1 cut by the time budget;", out)
    assert "1 trial(s) stopped at trainer.time_budget_s=60 s" in err and "tb.yaml --retry-cut" in err
    assert main(["status", "tb.yaml"]) == 0
    assert "trials: 5 networks trained, 1 cut by the time budget" in capsys.readouterr().out


def test_calibrate_does_not_count_the_guard_as_part_of_the_recipe():
    from explorer.results.calibration import recipe_differences

    trainer = config().to_dict()["trainer"]  # every setting, time_budget_s 60
    study = {"trainer": trainer, "data": dict(BASE["data"], source=None)}
    data = {**BASE["data"], "seed": 0, "source": None}
    assert recipe_differences(study, {**trainer, "time_budget_s": None}, data) == []
    assert recipe_differences(study, {**trainer, "time_budget_s": 900}, data) == []
    assert recipe_differences(study, {**trainer, "epochs": 4}, data) == ["epochs 4 instead of 3"]

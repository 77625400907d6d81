"""The run loop: end to end on real CIFAR-10, budgets, duplicates, resume, killed workers, pruning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from explorer import store as st
from explorer.commands import main
from explorer.core.errors import UserError
from explorer.design.cost import estimate_cost
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.study.config import StudyConfig
from explorer.study.loop import run_study
from explorer.study.objective import CostMismatch
from explorer.study.space import Space
from explorer.training.train import TrainResult

REPO = Path(__file__).resolve().parents[1]
DATA = types.SimpleNamespace(num_classes=10)  # the fake trainers never look at the images

BASE = {
    "name": "t", "data": {"per_class": 20, "val_per_class": 10, "resolution": 16},
    "trainer": {"epochs": 3, "batch_size": 32, "seed": 0},
    "space": {"stem": "cifar", "stem_width": 16, "batchnorm": True, "n_fire": 4, "pools": [1, 3], "incr_e": 0,
              "base_e": {"choices": [16, 32, 64]}, "sr": {"choices": [0.25, 0.5]}},
    "objectives": ["val_acc", "params"], "sampler": {"name": "random", "seed": 0}, "n_trials": 4,
}


def config(**changes) -> StudyConfig:
    return StudyConfig.from_dict({**BASE, **changes})


class FakeTrainer:
    """Counts calls; accuracy per epoch from the network's parameter count (bigger is better)."""

    def __init__(self, acc=None, sleep_s: float = 0.0, interrupt_on_call: int | None = None):
        self.calls: list[int] = []
        self.acc = acc or (lambda params, epoch: min(0.9, params / 40_000 * (epoch + 1) / 3))
        self.sleep_s, self.interrupt_on_call = sleep_s, interrupt_on_call

    def __call__(self, model, data, *, epochs, on_epoch_end=None, **kw):
        params = sum(p.numel() for p in model.parameters())
        self.calls.append(params)
        if self.interrupt_on_call == len(self.calls):
            raise KeyboardInterrupt
        res = TrainResult(train_seconds=0.01, images_per_s=1000.0, seed=kw["seed"], device=kw["device"])
        for e in range(1, epochs + 1):
            time.sleep(self.sleep_s)
            acc = self.acc(params, e - 1)
            res.val_acc.append(acc)
            res.val_loss.append(1 - acc)
            if on_epoch_end and on_epoch_end(e, {"val_acc": acc, "val_loss": 1 - acc}) and e < epochs:
                res.end = "stopped"
                break
        res.final_acc, res.best_acc = res.val_acc[-1], max(res.val_acc)
        return res


def trials(url: str, name: str = "t"):
    return optuna.load_study(study_name=name, storage=st.open_storage(url)).get_trials()


def run(cfg: StudyConfig, url: str, trainer, **kw):
    return run_study(cfg, storage_url=url, trainer=trainer, data=DATA, device="cpu",
                     progress=False, out=open(os.devnull, "w"), **kw)


def test_end_to_end_on_real_cifar(tmp_path, cifar_archive, monkeypatch, capsys):
    """`explorer run` on a tiny CIFAR-10 subset, then `status` and `trials`; rebuild from storage."""
    monkeypatch.chdir(tmp_path)
    study = dict(BASE, name="e2e", trainer={"epochs": 1, "batch_size": 32}, n_trials=3)
    (tmp_path / "e2e.yaml").write_text(json.dumps(study))  # JSON is YAML
    assert main(["run", "e2e.yaml", "--data", str(cifar_archive), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("COMPLETE") == 3 and "runs/e2e.journal" in out
    done = trials("runs/e2e.journal", "e2e")
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3
    for t in done:
        a = t.user_attrs
        spec = SqueezeSpec.from_dict(a["spec"])  # the stored spec alone rebuilds the network
        assert spec_id(spec) == a["spec_id"] and estimate_cost(spec).params == a["params"]
        assert (spec.num_classes, spec.input_size) == (10, 16)
        assert len(a["curve"]) == 1 and 0.0 <= a["val_acc"] <= 1.0 and a["train_seconds"] > 0
        assert a["device"] == "cpu" and a["versions"]["optuna"] == optuna.__version__
        assert a["git_rev"] and a["seed"] == 0 and a["end"] == "completed"
        assert len(a["train_loss"]) == 1 and a["train_loss_sum"] == a["train_loss"][0] > 0
        assert t.values == [a["val_acc"], a["params"]]
    stored = optuna.load_study(study_name="e2e", storage=st.open_storage("runs/e2e.journal"))
    assert stored.metric_names == ["val_acc", "params"]
    assert stored.user_attrs["config"]["data"]["source"] == str(cifar_archive)
    assert main(["status", "e2e.yaml"]) == 0
    status = capsys.readouterr().out
    assert "trials: 3 networks trained" in status and "Pareto front" in status
    assert main(["trials", "e2e", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rows] == [0, 1, 2] and rows[0]["params"] == done[0].user_attrs["params"]
    assert main(["trials", "e2e", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 4  # header + 3 rows


def test_over_budget_points_never_train(tmp_path):
    cfg = config(budgets={"params": 12_000}, n_trials=3)
    trainer = FakeTrainer()
    run(cfg, str(tmp_path / "s.journal"), trainer)
    done = trials(str(tmp_path / "s.journal"))
    over = [t for t in done if t.user_attrs["infeasible"]]
    assert over, "the space has points above 12k parameters; random sampling must hit some"
    assert all(t.user_attrs["params"] > 12_000 and "params" in t.user_attrs["over_budget"] for t in over)
    assert all(t.constraints["params"] > 0 for t in over)
    assert all(p <= 12_000 for p in trainer.calls)  # nothing over budget was trained
    trained = [t for t in done if not t.user_attrs["infeasible"]]
    assert len(trained) == 3  # infeasible trials do not count toward n_trials
    assert len(trainer.calls) == sum(t.user_attrs.get("duplicate_of") is None for t in trained)


def test_an_identical_network_trains_once_and_does_not_count(tmp_path):
    # sr 0.25 and 0.26 round to the same squeeze widths at these sizes: one network, two spellings.
    space = dict(BASE["space"], base_e=16, sr={"choices": [0.25, 0.26]})
    cfg = config(space=space, n_trials=2)
    s = Space.from_config(cfg)
    assert s.spec({"sr": 0.25}) != s.spec({"sr": 0.26})
    assert spec_id(s.spec({"sr": 0.25})) == spec_id(s.spec({"sr": 0.26}))  # 16 * 0.26 rounds to 4
    trainer = FakeTrainer()
    summary = run(cfg, str(tmp_path / "s.journal"), trainer)
    done = trials(str(tmp_path / "s.journal"))
    # One network: trained once; every later proposal is a duplicate that copies its result and
    # does not take a place of n_trials, until 20 in a row say the space is exhausted.
    assert len(trainer.calls) == 1 and len(done) == 1 + 20
    first, *dups = done
    assert all(d.user_attrs["duplicate_of"] == first.number for d in dups)
    assert dups[0].values == first.values and dups[0].user_attrs["curve"] == first.user_attrs["curve"]
    assert st.count_done(optuna.load_study(study_name="t", storage=st.open_storage(str(tmp_path / "s.journal")))) == 1
    assert "space looks exhausted" in summary.exhausted and summary.trained == 1


def test_a_grid_counts_each_network_once(tmp_path):
    space = dict(BASE["space"], base_e=16, sr={"choices": [0.25, 0.26, 0.5]})  # two networks, three points
    trainer = FakeTrainer()
    run(config(space=space, n_trials=5, sampler={"name": "grid"}), str(tmp_path / "s.journal"), trainer)
    done = trials(str(tmp_path / "s.journal"))
    assert len(trainer.calls) == 2 and sum(t.user_attrs.get("duplicate_of") is None for t in done) == 2


def test_ctrl_c_finalises_the_trial_and_rerun_resumes(tmp_path):
    url = str(tmp_path / "s.journal")
    cfg = config(n_trials=3, sampler={"name": "grid"},
                 space=dict(BASE["space"], base_e={"choices": [16, 24, 32, 40, 48, 56, 64]}))
    summary = run(cfg, url, FakeTrainer(interrupt_on_call=2))
    assert summary.interrupted
    done = trials(url)
    states = [t.state for t in done]
    assert TrialState.RUNNING not in states
    assert states[:2] == [TrialState.COMPLETE, TrialState.FAIL] and done[1].user_attrs["fail_reason"] == "interrupted"
    assert states[2] == TrialState.WAITING and done[2].user_attrs["retry_of"] == 1
    trainer = FakeTrainer()
    run(cfg, url, trainer)
    done = trials(url)
    assert sum(t.state == TrialState.COMPLETE for t in done) == 3  # the first run's trial counted
    assert len(trainer.calls) == 2
    assert done[2].state == TrialState.COMPLETE and done[2].params == done[1].params


WORKER = """
import sys, types, time
sys.path.insert(0, {tests!r})
from test_study import FakeTrainer, config, run
run(config(n_trials=2), {url!r}, FakeTrainer(sleep_s=60))
"""


def test_a_killed_workers_trial_is_failed_and_retried(tmp_path):
    url = str(tmp_path / "s.journal")
    script = WORKER.format(tests=str(Path(__file__).parent), url=url)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until the worker has claimed a trial
        if os.path.exists(url) and "explorer:pid" in Path(url).read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the worker never started a trial")
    time.sleep(1.0)  # mid-trial: the fake trainer sleeps 60 s per epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t.state for t in trials(url)] == [TrialState.RUNNING]
    trainer = FakeTrainer()
    run(config(n_trials=2), url, trainer)
    done = trials(url)
    assert done[0].state == TrialState.FAIL and "is gone" in done[0].user_attrs["fail_reason"]
    assert done[1].state == TrialState.COMPLETE and done[1].params == done[0].params
    assert done[1].user_attrs["retry_of"] == 0
    assert sum(t.state == TrialState.COMPLETE for t in done) == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_real_signal_mid_trial_leaves_nothing_running(tmp_path, sig):
    url = str(tmp_path / "s.journal")
    script = WORKER.format(tests=str(Path(__file__).parent), url=url)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.exists(url) and "explorer:pid" in Path(url).read_text()):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0  # run() returned: the interrupt was handled, not fatal
    states = [(t.state, t.user_attrs.get("fail_reason")) for t in trials(url)]
    assert states == [(TrialState.FAIL, "interrupted"), (TrialState.WAITING, None)]


def test_same_name_with_another_space_is_refused_and_nothing_written(tmp_path):
    url = str(tmp_path / "s.journal")
    run(config(n_trials=1), url, FakeTrainer())
    size = os.path.getsize(url)
    other = config(space=dict(BASE["space"], base_e={"choices": [16, 128]}))
    with pytest.raises(UserError, match=r"different space \(space.base_e"):
        run(other, url, FakeTrainer())
    assert os.path.getsize(url) == size


def test_size_aware_early_stop_prunes_laggards_of_similar_size(tmp_path):
    # Networks of 10k-30k parameters (base_e 32, sr >= 0.5) are made to lag their peers.
    def acc(params, epoch):
        return 0.1 if 10_000 < params < 30_000 else 0.5 + 0.01 * epoch

    space = dict(BASE["space"], base_e={"choices": [16, 32]}, sr={"choices": [0.25, 0.5, 0.75, 1.0]})
    sizes = [estimate_cost(SqueezeSpec(stem="cifar", stem_width=16, batchnorm=True, n_fire=4, pools=(1, 3),
                                       incr_e=0, base_e=b, sr=sr, num_classes=10, input_size=16)).params
             for b in (16, 32) for sr in (0.25, 0.5, 0.75, 1.0)]
    assert sum(10_000 < p < 30_000 for p in sizes) == 3  # the laggards; 5 others within 4x of them
    cfg = config(space=space, sampler={"name": "grid"}, n_trials=8, trainer={"epochs": 4},
                 early_stop={"warmup_epochs": 1, "min_trials": 2, "size_factor": 4.0})
    trainer = FakeTrainer(acc=acc)
    run(cfg, str(tmp_path / "s.journal"), trainer)
    done = trials(str(tmp_path / "s.journal"))
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    assert pruned, "a 0.1 trial among 0.5 peers of similar size must be stopped"
    for t in pruned:
        assert 10_000 < t.user_attrs["params"] < 30_000
        assert "below the 0.5 quantile" in t.user_attrs["pruned_reason"] and t.user_attrs["end"] == "pruned"
        assert len(t.user_attrs["curve"]) == 2  # stopped after epoch 2 of 4
    assert all(t.state == TrialState.COMPLETE for t in done if not 10_000 < t.user_attrs["params"] < 30_000)


def test_single_objective_studies_use_optunas_pruner(tmp_path):
    def acc(params, epoch):
        return 0.05 if params < 6000 else 0.5

    cfg = config(objectives=["val_acc"], sampler={"name": "grid"}, n_trials=6, trainer={"epochs": 3},
                 space=dict(BASE["space"], base_e={"choices": [16, 32, 64]}, sr={"choices": [0.25, 0.5]}),
                 early_stop={"warmup_epochs": 1, "min_trials": 1})
    run(cfg, str(tmp_path / "s.journal"), FakeTrainer(acc=acc))
    done = trials(str(tmp_path / "s.journal"))
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["params"] < 6000 for t in pruned)
    assert all("MedianPruner" in t.user_attrs["pruned_reason"] for t in pruned)
    assert all(t.intermediate_values for t in done if t.state != TrialState.FAIL)


def test_a_cost_disagreement_fails_the_trial_loudly(tmp_path, monkeypatch):
    import explorer.study.objective as objective_mod

    real = objective_mod.estimate_cost
    monkeypatch.setattr(objective_mod, "estimate_cost",
                        lambda spec: real(spec).__class__(**{**real(spec).__dict__, "params": real(spec).params + 1}))
    url = str(tmp_path / "s.journal")
    with pytest.raises(CostMismatch, match="fvcore counts"):
        run(config(n_trials=1), url, FakeTrainer())
    (t,) = trials(url)
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("cost mismatch")


def test_run_with_storage_flag_points_the_next_steps_at_it(tmp_path, cifar_archive, monkeypatch, capsys):
    # the study file's own storage is another one: `explorer status e2e.yaml` would miss it
    monkeypatch.chdir(tmp_path)
    study = dict(BASE, name="e2e", trainer={"epochs": 1, "batch_size": 32}, n_trials=1)
    (tmp_path / "e2e.yaml").write_text(json.dumps(study))
    journal = tmp_path / "elsewhere" / "s.journal"
    assert main(["run", "e2e.yaml", "--storage", str(journal), "--data", str(cifar_archive),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"next: explorer status e2e --storage {journal}" in out
    assert f"explorer export e2e --storage {journal} --pareto" in out
    assert main(["status", "e2e", "--storage", str(journal)]) == 0  # the hint works
    assert "trials: 1 network trained" in capsys.readouterr().out


# --- checked before anything is written ------------------------------------------------------

def test_budgets_are_checked_at_the_datas_number_of_classes(tmp_path):
    # The smallest network of the space meets the budget with 10 classes but not with 100
    # (the final conv grows): refused before any file exists, not 1,000 over-budget trials.
    space = Space.from_config(config())
    smallest10 = min(estimate_cost(space.spec(p)).params for p in space.corners())
    smallest100 = min(estimate_cost(Space.from_config(config(), 100).spec(p)).params for p in space.corners())
    assert smallest10 < smallest100
    cfg = config(budgets={"params": (smallest10 + smallest100) // 2})
    url = str(tmp_path / "s.journal")
    with pytest.raises(UserError, match="no point of the search space meets the budgets"):
        run_study(cfg, storage_url=url, trainer=FakeTrainer(), data=types.SimpleNamespace(num_classes=100),
                  device="cpu", progress=False, out=open(os.devnull, "w"))
    assert not Path(url).exists()


def test_a_bad_device_is_refused_before_the_study_is_created(tmp_path, capsys):
    url = str(tmp_path / "s.journal")
    with pytest.raises(UserError, match="--device 'bogus': not a device"):
        run_study(config(), storage_url=url, trainer=FakeTrainer(), data=DATA, device="bogus",
                  progress=False, out=open(os.devnull, "w"))
    assert not Path(url).exists()


def test_resuming_with_more_trials_stores_them_for_workers(tmp_path):
    from explorer.study.loop import join_study

    url = str(tmp_path / "s.journal")
    run(config(n_trials=2, sampler={"name": "random", "seed": 0}), url, FakeTrainer())
    run(config(n_trials=2, sampler={"name": "tpe", "seed": 0}), url, FakeTrainer(), n_trials=3)
    _, stored = join_study(url, "t")
    assert stored.n_trials == 3 and stored.sampler.name == "tpe"  # a worker joining now runs to 3
    assert sum(t.state == TrialState.COMPLETE for t in trials(url)) == 3


def test_two_runs_creating_one_study_at_once_both_work(tmp_path, monkeypatch):
    # the loser of the create race resumes the study instead of a DuplicatedStudyError traceback
    url = str(tmp_path / "s.journal")
    run(config(n_trials=1), url, FakeTrainer())
    import explorer.study.loop as study_mod

    monkeypatch.setattr(study_mod.store, "study_names", lambda storage: [])  # "not there yet" when we looked
    summary = run(config(n_trials=2), url, FakeTrainer())
    assert summary.ran == 1 and sum(t.state == TrialState.COMPLETE for t in trials(url)) == 2


def test_single_objective_quantile_prunes_below_that_quantile():
    import optuna

    from explorer.study.loop import make_pruner

    cfg = config(objectives=["val_acc"], sampler={"name": "tpe", "seed": 0},
                 early_stop={"warmup_epochs": 0, "min_trials": 4, "quantile": 0.25})
    pruner = make_pruner(cfg)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for acc in (0.1, 0.2, 0.3, 0.4):  # finished peers; their 25% quantile is 0.175
        t = study.ask()
        t.report(acc, 0)
        study.tell(t, acc)
    keep, drop = study.ask(), study.ask()
    keep.report(0.30, 0)  # above the bottom quarter: must go on (the old setting pruned it)
    drop.report(0.15, 0)  # in the bottom quarter
    assert (keep.should_prune(), drop.should_prune()) == (False, True)


def test_a_grid_with_over_budget_points_runs_each_point_once(tmp_path):
    # base_e 16 / 32 / 64 x sr 0.25 / 0.5 = 6 points; a budget between the costs of base_e 32
    # and 64 leaves 4 trainable points: the run stops after them instead of re-running some.
    space = Space.from_config(config(sampler={"name": "grid"}))
    params = {(p["base_e"], p["sr"]): estimate_cost(space.spec(p)).params for p in space.grid_points()}
    budget = (max(v for k, v in params.items() if k[0] == 32) + min(v for k, v in params.items() if k[0] == 64)) // 2
    cfg = config(sampler={"name": "grid"}, n_trials=None, budgets={"params": budget})
    url = str(tmp_path / "s.journal")
    trainer = FakeTrainer()
    run(cfg, url, trainer)
    done = trials(url)
    trained = [t for t in done if not t.user_attrs.get("infeasible")]
    assert len(trainer.calls) == 4 and len(trained) == 4  # it stops once the 4 are done
    assert len({(t.params["base_e"], t.params["sr"]) for t in trained}) == 4
    assert not any(t.user_attrs.get("duplicate_of") is not None for t in done)


def test_runs_in_one_process_leave_no_heartbeat_threads(tmp_path):
    import threading

    def beats() -> int:  # Python names a thread after its target: "Thread-7 (_beat)"
        return sum("_beat" in t.name for t in threading.enumerate())

    before = beats()
    for i in range(3):
        run(config(n_trials=1), str(tmp_path / f"s{i}.journal"), FakeTrainer())
    time.sleep(0.2)  # the stopped threads wake and return
    assert beats() == before


def test_a_streak_of_infeasible_or_failed_trials_gives_up(monkeypatch):
    import io

    from explorer.study import loop

    monkeypatch.setattr(loop, "MAX_INFEASIBLE_STREAK", 3)
    summary, lines = loop.RunSummary("t", ""), io.StringIO()
    moved = []
    tally = loop._Tally(summary, types.SimpleNamespace(update=moved.append), lines)

    def finished(infeasible: bool):
        return optuna.trial.create_trial(value=0.5, params={}, distributions={}, user_attrs={"infeasible": infeasible})

    for infeasible in (True, True, False, True, True):  # a feasible trial ends the streak
        tally(None, finished(infeasible))
    assert not tally.gave_up() and summary.ran == 5 and summary.trained == 1 and moved == [1]
    tally(None, finished(True))
    assert tally.gave_up() and summary.gave_up.startswith("stopped after 3 trials in a row")
    assert lines.getvalue().count("\n") == 7  # six trial lines and the reason

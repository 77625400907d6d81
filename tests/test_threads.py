"""Threads chosen, not inherited: the study's `trainer.threads` reaches torch and every record."""

from __future__ import annotations

import json
import os

import optuna
import pytest
import torch

from explorer import store as st
from explorer.commands import main
from explorer.study.config import StudyConfig
from explorer.study.loop import run_study
from explorer.training.train import TrainResult

import test_study
from test_study import DATA

# test_study's study, with one epoch and two trials
BASE = {**test_study.BASE, "trainer": {**test_study.BASE["trainer"], "epochs": 1}, "n_trials": 2}


class Recorder:
    """A fake trainer that records the keyword arguments it was given and torch's threads."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, model, data, *, epochs, on_epoch_end=None, **kw):
        self.seen.append(kw)
        res = TrainResult(val_acc=[0.5], val_loss=[1.0], final_acc=0.5, best_acc=0.5, seed=kw["seed"])
        return res


def run(cfg: StudyConfig, url: str, trainer):
    return run_study(cfg, storage_url=url, trainer=trainer, data=DATA, device="cpu", progress=False,
                     out=open(os.devnull, "w"))


def stored(url: str):
    return optuna.load_study(study_name="t", storage=st.open_storage(url))


@pytest.mark.parametrize("threads", [None, 2])
def test_the_thread_setting_reaches_the_trainer_and_is_recorded(tmp_path, threads):
    trainer = {**BASE["trainer"], **({"threads": threads} if threads else {})}
    url = str(tmp_path / "s.journal")
    rec = Recorder()
    run(StudyConfig.from_dict({**BASE, "trainer": trainer}), url, rec)
    want = threads or 1  # the default is one thread per trial process, whatever the machine has
    assert [kw["threads"] for kw in rec.seen] == [want, want]
    study = stored(url)
    assert [t.user_attrs["threads"] for t in study.get_trials()] == [want, want]
    assert study.user_attrs["config"]["trainer"]["threads"] == want


def test_train_runs_on_the_threads_it_is_given(tmp_path):
    from explorer import SqueezeSpec, build_model
    from explorer.training.data import load_data
    from explorer.training.train import train

    data = load_data("synthetic", per_class=4, val_per_class=2, resolution=8, cache_dir=tmp_path)
    spec = SqueezeSpec(base_e=8, incr_e=8, n_fire=2, stem="cifar", stem_width=8, pools=(0, 1),
                       batchnorm=True, dropout=0.0, num_classes=10, input_size=8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train(build_model(spec), data, epochs=1, batch_size=8, lr=0.2, label_smoothing=0.1, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_bad_thread_count_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**BASE, "trainer": {**BASE["trainer"], "threads": 0}}))
    assert main(["run", str(path), "--storage", str(tmp_path / "s.journal"), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trainer.threads" in err and "[1, 1024]" in err, err
    path.write_text(json.dumps(BASE))
    assert main(["run", str(path), "--storage", str(tmp_path / "s.journal"), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads=0" in err, err
    assert not (tmp_path / "s.journal").exists()


def test_a_resumed_run_with_another_thread_count_is_refused(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(BASE))
    url = str(tmp_path / "s.journal")
    run(StudyConfig.from_dict(BASE), url, Recorder())
    assert main(["run", str(path), "--storage", url, "--data", "synthetic", "--threads", "2"]) == 2
    err = capsys.readouterr().err
    assert "different trainer (trainer.threads: stored 1, file 2)" in err, err


def test_the_command_keeps_idle_openmp_threads_from_spinning(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    main([])  # no command: prints the help
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own choice stands
    main([])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_exports_carry_the_trials_thread_count():
    from explorer.results.exportfile import trial_doc

    spec = {"base_e": 16, "incr_e": 0, "n_fire": 4, "stem": "cifar", "stem_width": 16, "pools": [1, 3],
            "batchnorm": True, "num_classes": 10, "input_size": 16}
    doc = trial_doc(study="t", number=0, storage="x", state="COMPLETE", attrs={"spec": spec, "threads": 3},
                    config={"trainer": {"epochs": 1, "threads": 1}}, objectives=None, selection={})
    assert doc["provenance"]["trainer"] == {"epochs": 1, "threads": 3}


def test_same_file_seed_and_threads_give_bit_identical_accuracies_busy_or_not(tmp_path):
    # issue 12.4: the machine's load must not change a trial's result (only the thread count,
    # the torch version and the device may). Two runs of one 2-trial study with the real
    # trainer, the second beside two busy processes; accuracies and curves compared exactly.
    import subprocess
    import sys

    from explorer.training.data import load_data

    cfg = StudyConfig.from_dict({**BASE, "data": {"source": "synthetic", "per_class": 16, "val_per_class": 8,
                                                  "resolution": 16},
                                 "trainer": {"epochs": 2, "batch_size": 16, "seed": 0, "lr": 0.05},
                                 "check_fvcore": False})
    data = load_data("synthetic", per_class=16, val_per_class=8, resolution=16, cache_dir=tmp_path / "cache")

    def results(url: str):
        run_study(cfg, storage_url=url, data=data, device="cpu", progress=False, out=open(os.devnull, "w"))
        return [(t.params, t.values, t.user_attrs["curve"], t.user_attrs["val_loss"]) for t in stored(url).get_trials()]

    quiet = results(str(tmp_path / "quiet.journal"))
    hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
    try:
        busy = results(str(tmp_path / "busy.journal"))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert len(quiet) == 2 and quiet == busy
    assert quiet[0][2] != quiet[1][2]  # two networks that trained (not one result twice)

"""`explorer run --jobs N`: N trial processes on one study, exactly n_trials, Ctrl-C leaves nothing RUNNING.

Real `explorer run` subprocesses on the synthetic source at 8 px (a trial is about a
second on 2 busy cores; the Ctrl-C test's trials are made long enough to be caught mid-way).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from explorer import store as st
from explorer.core.errors import UserError
from explorer.study.config import StudyConfig
from explorer.study.jobs import parse_jobs, resolve_jobs

REPO = Path(__file__).resolve().parents[1]
STUDY = {
    "name": "jobs",
    "data": {"source": "synthetic", "per_class": 8, "val_per_class": 2, "resolution": 8},
    "trainer": {"epochs": 1, "batch_size": 16, "seed": 0},
    "space": {"stem": "cifar", "stem_width": {"choices": [8, 16]}, "base_e": {"choices": [8, 16, 24]},
              "incr_e": 8, "pct_3x3": {"choices": [0.25, 0.5, 0.75]}, "sr": {"choices": [0.25, 0.5, 0.75]},
              "n_fire": 2, "pools": [0, 1], "batchnorm": True, "dropout": 0.0},
    "objectives": ["val_acc", "params"], "sampler": {"name": "random", "seed": 0},
    "check_fvcore": False, "n_trials": 6,
}


def start(tmp_path: Path, study: dict, *args: str) -> subprocess.Popen:
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "EXPLORER_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-m", "explorer", "run", str(path), "--no-progress", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored(tmp_path: Path, name: str = "jobs"):
    storage = st.open_storage(str(tmp_path / "runs" / f"{name}.journal"))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_jobs_2_finish_exactly_n_trials_from_both_processes(tmp_path):
    proc = start(tmp_path, STUDY, "--jobs", "2")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    trials = stored(tmp_path)
    counted = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None]
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.system_attrs["explorer:pid"] for t in trials}
    assert len(pids) == 2 and proc.pid not in pids  # two children trained, the parent watched
    assert all(t.user_attrs["threads"] == 1 for t in trials)
    # one report covers the whole run: a line per trial and the summary, from the parent
    assert sorted(int(line.split()[0][1:]) for line in out.splitlines() if line.startswith("#")) == \
        [t.number for t in trials]
    dups = len(trials) - len(counted)
    words = "6 networks trained" + (f", {dups} duplicate{'s' if dups > 1 else ''} (reused)" if dups else "")
    assert f"ran {len(trials)} trials in " in out and f"s: {words}; storage" in out
    assert "2 trial processes on cpu, 1 thread(s) each" in out
    # the same study in one process: the same point and the same accuracy for every trial number
    from explorer.study.loop import run_study
    from explorer.training.data import load_data

    d = STUDY["data"]
    data = load_data("synthetic", per_class=d["per_class"], val_per_class=d["val_per_class"],
                     resolution=d["resolution"], cache_dir=tmp_path / "cache")
    url = str(tmp_path / "one.journal")
    run_study(StudyConfig.from_dict(STUDY), storage_url=url, data=data, device="cpu", progress=False,
              out=open(os.devnull, "w"))
    one = optuna.load_study(study_name="jobs", storage=st.open_storage(url)).get_trials()
    assert [(t.params, t.values) for t in one] == [(t.params, t.values) for t in trials]


def test_ctrl_c_with_jobs_2_leaves_no_running_trial(tmp_path):
    slow = {**STUDY, "trainer": {**STUDY["trainer"], "epochs": 1000, "batch_size": 8}}  # minutes per trial
    proc = start(tmp_path, slow, "--jobs", "2")
    journal = tmp_path / "runs" / "jobs.journal"
    deadline = time.time() + 180
    while time.time() < deadline:  # wait until both children are mid-trial
        if journal.exists() and journal.read_text().count('"explorer:pid"') >= 2:
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the children never started two trials:\n" + proc.stderr.read())
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # the parent only, as a terminal's Ctrl-C reaches it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    trials = stored(tmp_path)
    assert TrialState.RUNNING not in [t.state for t in trials]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    why = [(t.number, t.state.name, t.user_attrs.get("fail_reason"), t.system_attrs) for t in trials]
    assert len(failed) == 2 and all(t.user_attrs["fail_reason"] == "interrupted" for t in failed), (why, err)
    assert sorted(t.user_attrs.get("retry_of") for t in trials if t.state == TrialState.WAITING) == \
        sorted(t.number for t in failed)


def test_jobs_values():
    cfg = StudyConfig.from_dict(STUDY)
    assert parse_jobs("auto") == "auto" and parse_jobs("3") == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UserError, match="--jobs"):
            parse_jobs(bad)
    assert resolve_jobs(None, cfg, "cpu") == 1 and resolve_jobs(3, cfg, "cpu") == 3
    assert resolve_jobs("auto", cfg, "cpu") == len(os.sched_getaffinity(0))
    two = StudyConfig.from_dict({**STUDY, "trainer": {**STUDY["trainer"], "threads": 2}, "jobs": "auto"})
    assert two.jobs == "auto" and resolve_jobs("auto", two, "cpu") == max(1, len(os.sched_getaffinity(0)) // 2)
    with pytest.raises(UserError, match="jobs"):
        StudyConfig.from_dict({**STUDY, "jobs": 0})

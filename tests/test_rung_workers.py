"""A multi-fidelity study on PostgreSQL with three `explorer worker` processes, one killed with -9
mid-rung: counts exact, each network judged once per rung, the killed trial's retry following the
decision its first run got.

Needs EXPLORER_TEST_PG_URL (skipped without it), as tests/test_workers.py, whose tiny study and
worker helpers this reuses (real training on 4 images per class at 8 px, about a second a trial).
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_workers import PG_URL, _open, _trials, assert_clean, finish, needs_pg, start_worker, study_dict  # noqa: E402

SCHEDULE = {"rungs": [1, 2], "keep": "1/3"}
# The victim claims another host (the survivors must rely on Optuna's heartbeat) and, once its trial
# has been judged at rung 1 and sent on, sleeps inside epoch 2: killed there, mid-rung.
VICTIM = ("import socket, sys, time; socket.gethostname = lambda: 'elsewhere'\n"
          "import explorer.training.train as t\n"
          "real = t.train\n"
          "def slow(*a, on_epoch_end=None, **k):\n"
          "    def cb(epoch, metrics):\n"
          "        stop = on_epoch_end(epoch, metrics)\n"
          "        if epoch == 1 and not stop:\n"
          "            time.sleep(60)\n"
          "        return stop\n"
          "    return real(*a, on_epoch_end=cb, **k)\n"
          "t.train = slow\n"
          "from explorer.commands import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture
def rung_study(warm_cache):
    """A uniquely named scheduled study on the PostgreSQL server (deleted afterwards)."""
    import optuna

    from explorer.study.config import StudyConfig
    from explorer.study.loop import open_study

    name = f"test-rungs-{uuid.uuid4().hex[:10]}"
    d = study_dict(name, 8)
    d["trainer"] = dict(d["trainer"], epochs=3)
    open_study(StudyConfig.from_dict({**d, "schedule": SCHEDULE}), PG_URL)
    yield name
    optuna.delete_study(study_name=name, storage=_open(PG_URL))


@pytest.fixture(scope="module")
def warm_cache(cifar_archive):
    from explorer.training.data import load_data

    load_data(str(cifar_archive), per_class=4, val_per_class=2, resolution=8)
    return cifar_archive


@needs_pg
def test_three_workers_one_killed_mid_rung(rung_study, tmp_path):
    from optuna.trial import TrialState

    name, n = rung_study, 8
    victim = start_worker(name, PG_URL, tmp_path, victim=True, code=VICTIM)
    try:
        killed = _wait_for_judged(name, timeout_s=90)
        survivors = [start_worker(name, PG_URL, tmp_path) for _ in range(2)]
        time.sleep(1.5)
        assert _trial(name, killed.number).state == TrialState.RUNNING  # still inside epoch 2
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        results = finish(survivors)
    finally:
        victim.kill()
    assert_clean(results)
    trials = {t.number: t for t in _trials(PG_URL, name)}
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].state != TrialState.FAIL
    first = retries[0].user_attrs["rungs"][0]
    assert (first["epoch"], first["follows"], first["go_on"]) == (1, killed.number, True)

    own = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
           and t.user_attrs.get("duplicate_of") is None]
    assert len(own) == n, {k: t.state.name for k, t in trials.items()}  # exactly n trained, all workers
    complete = [t for t in own if t.state == TrialState.COMPLETE]
    stopped = [t for t in own if t.user_attrs.get("end") == "rung"]
    assert len(complete) + len(stopped) == n
    for t in complete:  # judged at both rungs, sent on at both
        assert [(e["epoch"], e["go_on"]) for e in t.user_attrs["rungs"]] == [(1, True), (2, True)]
    for t in stopped:  # judged up to the rung it stopped at, stopped there
        entries = t.user_attrs["rungs"]
        assert len(entries) == t.user_attrs["rung"] == len(t.user_attrs["curve"])
        assert [e["go_on"] for e in entries] == [True] * (len(entries) - 1) + [False]

    # one decision per network and rung, whatever trained it (the killed trial's included)
    judged = Counter((t.user_attrs["spec_id"], e["epoch"]) for t in trials.values()
                     if t.user_attrs.get("duplicate_of") is None
                     for e in t.user_attrs.get("rungs", []) if e.get("follows") is None)
    assert max(judged.values()) == 1, judged
    for t in trials.values():  # and no trial recorded a rung twice
        epochs = [e["epoch"] for e in t.user_attrs.get("rungs", [])]
        assert len(epochs) == len(set(epochs)), (t.number, epochs)

    from explorer.commands.status import report
    from explorer.store.table import read_trials

    text = report(read_trials(_open(PG_URL), name), name, "pg", ["val_acc", "params"])
    by_rung = Counter(t.user_attrs["rung"] for t in stopped)
    assert f"trials: {len(complete)} network" in text and "1 failed" in text
    for rung, count in by_rung.items():
        assert f"{count} stopped at rung {rung}" in text, text


def _wait_for_judged(name: str, *, timeout_s: float):
    """The victim's RUNNING trial once it has its rung-1 entry (it sleeps in epoch 2 then)."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for t in _trials(PG_URL, name):
            if (t.state == TrialState.RUNNING and t.system_attrs.get("explorer:host") == "elsewhere"
                    and t.user_attrs.get("rungs")):
                return t
        time.sleep(0.2)
    raise AssertionError(f"the victim's trial was not judged at rung 1 within {timeout_s}s")


def _trial(name: str, number: int):
    return next(t for t in _trials(PG_URL, name) if t.number == number)

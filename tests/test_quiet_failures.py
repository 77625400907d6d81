"""Handled conditions print one line, never Optuna's failed-trial warning with its traceback.

Ctrl-C / SIGTERM mid-trial and a sampled combination that is no valid network are handled
(the trial is failed with its reason, and queued again after an interrupt), so the
~45-line (interrupt) and 15-line (invalid spec) tracebacks Optuna logs for them are noise.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from explorer import store as st

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).parent
RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_study import FakeTrainer, config, run
run(config(n_trials=2), {url!r}, FakeTrainer(sleep_s=60))
"""


def _trials(url: str):
    return optuna.load_study(study_name="t", storage=st.open_storage(url)).get_trials()


def test_sigterm_mid_trial_prints_no_traceback(tmp_path):
    url = str(tmp_path / "s.journal")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUN.format(tests=str(TESTS), url=url)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.exists(url) and "explorer:pid" in Path(url).read_text()):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in stderr and "failed with" not in stderr, stderr
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in _trials(url)] == [
        (TrialState.FAIL, "interrupted"), (TrialState.WAITING, None)]


class _Records(logging.Handler):
    """Every record that reaches Optuna's library logger (its own handler's stream is bound
    at import, before pytest's capture, so capfd cannot be trusted to see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_invalid_spec_trial_is_one_fail_line(tmp_path):
    import io

    sys.path.insert(0, str(TESTS))
    from explorer.study.loop import open_study, run_study

    from test_study import BASE, FakeTrainer, config

    # n_fire 2 with a pool after Fire module 3 is no network; every choice is valid with another
    # (so validation accepts the space). The invalid pair is queued first, whatever the sampler does.
    space = dict(BASE["space"], base_e=16, sr=0.25, n_fire={"choices": [2, 4]},
                 pools={"choices": [[1, 3], [0, 1]]})
    cfg = config(space=space, n_trials=2)
    open_study(cfg, str(tmp_path / "s.journal")).enqueue_trial({"n_fire": 2, "pools": "1,3"})
    out, seen = io.StringIO(), _Records()
    logging.getLogger("optuna").addHandler(seen)
    try:
        run_study(cfg, storage_url=str(tmp_path / "s.journal"), trainer=FakeTrainer(), data=_Data(),
                  device="cpu", progress=False, out=out)
    finally:
        logging.getLogger("optuna").removeHandler(seen)
    failed = [t for t in _trials(str(tmp_path / "s.journal")) if t.state == TrialState.FAIL]
    # the queued pair fails; the sampler may propose it again (invalid trials take no place of n_trials)
    assert failed and all(t.params == {"n_fire": 2, "pools": "1,3"} for t in failed), failed
    lines = [ln for ln in out.getvalue().splitlines() if " FAIL " in ln]
    assert len(lines) == len(failed) and all("invalid spec: pools" in ln for ln in lines), out.getvalue()
    warned = [r.getMessage() for r in seen.records if r.levelno >= logging.WARNING]
    assert warned == [], warned


class _Data:
    num_classes = 10

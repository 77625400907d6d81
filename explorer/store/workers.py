"""Never lose a trial: who runs each trial, its heartbeat, and failing and retrying dead workers' trials.

Each trial records its worker (host, pid, pid start time) as system attrs and, on a
journal file (which has no Optuna heartbeat), a heartbeat every 30 s. A RUNNING trial
whose worker is gone (a dead pid on this host, or silent for 120 s) is marked FAIL and its
parameters enqueued again (`retry_of`); database storages also use Optuna's heartbeat,
whose stale-trial callback (`retry_stale`) enqueues the retry. After Ctrl-C a worker
fails and requeues its own running trial (`finalise_own_running`). Trials cut by the
time_budget_s guard are retried only when asked (`requeue_cut`, `explorer run --retry-cut`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from explorer.core.util import pid_alive
from explorer.store import _optuna
from explorer.store import attrs as A
from explorer.store.outcome import outcome_key


def proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class Worker:
    """This process as the system attrs of the trials it runs name it."""

    host: str = field(default_factory=lambda: socket.gethostname())  # looked up late: tests fake it
    pid: int = field(default_factory=lambda: os.getpid())
    pid_start: str | None = None

    @classmethod
    def this(cls) -> Worker:
        """The current process."""
        return cls(pid_start=proc_start(os.getpid()))

    def claim_attrs(self, heartbeat: bool) -> dict:
        """The system attrs that mark a trial as this worker's (a first heartbeat on journals)."""
        attrs = {A.WORKER_HOST: self.host, A.WORKER_PID: self.pid, A.WORKER_START: self.pid_start}
        return {**attrs, A.HEARTBEAT: time.time()} if heartbeat else attrs


def _alive(pid: int, start: str | None) -> bool:
    """The process `pid` still runs and (where /proc tells) is the one that started at `start`."""
    if not pid_alive(pid):
        return False
    if start is not None and os.path.exists("/proc"):
        return proc_start(pid) == start
    return True


def stale_reason(trial, now: float, grace_s: float, heartbeats: bool) -> str | None:
    """Why a RUNNING trial's worker is gone (dead pid on this host, or no heartbeat), or None."""
    sa = trial.system_attrs
    host, pid = sa.get(A.WORKER_HOST), sa.get(A.WORKER_PID)
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return None
        if not _alive(pid, sa.get(A.WORKER_START)):
            return f"worker pid {pid} on {host} is gone"
        return None
    if not heartbeats:
        return None
    beat = sa.get(A.HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else now)
    if now - beat > grace_s:
        return f"no heartbeat from {host or 'its worker'} for {now - beat:.0f}s"
    return None


def uses_own_heartbeat(storage) -> bool:
    """True for journal files: no Optuna heartbeat there, so explorer writes its own."""
    from optuna.storages import JournalStorage

    return isinstance(storage, JournalStorage)


def retry_trial(study, trial, reason: str) -> None:
    """Enqueue the trial's parameters again, remembering which trial it retries."""
    if not trial.params:
        return
    origin = trial.user_attrs.get(A.RETRY_OF, trial.number)
    study.enqueue_trial(dict(trial.params), user_attrs={A.RETRY_OF: origin, A.RETRY_REASON: reason})


def state_key(trial) -> str:
    """A finished trial's key in a run summary's counts (explorer.store.outcome.outcome_key)."""
    return outcome_key(trial.state.name, trial.user_attrs)


def is_cut(trial) -> bool:
    """The trial ended on the time_budget_s guard (fewer epochs than its recipe): not comparable."""
    return trial.user_attrs.get(A.END) == A.CUT


def cut_retried(trials) -> set[int]:
    """Numbers of cut trials that a --retry-cut retry replaces (it takes their place in the count)."""
    return {t.user_attrs.get(A.RETRY_OF) for t in trials if t.user_attrs.get(A.RETRY_REASON) == A.CUT_RETRY}


def requeue_cut(study) -> list[int]:
    """Enqueue the params of every finished cut trial not yet retried; their numbers (call under the lock)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = cut_retried(trials)
    cut = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and is_cut(t)
           and t.number not in done and t.params]
    for t in cut:
        study.enqueue_trial(dict(t.params), user_attrs={A.RETRY_OF: t.number, A.RETRY_REASON: A.CUT_RETRY})
    return [t.number for t in cut]


def retry_stale(study, trial) -> None:
    """Optuna's heartbeat callback (database storages): a stale trial is retried."""
    retry_trial(study, trial, "no heartbeat")


def fail_and_retry(study, trial, reason: str, retry_reason: str) -> bool:
    """Mark a RUNNING trial FAIL with `reason` and enqueue it again; False if it had finished meanwhile."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage, tid = _optuna.study_storage(study), _optuna.trial_id(trial, study)
    try:
        storage.set_trial_user_attr(tid, A.FAIL_REASON, reason)
        storage.set_trial_state_values(tid, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False  # another worker got there first and retried it
    retry_trial(study, trial, retry_reason)
    return True


def running(study) -> list:
    """The study's RUNNING trials (FrozenTrials)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def fail_stale_trials(study, *, grace_s: float = A.GRACE_PERIOD_S) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL and enqueue them again; their numbers."""
    heartbeats, now = uses_own_heartbeat(_optuna.study_storage(study)), time.time()
    failed = []
    for t in running(study):
        reason = stale_reason(t, now, grace_s, heartbeats)
        if reason is not None and fail_and_retry(study, t, f"stale: {reason}", reason):
            failed.append(t.number)
    return failed


def finalise_own_running(study) -> None:
    """After Ctrl-C: no trial of this process may stay RUNNING (fail it, enqueue it again)."""
    me = Worker()
    for t in running(study):
        if t.system_attrs.get(A.WORKER_PID) == me.pid and t.system_attrs.get(A.WORKER_HOST) == me.host:
            fail_and_retry(study, t, "interrupted", "interrupted")


class Heartbeat:
    """One thread per worker writing the running trial's heartbeat every `interval` s (journal files)."""

    def __init__(self, storage, interval: float = A.HEARTBEAT_INTERVAL_S) -> None:
        self.storage, self.interval = storage, interval
        self.trial_id: int | None = None
        self._wake, self._stopped = threading.Event(), False
        threading.Thread(target=self._beat, daemon=True).start()

    def stop(self) -> None:
        """End the thread (a run in a long-lived process must not leave one per call)."""
        self._stopped = True
        self._wake.set()

    def _beat(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopped:
                return
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self.storage.set_trial_system_attr(trial_id, A.HEARTBEAT, time.time())
            except Exception:  # noqa: BLE001 - the trial finished meanwhile; nothing to keep alive
                pass

"""Claiming trials: exactly N finished trials, however many workers run a study.

Before asking Optuna for a trial a worker takes the study's lock (PostgreSQL: an advisory
lock, explorer.store.pg; a journal or SQLite file: a lock file beside it), fails and
requeues dead workers' trials, counts the trials that count (COMPLETE or PRUNED and within
budget; a trial cut by the time budget stops counting once `--retry-cut` queued its retry)
plus the RUNNING ones, and asks only while that sum is below N, inside the lock.
So workers together never start a trial that could make the count exceed N. Over-budget
and invalid trials, and duplicates (a network already trained, recorded with
`duplicate_of`), do not count, so they free their place for another trial. A worker
that finds every place taken waits (every `poll_s` seconds) instead of exiting: if another
worker dies, its RUNNING trial is failed after the heartbeat grace period and retried by
a waiting worker. `explorer run` and `explorer worker` both claim through `work()`.
Not covered: MySQL storages have no lock here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager

from explorer.core.util import defer_interrupts
from explorer.store import _optuna, pg
from explorer.store import attrs as A
from explorer.store.journal import StorageWriteError
from explorer.store.outage import DatabaseUnavailable
from explorer.store.urls import journal_path
from explorer.store.workers import cut_retried, fail_and_retry, fail_stale_trials, finalise_own_running, retry_trial


def study_lock(study, url: str | None) -> ContextManager[None]:
    """The lock every worker of this study takes around "count, then ask" (`url`: a journal's path)."""
    rdb = _optuna.rdb_of(_optuna.study_storage(study))
    if rdb is not None:
        dialect = rdb.engine.dialect.name
        if dialect == "postgresql":
            return pg.advisory_lock(rdb, _optuna.study_id(study), _optuna.rdb_outage(rdb))
        if dialect == "sqlite":
            return file_lock(Path(rdb.engine.url.database))
        return contextlib.nullcontext()
    if url is None:
        return contextlib.nullcontext()  # a journal whose path we were not given
    return file_lock(journal_path(url))


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on `path`.workers.lock (processes on this machine)."""
    import fcntl

    with open(f"{path}.workers.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tune_heartbeat(study, interval: int | None, grace: int | None) -> None:
    """Set Optuna's heartbeat on a database storage (opened with the defaults); journals: no-op."""
    rdb = _optuna.rdb_of(_optuna.study_storage(study))
    if rdb is not None and interval is not None:
        rdb.heartbeat_interval = interval
    if rdb is not None and grace is not None:
        rdb.grace_period = grace


def count_done(study) -> int:
    """Finished trials that count toward n_trials: trained (COMPLETE/PRUNED, feasible, not a duplicate)."""
    return claim_counts(study)[0]


def claim_counts(study) -> tuple[int, int]:
    """(trials that count as done, RUNNING trials) across every worker, from ONE read.

    Two reads would race with another worker finishing a trial in between (workers tell
    outside the lock): read "done" first and "running" second, and that trial is counted in
    neither, so one trial too many starts (seen on PostgreSQL with three workers).
    """
    return trial_counts(study.get_trials(deepcopy=False))


def trial_counts(trials) -> tuple[int, int]:
    """(done, RUNNING) among `trials`, counted as `claim_counts` counts them."""
    from optuna.trial import TrialState

    replaced = cut_retried(trials)  # a cut trial's retry (queued, running or done) takes its place
    done = running = 0
    for t in trials:
        if t.state == TrialState.RUNNING:
            running += 1
        elif (t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not t.user_attrs.get(A.INFEASIBLE)
              and t.number not in replaced and t.user_attrs.get(A.DUPLICATE_OF) is None):
            done += 1
    return done, running


def fail_stale(study) -> list[int]:
    """Fail and requeue trials of dead workers: same-machine pids, then Optuna's heartbeats."""
    import warnings

    import optuna

    failed = fail_stale_trials(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # database heartbeats; its callback requeues
    return failed


def stop_waiting(study) -> None:
    """After Ctrl-C: calls to an unreachable database fail at once instead of retrying."""
    outage = _optuna.rdb_outage(_optuna.rdb_of(_optuna.study_storage(study)))
    if outage is not None:
        outage.impatient = True


def interrupted(study, lock: Callable[[], ContextManager]) -> None:
    """No trial of this process stays RUNNING after Ctrl-C (failed and queued again, under the lock).

    While the database is unreachable, Ctrl-C does not wait for it (DatabaseUnavailable, one line).
    """
    stop_waiting(study)
    with defer_interrupts(), lock():
        finalise_own_running(study)


def work(study, objective: Callable, *, target: int | None, lock: Callable[[], ContextManager],
         poll_s: float = 2.0, timeout_s: float | None = None, catch: tuple = (),
         on_trial: Callable | None = None, stop: Callable[[], bool] | None = None, out=None) -> int:
    """Run trials until `target` count as done (all workers), the time is up, `stop()` or Ctrl-C.

    Returns how many trials this process ran. `objective` takes an Optuna trial.
    """
    out = out or sys.stdout
    # we print our own line for each of these
    _optuna.quiet_failures(KeyboardInterrupt, DatabaseUnavailable, StorageWriteError, *catch)
    started, ran, said_wait = time.monotonic(), 0, False
    while timeout_s is None or time.monotonic() - started < timeout_s:
        if stop is not None and stop():
            return ran
        with contextlib.ExitStack() as held:
            held.enter_context(lock())
            # Under the lock: failing a dead worker's trial and queueing its retry must look
            # atomic to the others, or one may count the freed place and start a new trial
            # while the retry stays WAITING for ever (seen in CI).
            fail_stale(study)
            done, running = claim_counts(study)
            if target is not None and done >= target:
                return ran
            if target is not None and done + running >= target:
                held.close()
                if not said_wait:
                    print(f"waiting: {done}/{target} done, {running} running elsewhere", file=out, flush=True)
                said_wait = True
                time.sleep(poll_s)  # a RUNNING trial may be a dead worker's: checked next round
                continue
            said_wait = False
            _run_one(study, objective, held, catch, on_trial, out)
            ran += 1
    return ran


def _run_one(study, objective: Callable, held: contextlib.ExitStack, catch: tuple,
             on_trial: Callable | None, out) -> None:
    """Ask (inside the lock), release the lock, run the trial, tell: one Optuna trial."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    ids: list[int] = []

    def fn(trial) -> Any:
        held.close()  # the trial is RUNNING now, so the others count it
        ids.append(_optuna.trial_id(trial))
        return objective(trial)

    callbacks = [on_trial] if on_trial else []
    outage = _optuna.rdb_outage(_optuna.rdb_of(_optuna.study_storage(study)))
    try:
        study.optimize(fn, n_trials=1, catch=catch, callbacks=callbacks, gc_after_trial=False)
    except Exception as exc:
        if outage is not None and outage.gave_up:
            # whatever Optuna made of it (its own UnboundLocalError, when even its clean-up
            # cannot reach the server): the one line of the outage
            raise outage.error() from None
        storage = _optuna.study_storage(study)
        failed_write = _in_chain(exc, StorageWriteError)
        if failed_write is not None:
            raise _write_failed(study, ids, failed_write) from None
        # another worker declared this trial dead (no heartbeat within the grace period)
        # and queued it again; that retry counts, this result does not
        # (Optuna 5 then also trips its own `assert False, "Should not reach."` in its clean-up)
        if not isinstance(exc, (UpdateFinishedTrialError, ValueError, AssertionError)) or not ids:
            raise
        if storage.get_trial(ids[0]).state != TrialState.FAIL:
            raise
        print(f"#{storage.get_trial(ids[0]).number} was failed by another worker (heartbeat too late); "
              "its retry counts", file=out, flush=True)


def _in_chain(exc: BaseException | None, cls: type) -> Any:
    """The first exception of type `cls` among `exc` and its causes and contexts, or None."""
    for _ in range(20):
        if exc is None or isinstance(exc, cls):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _write_failed(study, ids: list[int], exc: StorageWriteError) -> StorageWriteError:
    """A write to the storage failed mid-trial: the trial is failed (Optuna leaves it RUNNING when
    its own last write failed too) and queued again, if the storage takes a line now; one line."""
    from optuna.trial import TrialState

    if not ids:
        return exc
    storage, number = _optuna.study_storage(study), None
    try:
        trial = storage.get_trial(ids[0])
        number = trial.number
        if trial.state == TrialState.RUNNING:
            fail_and_retry(study, trial, f"storage write failed: {exc}", "storage write failed")
        elif trial.state == TrialState.FAIL:
            retry_trial(study, trial, "storage write failed")
        return exc
    except Exception:  # noqa: BLE001 - still cannot write: the next run here fails it (its pid is gone)
        which = f"trial #{number}" if number is not None else "the trial"
        return StorageWriteError(f"{exc}; {which} stays RUNNING until the next run or worker fails and "
                                 "retries it")

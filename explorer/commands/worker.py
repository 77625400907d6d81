"""`explorer worker STUDY --storage URL`: one more process, on any machine, working on a study.

The study's config is read from the storage (study user attr `config`); only the data path
and the device are local. Start as many workers as you like, on as many machines as can
reach the storage; each stops when the study has its planned number of finished trials.

Exactly N finished trials: before asking Optuna for a trial a worker takes the study's
lock (PostgreSQL: an advisory lock, see explorer.pg; a journal or SQLite file: a lock file
beside it), counts the trials that count (COMPLETE or PRUNED and within budget) plus the
RUNNING ones, and asks only while that sum is below N, inside the lock. So workers
together never start a trial that could make the count exceed N. Over-budget and invalid
trials do not count, so they free their place for another trial. A worker that finds every
place taken waits (every --poll seconds) instead of exiting: if another worker dies, its
RUNNING trial is failed after the heartbeat grace period and retried by a waiting worker.
`explorer run` claims its trials through the same `work()` loop and lock. Not covered:
MySQL storages have no lock here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, ContextManager

DATASET_NAMES = ("cifar10", "cifar100", "synthetic")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `worker` subcommand."""
    p = sub.add_parser("worker", help="join an existing study and run its trials (any machine)",
                       description="Join a study made by `explorer run` and run trials until it has "
                                   "its planned number of finished trials. The config comes from the "
                                   "storage; only --data and --device are local. See docs/scaling.md.")
    p.add_argument("study", help="the study name (as in the study file)")
    p.add_argument("--storage", help="storage URL, e.g. postgresql://USER:PASSWORD@HOST/DB "
                                     "(default: runs/<study>.journal, for workers on this machine)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--data", help="dataset path or name on this machine (default: EXPLORER_DATA, "
                                  "the study's data.source if it exists here, else "
                                  "../shared/datasets/cifar10-jpeg.tar.gz)")
    p.add_argument("--n-trials", type=int, help="finished trials wanted in the whole study "
                                                "(default: the study's n_trials)")
    p.add_argument("--heartbeat-interval", type=int, default=None, metavar="S",
                   help="database storages: seconds between a trial's heartbeats (default 30)")
    p.add_argument("--grace-period", type=int, default=None, metavar="S",
                   help="database storages: a RUNNING trial silent this long is failed and "
                        "retried (default 120)")
    p.add_argument("--poll", type=float, default=2.0, metavar="S",
                   help="while every trial is taken, check again every S seconds (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the storage (fast), join the study, load the data, work; 130 after Ctrl-C."""
    from explorer import storage as st

    _check_args(args)
    given = args.storage or st.default_storage_url(args.study)
    url = _checked_url(given)
    study, config, runner, target = _join(args, url)
    who = f"{socket.gethostname()}:{os.getpid()}"
    print(f"worker {who} joined {config.name} ({st.mask_url(given)}) on {runner.device}: "
          f"{_count_text(study, target)}; sampler seed {_reseed(study, config, runner)}", flush=True)
    try:
        ran = work(study, runner, target=target, lock=lambda: study_lock(study, url),
                   poll_s=args.poll, timeout_s=config.timeout_s, catch=_catchable(),
                   on_trial=lambda s, t: _print_trial(runner, t))
    except KeyboardInterrupt:
        _interrupted(study, lambda: study_lock(study, url))
        print(f"worker {who} interrupted: its running trial was failed and queued again",
              file=sys.stderr)
        return 130
    print(f"worker {who} done: ran {ran} trials; {_count_text(study, target)}", flush=True)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    from explorer.errors import UserError

    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials={args.n_trials}: give an integer >= 1")
    for name in ("heartbeat_interval", "grace_period"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')}={v}: give a whole number of seconds >= 1")
    if args.poll <= 0:
        raise UserError(f"--poll={args.poll}: give a number of seconds > 0")


def _checked_url(url: str) -> str:
    """PostgreSQL: validated and probed (seconds, no torch import), mapped to psycopg."""
    from explorer import pg

    return pg.probe(url) if pg.is_postgres(url) else url


def _join(args: argparse.Namespace, url: str):
    """(study, config, runner, target): the stored config, local data and device."""
    import warnings

    import optuna

    from explorer import study as sm

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, config = sm.join_study(url, args.study)
    _tune_heartbeat(rdb_of(study), args.heartbeat_interval, args.grace_period)
    device = sm.check_device(args.device)
    data = sm.load_data_for(config, _data_path(args.data, config), device)
    runner = sm.TrialRunner(study, config, data=data, device=device, trainer=None,
                            num_classes=data.num_classes)
    target = args.n_trials if args.n_trials is not None else config.n_trials
    if config.sampler.name == "grid":
        target = sm.grid_trials(runner.space, config, target)
    return study, config, runner, target


def rdb_of(study):
    """The study's RDBStorage (Optuna wraps it in a cache), or None for a journal file."""
    from optuna.storages import RDBStorage

    storage = getattr(study._storage, "_backend", study._storage)
    return storage if isinstance(storage, RDBStorage) else None


def _tune_heartbeat(storage, interval: int | None, grace: int | None) -> None:
    """Set Optuna's heartbeat on a database storage (join_study opens it with the defaults)."""
    if storage is not None and interval is not None:
        storage.heartbeat_interval = interval
    if storage is not None and grace is not None:
        storage.grace_period = grace


def _data_path(cli: str | None, config) -> str:
    """--data > EXPLORER_DATA > the stored data.source if it exists here > the archive."""
    from dataclasses import replace

    from explorer.errors import UserError
    from explorer.study import resolve_data_path

    stored = config.data.source
    if stored and not _is_local(stored):
        config = replace(config, data=replace(config.data, source=None))  # a path on another machine
    path = resolve_data_path(cli, config)
    if path is None:
        raise UserError(f"no data for study {config.name!r} on this machine: pass --data PATH "
                        "or set EXPLORER_DATA")
    if not _is_local(path):
        raise UserError(f"data not found at {path}; pass --data PATH or set EXPLORER_DATA")
    return path


def _is_local(source: str) -> bool:
    """A dataset name, or a path that exists on this machine."""
    return source.split(":", 1)[0] in DATASET_NAMES or Path(source).exists()


def _reseed(study, config, runner) -> int:
    """Give this worker's sampler its own seed: equal seeds would propose equal trials."""
    from dataclasses import replace

    from explorer.study import make_sampler

    seed = (config.sampler.seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())) % 2**31
    study.sampler = make_sampler(replace(config, sampler=replace(config.sampler, seed=seed)), runner.space)
    return seed


def _catchable() -> tuple[type[Exception], ...]:
    """Objective errors that fail one trial but not the worker (an invalid knob combination)."""
    from explorer import study as sm

    return (sm.InvalidSpec,)


# --- claiming trials ---------------------------------------------------------------------

def study_lock(study, url: str) -> ContextManager[None]:
    """The lock every worker of this study takes around "count, then ask"."""
    from explorer import pg
    from explorer import storage as st

    storage = rdb_of(study)
    if storage is not None:
        dialect = storage.engine.dialect.name
        if dialect == "postgresql":
            return pg.study_lock(storage, study._study_id)
        if dialect == "sqlite":
            return file_lock(Path(storage.engine.url.database))
        return contextlib.nullcontext()
    return file_lock(st.journal_path(url))


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


def claim_counts(study) -> tuple[int, int]:
    """(trials that count as done, RUNNING trials) across every worker."""
    from optuna.trial import TrialState

    from explorer.study import count_done

    running = study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
    return count_done(study), len(running)


def fail_stale(study) -> list[int]:
    """Fail and requeue trials of dead workers: same-machine pids, then Optuna's heartbeats."""
    import warnings

    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    from explorer.study import fail_stale_trials

    failed = fail_stale_trials(study)
    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # its callback requeues (explorer.study.retry_stale)
    return failed


def work(study, objective: Callable, *, target: int | None, lock: Callable[[], ContextManager],
         poll_s: float = 2.0, timeout_s: float | None = None, catch: tuple = (),
         on_trial: Callable | None = None, stop: Callable[[], bool] | None = None, out=None) -> int:
    """Run trials until `target` count as done (all workers), the time is up, `stop()` or Ctrl-C.

    Returns how many trials this process ran. `objective` takes an Optuna trial.
    """
    out = out or sys.stdout
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
        ids.append(trial._trial_id)
        return objective(trial)

    callbacks = [on_trial] if on_trial else []
    try:
        study.optimize(fn, n_trials=1, catch=catch, callbacks=callbacks, gc_after_trial=False)
    except (UpdateFinishedTrialError, ValueError):
        # another worker declared this trial dead (no heartbeat within the grace period)
        # and queued it again; that retry counts, this result does not
        if not ids or study._storage.get_trial(ids[0]).state != TrialState.FAIL:
            raise
        number = study._storage.get_trial(ids[0]).number
        print(f"#{number} was failed by another worker (heartbeat too late); its retry counts",
              file=out, flush=True)


def _print_trial(runner, frozen) -> None:
    from explorer.study import outcome, format_outcome

    print(format_outcome(outcome(runner, frozen), runner.space), flush=True)


def _count_text(study, target: int | None) -> str:
    done, running = claim_counts(study)
    return f"{done}/{target if target is not None else 'unlimited'} trials done, {running} running"


def _interrupted(study, lock: Callable[[], ContextManager]) -> None:
    """No trial of this process stays RUNNING after Ctrl-C (failed and queued again, under the lock)."""
    from explorer import storage as st
    from explorer.study import finalise_own_running

    with st.defer_interrupts(), lock():
        finalise_own_running(study)

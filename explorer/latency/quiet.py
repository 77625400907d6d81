"""Quiet for a measurement: one latency measurement at a time on this machine, every training of ours paused.

A latency measured while another of our processes trains on the same machine measures the
contention, not the network. Processes coordinate through three files in one folder per
host, `$EXPLORER_CACHE/quiet/<host>/`, whatever started them (`--jobs`, several
`explorer worker`s, a shell loop), as long as they share the cache folder. The locks are
flock(2) locks, which the kernel drops when a process dies, so a killed process never
leaves the machine paused:

    measure.lock  held exclusively by the one process measuring; other measurers queue on it
    pause         exists while a measurer wants quiet: the trainers' signal, one stat() per step
    train.lock    held shared by every training run (`training()`); the measurer takes it
                  exclusively, so it starts once every trainer has let go of it

A trainer calls the `pause()` that `training()` yields between steps (explorer.training.train does):
when the flag is up it lets go of train.lock, waits on measure.lock until the measurer is
done (at once when the flag is stale: its measurer died), takes train.lock back and returns
the seconds it waited, which the trainer keeps out of its time budget. A measurer that
cannot get quiet within `wait_s` (a trainer stuck in a long step) measures anyway and
reports it; so does one whose cache folder is not writable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

WAIT_S = 120.0  # longest a measurer waits for the trainers to pause (one step each, usually ms)
POLL_S = 0.005


def zone_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """This host's folder under the cache ($EXPLORER_CACHE, default ~/.cache/explorer)."""
    from explorer.training.data import resolve_cache_dir

    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return resolve_cache_dir(cache_dir) / "quiet" / host


def _open(folder: Path, name: str):
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / name, "a+b")


def _no_pause() -> float:
    return 0.0


@contextlib.contextmanager
def training(folder: Path | None = None) -> Iterator[Callable[[], float]]:
    """Hold train.lock shared while training; yields `pause()` for between steps (seconds waited)."""
    import fcntl

    folder = folder or zone_dir()
    try:
        train_f, measure_f = _open(folder, "train.lock"), _open(folder, "measure.lock")
    except OSError:  # no writable cache: train unpaused (measurements then say they were not quiet)
        yield _no_pause
        return
    flag = str(folder / "pause")

    def pause() -> float:
        if not os.path.exists(flag):
            return 0.0
        start = time.perf_counter()
        fcntl.flock(train_f, fcntl.LOCK_UN)  # let the measurer in
        fcntl.flock(measure_f, fcntl.LOCK_SH)  # returns when it is done (at once if the flag is stale)
        fcntl.flock(measure_f, fcntl.LOCK_UN)
        fcntl.flock(train_f, fcntl.LOCK_SH)
        return time.perf_counter() - start

    try:
        fcntl.flock(train_f, fcntl.LOCK_SH)  # waits while a measurement runs
        yield pause
    finally:
        train_f.close()  # closing drops the locks
        measure_f.close()


@contextlib.contextmanager
def measuring(folder: Path | None = None, wait_s: float = WAIT_S) -> Iterator[bool]:
    """One measurement at a time; yields True once every training of ours here is paused."""
    import fcntl

    folder = folder or zone_dir()
    try:
        measure_f, train_f = _open(folder, "measure.lock"), _open(folder, "train.lock")
    except OSError:
        yield False
        return
    flag = folder / "pause"
    quiet = False
    try:
        fcntl.flock(measure_f, fcntl.LOCK_EX)  # queue behind another measurement
        flag.touch()
        deadline = time.monotonic() + wait_s
        while not quiet and time.monotonic() < deadline:
            try:
                fcntl.flock(train_f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                quiet = True
            except BlockingIOError:
                time.sleep(POLL_S)  # trainers let go at their next step
        yield quiet
    finally:
        flag.unlink(missing_ok=True)
        train_f.close()
        measure_f.close()

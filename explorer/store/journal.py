"""Journal files: one family of Optuna journal backends, read-only and writing.

`JournalFile` reads the file Optuna's JournalFileBackend writes (one JSON log per line)
and cannot write: no lock, no file creation, and orjson when installed (JSON parsing was
a fifth of the time to open a 10,000-trial journal). A last line without its newline is
a write in progress or a dead writer's torn line: it is skipped until it is complete.

`WritableJournalFile` adds appends that Ctrl-C cannot tear (SIGINT waits until the line
is written), under Optuna's own lock file (`PATH.lock`, so Optuna's writers and ours
exclude each other), cutting a dead writer's torn tail first, and fsync only when a study
or a trial is created or finished: fsync flushes every earlier append too, so each
finished trial is durable with all its attributes at two fsyncs per trial instead of one
per attribute (about 3 ms each here). `batch()` gathers one thread's appends into one.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any, Iterator

from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock

from explorer.core.errors import UserError
from explorer.core.util import defer_interrupts
from explorer.store._optuna import journal_ops


class StorageError(UserError):
    """A storage that cannot be opened or read: missing, unreadable or not an Optuna storage."""


class StorageWriteError(UserError):
    """A write to the storage failed (disk full, file made read-only or immutable meanwhile)."""


class JournalLineError(StorageError):
    """A complete line of a journal that is not a journal entry (garbage mid-file)."""


class JournalFile(BaseJournalBackend):
    """An Optuna journal file, read only.

    `skip_bad_lines`: a complete line that is not a journal entry is skipped and its number
    kept in `skipped` (read-only commands show the readable trials); otherwise it is a
    JournalLineError naming the line (a writer must not build on a journal it cannot read).
    """

    def __init__(self, path: str, *, skip_bad_lines: bool = False) -> None:
        self.path = str(path)
        self.skip_bad_lines = skip_bad_lines
        self.skipped: list[int] = []  # 1-based line numbers of the lines skipped
        self._next = (0, 0, 0)  # (log number, byte offset, line number) where the next read starts

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        """The logs from number `log_number_from` on; reads only the bytes not read before."""
        number, offset, line_no = self._next if log_number_from >= self._next[0] else (0, 0, 0)
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        logs = []
        for line in data.split(b"\n")[:-1]:  # the piece after the last newline is unfinished
            offset, line_no = offset + len(line) + 1, line_no + 1
            if not line.strip():
                continue
            log = _entry(line)
            if log is None:
                if not self.skip_bad_lines:
                    raise JournalLineError(bad_line_message(self.path, line_no, line))
                if line_no not in self.skipped:
                    self.skipped.append(line_no)
                continue
            if number >= log_number_from:
                logs.append(log)
            number += 1  # Optuna numbers the logs it was given: skipped lines are not logs
        self._next = (number, offset, line_no)
        return logs

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Refused: this file is open read-only."""
        raise StorageError("the dashboard opens storages read-only")


class WritableJournalFile(JournalFile):
    """An Optuna journal file that this process appends to (see the module docstring)."""

    def __init__(self, path: str, *, skip_bad_lines: bool = False) -> None:
        super().__init__(path, skip_bad_lines=skip_bad_lines)
        if not os.path.exists(self.path):
            open(self.path, "ab").close()
        self._lock = JournalFileSymlinkLock(self.path)  # Optuna's default: its writers use it too
        self._batches = threading.local()
        ops = journal_ops()
        self._durable = {ops[k] for k in ("CREATE_STUDY", "DELETE_STUDY", "CREATE_TRIAL", "SET_TRIAL_STATE_VALUES")}

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append under the lock (or gather, inside this thread's batch())."""
        pending = getattr(self._batches, "logs", None)
        if pending is not None:
            pending.extend(logs)
            return
        text = "".join(_dumps(log) + "\n" for log in logs).encode("utf-8")
        durable = any(log.get("op_code") in self._durable for log in logs)
        try:
            with defer_interrupts(), _locked(self._lock):
                with open(self.path, "rb+" if os.path.exists(self.path) else "wb+", buffering=0) as f:
                    # Writers append under this lock, so a torn last line here is a dead
                    # writer's (kill -9, disk full): cut it off, or our line would extend it
                    # into one unreadable line and every later open would fail.
                    cut_torn_tail(f)
                    _append(f, text, durable)
        except OSError as exc:
            raise StorageWriteError(f"cannot write to the storage {self.path}: {exc.strerror or exc}; free "
                                    "disk space or fix its permissions, then rerun to resume") from None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Gather this thread's appends and write them as one append when the block ends
        (nothing, if it ends in an exception): one lock and one write for a trial's attrs."""
        if getattr(self._batches, "logs", None) is not None:
            yield  # already inside a batch
            return
        self._batches.logs = []
        try:
            yield
            logs = self._batches.logs
        finally:
            self._batches.logs = None
        if logs:
            self.append_logs(logs)

    def repair_torn_tail(self) -> None:
        """Drop a last line left unfinished by a killed writer (kill -9 mid-append).

        Reads first without the lock: an intact file (the usual case) is left alone even
        where it is read-only to us, so `status` and `trials` can read it.
        """
        if os.path.getsize(self.path) == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        if not os.access(self.path, os.W_OK):
            return  # torn but not ours to repair; the reader skips an unfinished line
        with _locked(self._lock), open(self.path, "rb+") as f:
            cut_torn_tail(f)


@contextlib.contextmanager
def _locked(lock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _append(f, text: bytes, durable: bool) -> None:
    """Append `text` at the end of an unbuffered file (fsync if `durable`); a failed write (disk
    full) is taken back whole."""
    end = f.seek(0, os.SEEK_END)
    try:
        _write(f, text)
        if durable:
            os.fsync(f.fileno())
    except OSError:
        try:
            f.truncate(end)  # truncating needs no space: no half line is left for the next reader
        except OSError:
            pass  # the next writer cuts a torn tail
        raise


def _write(f, text: bytes) -> None:
    """All of `text` to an unbuffered file: nothing stays in a buffer to be written after a failure."""
    view = memoryview(text)
    while view:
        view = view[f.write(view):]


def cut_torn_tail(f) -> None:
    """Truncate an open (rb+) journal file after its last newline, if it ends mid-line."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    pos = size  # read backwards in blocks to the last newline (journals grow large)
    while pos > 0:
        start = max(0, pos - 65536)
        f.seek(start)
        block = f.read(pos - start)
        i = block.rfind(b"\n")
        if i >= 0:
            f.truncate(start + i + 1)
            return
        pos = start
    f.truncate(0)


def _dumps(log: dict[str, Any]) -> str:
    return json.dumps(log, separators=(",", ":"))  # Optuna's own spelling of a log line


def salvage(src: str, dst: str) -> list[int]:
    """Write `dst`: the journal `src` without its complete lines that are not journal entries (and
    without an unfinished last line); the 1-based numbers of the lines left out. Never overwrites."""
    from explorer.core.util import atomic_write

    with open(src, "rb") as f:
        lines = f.read().split(b"\n")
    kept, dropped = [], []
    for number, line in enumerate(lines[:-1], start=1):
        if line.strip():
            (kept.append(line) if _entry(line) is not None else dropped.append(number))
    if lines[-1]:
        dropped.append(len(lines))  # an unfinished last line
    if os.path.exists(dst):
        raise UserError(f"{dst} exists: give a new file for the repaired copy")
    atomic_write(dst, lambda f: f.write(b"".join(line + b"\n" for line in kept)), binary=True)
    return dropped


def _entry(line: bytes) -> dict[str, Any] | None:
    """One journal log (a JSON object with an op_code), or None for a line that is none."""
    try:
        log = _fast_loads(line)
    except ValueError:
        try:
            log = json.loads(line)  # orjson reads no integers beyond 64 bits; json does
        except ValueError:
            return None
    return log if isinstance(log, dict) and "op_code" in log else None


def bad_line_message(path: str, line_no: int, line: bytes) -> str:
    """One line naming a journal's unreadable line and what to do about it."""
    excerpt = line[:40].decode("utf-8", "replace").encode("unicode_escape").decode("ascii")
    return (f"{path} line {line_no} is not a journal entry ({excerpt!r}{'...' if len(line) > 40 else ''}); "
            f"`explorer status`, `trials`, `export` and the dashboard skip it, and `explorer salvage {path} "
            "COPY.journal` writes a copy without it to run on")


try:
    from orjson import loads as _fast_loads
except ImportError:  # the plain json module is the whole fallback
    _fast_loads = json.loads

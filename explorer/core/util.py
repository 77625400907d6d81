"""Small helpers used across explorer: number checks and formatting, plain values, atomic writes,
writes that Ctrl-C cannot cut in half."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import numbers
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

SI = (("G", 1e9), ("M", 1e6), ("k", 1e3))


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int too large for a float
        return False


def number(v: Any) -> float:
    """`v` as a float; NaN for None, bools, text and anything else that is not a number."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def si(value: Any, precision: str = ".3g", *, small: str | None = None, missing: str = "-") -> str:
    """1234567 -> '1.23M' (k/M/G suffixes); `small` formats values below 1000 (default: precision).

    `missing` stands for None, NaN, infinities and anything that is not a number.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return missing
    v = float(value)
    for unit, scale in SI:
        if abs(v) >= scale:
            return f"{v / scale:{precision}}{unit}"
    return f"{value:{small or precision}}"


def plain(v: Any) -> Any:
    """JSON/YAML/weights_only-safe plain types.

    NaN and infinities -> None, tuples and sets -> lists, numpy/torch values unwrapped,
    dates and times -> ISO 8601 text (YAML reads an unquoted timestamp as a datetime,
    which torch.load(weights_only=True) and json refuse), anything else -> str.
    """
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [plain(x) for x in v]
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if not isinstance(v, (bool, int, float, str)) and v is not None and hasattr(v, "tolist"):
        try:
            return plain(v.tolist())  # numpy scalars and arrays, torch tensors
        except Exception:  # noqa: BLE001 - fall through to str()
            pass
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    return str(v)  # text (a str subclass too), paths, anything else


def atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool = False) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync, then rename over `path`.

    Readers never see half a file, and the rename cannot land before the content (power loss).
    """
    path = Path(path)
    # .NAME.PID-RANDOM.tmp: remove_stale_temporaries() can tell a dead writer's leftover
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TEMPORARY = re.compile(r"\..+\.(?:(?P<pid>\d+)-)?[\w]{6,}\.tmp")  # atomic_write's names, old ones too
STALE_TMP_S = 3600  # a temporary file untouched this long has no live writer


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove atomic_write's temporary files in `folder` left by a killed writer: its process is
    gone (this machine), or the file is older than STALE_TMP_S; returns what was removed."""
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp")):
        m = _TEMPORARY.fullmatch(tmp.name)
        if not m or not tmp.is_file():
            continue
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_TMP_S
            if old or (m.group("pid") and not pid_alive(int(m.group("pid")))):
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write text to `path` atomically (see atomic_write)."""
    atomic_write(path, lambda f: f.write(text))


def probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in `folder` (what atomic_write needs); OSError if not."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".explorer-probe-", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def defer_interrupts() -> Iterator[None]:
    """Hold SIGINT / SIGTERM until the block ends, so a write is never half done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for signum, frame in caught[:1]:
            handler = old[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def print_notes(notes: Iterable[str]) -> None:
    """Print one-line library notes (skipped files, a repaired cache) to stderr for the user."""
    for note in notes:
        print(f"explorer: note: {note}", file=sys.stderr, flush=True)

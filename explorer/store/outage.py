"""Riding out a database outage: retry with back-off, say so in one line, give up after a limit.

Every call a worker or a run makes to a PostgreSQL storage goes through `Outage.call`
(explorer.store._optuna wraps RDBStorage's methods in it, and the study lock takes its
connection through it). A lost connection (server stopped or restarted, network gone) is
retried with back-off (1, 2, 4 ... 10 s) for up to `EXPLORER_DB_RETRY_S` seconds (default
600); the first failure prints one line, the first success after it another. Meanwhile
the process holds what it was writing (a finished trial's result) and writes it when the
server is back; training goes on until it needs the database. After the limit every call
raises `DatabaseUnavailable`, a one-line UserError.

Heartbeats are not retried (a missed beat is skipped), and for one grace period after the
server is back nobody's trial is declared dead: every worker's heartbeat stopped during
the outage, and each needs a moment to beat again.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

from explorer.core.errors import UserError

RETRY_ENV = "EXPLORER_DB_RETRY_S"
DEFAULT_RETRY_S = 600.0
BACKOFF_S = (1, 2, 4, 8, 10)


class DatabaseUnavailable(UserError):
    """The database stayed unreachable past the retry limit."""


def retry_limit_s() -> float:
    """Seconds to keep retrying: $EXPLORER_DB_RETRY_S, else 600; UserError for a bad value."""
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return DEFAULT_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UserError(f"{RETRY_ENV}={text!r}: give the seconds to retry an unreachable database (0 or more)")
    return value


def is_connection_error(exc: BaseException | None) -> bool:
    """True for a lost or refused database connection anywhere in the exception's chain."""
    import sqlalchemy.exc as sa

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (sa.OperationalError, sa.InterfaceError)):
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        if type(exc).__name__ in ("OperationalError", "InterfaceError") and "psycopg" in type(exc).__module__:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:.0f} s"


class Outage:
    """One storage's connection state: retry policy, the lines printed, the grace after an outage."""

    def __init__(self, limit_s: float | None = None, *, out=None, sleep: Callable[[float], None] = time.sleep):
        self.limit_s = retry_limit_s() if limit_s is None else float(limit_s)
        self.out, self.sleep = out, sleep
        self.down_since: float | None = None
        self.back_at: float | None = None
        self.gave_up = False
        self.impatient = False  # set after Ctrl-C: do not wait for the server
        self.reason = ""
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), retried while the database is unreachable (see the module docstring)."""
        attempt = 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                if self.gave_up:
                    raise self.error() from None
                self.went_down(exc)
                if self.impatient or time.monotonic() - (self.down_since or 0.0) >= self.limit_s:
                    self.gave_up = True
                    raise self.error() from None
                self.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                continue
            self.came_back()
            return result

    def went_down(self, exc: BaseException) -> None:
        """Note a failed call; the first of an outage prints one line."""
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.reason = _reason(exc)
        self._say(f"database unreachable ({self.reason}), retrying for up to {_duration(self.limit_s)} "
                  f"({RETRY_ENV}); finished results are kept and written when it is back")

    def came_back(self) -> None:
        """Note a successful call; the first after an outage prints one line."""
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            away, self.down_since = time.monotonic() - self.down_since, None
            self.back_at = time.monotonic()
        self._say(f"database back after {_duration(away)}; carrying on")

    def settling(self, grace_s: float) -> bool:
        """True while down, or within `grace_s` of coming back: no heartbeat can be trusted as stale."""
        if self.down_since is not None:
            return True
        return self.back_at is not None and time.monotonic() - self.back_at < grace_s

    def error(self) -> DatabaseUnavailable:
        """The one line after the limit (or after Ctrl-C while the server is away)."""
        if self.impatient:
            return DatabaseUnavailable(
                f"interrupted while the database is unreachable ({self.reason}): a trial left RUNNING is "
                "failed and retried once the server is back (heartbeat grace period)")
        return DatabaseUnavailable(
            f"database unreachable for over {_duration(self.limit_s)} ({self.reason}); giving up. A trial "
            f"left RUNNING is failed and retried once the server is back (heartbeat grace period); rerun "
            f"the command to resume, or set {RETRY_ENV} to wait longer")

    def _say(self, line: str) -> None:
        print(f"explorer: {line}", file=self.out or sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    """A short reason from the driver's message (first line; never a URL or password)."""
    inner = getattr(exc, "orig", None) or exc.__cause__ or exc
    lines = [s.strip() for s in str(inner).splitlines() if s.strip()]
    text = lines[0] if lines else type(inner).__name__
    low = text.lower()
    for key in ("connection refused", "terminating connection", "server closed the connection",
                "timeout", "no such file or directory", "the database system is shutting down",
                "the database system is starting up"):
        if key in low:
            return key
    return type(inner).__name__

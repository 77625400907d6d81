"""Open a storage URL: the one way runs, workers, commands and the dashboard get an Optuna storage.

`open_storage(url)` opens an existing storage for work; `create=True` also makes a missing
journal or SQLite file (and its folder); `read_only=True` is the dashboard's access: a
journal is read without its lock and never created or repaired, SQLite is opened with
`mode=ro`, PostgreSQL in read-only transactions, and no tables are created. Every failure
is one UserError line naming the fix, passwords masked (StorageError when read-only).
`check_writable(url)` is a run's check, before it loads any data, that it can write there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

from explorer.core.errors import UserError
from explorer.core.util import probe_writable
from explorer.store import _optuna, pg
from explorer.store.attrs import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S
from explorer.store.journal import JournalFile, StorageError, WritableJournalFile
from explorer.store.outage import Outage
from explorer.store.urls import check_url, journal_path, mask_url, sqlite_path, storage_kind


def open_storage(url: str, *, create: bool = False, read_only: bool = False, skip_bad_lines: bool = False,
                 stale_callback: Callable | None = None,
                 heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S):
    """An Optuna storage for `url` (see the module docstring); `stale_callback`, `heartbeat_interval`
    and `grace_period` set Optuna's heartbeat on database storages opened for work. A journal's
    complete lines that are not journal entries are an error, or skipped where `skip_bad_lines`
    or `read_only` (commands that only read; `journal_notes` names them)."""
    url = str(url).strip()
    try:
        if not url:
            raise UserError("no storage given: pass --storage PATH.journal or a sqlite:/// URL")
        check_url(url)
        kind = storage_kind(url)
        if kind == "journal":
            return _open_journal(journal_path(url), create, read_only, skip_bad_lines or read_only)
        if read_only:
            return _open_rdb_read_only(url, kind)
        return _open_rdb(url, kind, create, dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                                 heartbeat_stale_trial_callback=stale_callback))
    except StorageError:
        raise
    except UserError as exc:
        raise (StorageError(str(exc)) if read_only else exc) from None
    except Exception as exc:  # sqlalchemy / driver / OS errors: one line, masked
        reason = mask_url(" ".join(str(exc).split()) or type(exc).__name__, url)[:300]
        if read_only:
            raise StorageError(f"cannot read {mask_url(url)}: {reason}") from None
        raise UserError(f"cannot open storage {mask_url(url)}: {reason}; check the URL, the "
                        "server and the credentials") from None


def check_writable(url: str) -> None:
    """One UserError line unless a run can write this journal or SQLite file and, beside it, its
    lock files (read-only or immutable file, unwritable folder) and read every line of a journal;
    PostgreSQL is probed on open."""
    url = str(url).strip()
    check_url(url)
    kind = storage_kind(url)
    if kind not in ("journal", "sqlite"):
        return
    path = journal_path(url) if kind == "journal" else sqlite_path(url)
    if path.is_dir():
        return  # open_storage names this one
    if path.exists():
        try:
            open(path, "ab").close()
        except OSError as exc:
            raise UserError(f"storage {path} is not writable ({exc.strerror}): check its permissions (or "
                            "`lsattr` for an immutable file), or pass --storage with a new file") from None
        if kind == "journal" and path.is_file():
            JournalFile(str(path)).read_logs(0)  # a line that is no journal entry: JournalLineError
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the first folder run must create
    try:
        probe_writable(folder)
    except OSError as exc:
        raise UserError(f"cannot write in {folder} ({exc.strerror}), where the storage {path} and its lock "
                        "files go: fix its permissions or pass --storage with a writable path") from None


def _open_journal(path: Path, create: bool, read_only: bool, skip_bad_lines: bool):
    from optuna.storages import JournalStorage

    if read_only:
        _require_file(path)  # Optuna's JournalFileBackend would create a missing file
        try:
            return _not_all_garbage(JournalStorage(JournalFile(str(path), skip_bad_lines=skip_bad_lines)), path)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"{path} is not an Optuna journal file ({mask_url(' '.join(str(exc).split()))[:300]}); "
                               "pass a .journal file or a sqlite:/// URL") from None
    if not path.exists():
        if not create:
            raise UserError(f"no study storage at {path}; run `explorer run STUDY.yaml` first or pass --storage")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {path.parent}: {exc.strerror}; pass --storage") from None
    if path.is_dir():
        raise UserError(f"storage {path} is a directory; give a file path such as {path}/study.journal")
    backend = WritableJournalFile(str(path), skip_bad_lines=skip_bad_lines)
    backend.repair_torn_tail()
    return _not_all_garbage(JournalStorage(backend), path)


def _not_all_garbage(storage, path: Path):
    """The storage, unless every line skipped was all the file had: then it is no journal at all."""
    backend = _optuna.journal_backend_of(storage)
    if backend.skipped and not storage.get_all_studies():
        raise StorageError(f"{path} is not an Optuna journal file (line {backend.skipped[0]} is no journal "
                           "entry, and no line is); pass a .journal file or a sqlite:/// URL")
    return storage


def journal_notes(storage) -> list[str]:
    """One line per journal line skipped while reading `storage` (none for other storages)."""
    backend = _optuna.journal_backend_of(storage)
    skipped = getattr(backend, "skipped", None) or []
    if not skipped:
        return []
    lines = ", ".join(str(n) for n in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
    what = "line {} (not a journal entry)" if len(skipped) == 1 else "lines {} (not journal entries)"
    return [f"{backend.path}: skipped {what.format(lines)}; showing the trials the other lines hold "
            f"(`explorer salvage {backend.path} COPY.journal` writes a copy without them)"]


def _open_rdb(url: str, kind: str, create: bool, heartbeat: dict[str, Any]):
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    if kind == "sqlite":
        path = sqlite_path(url)
        if not create and not path.exists():
            raise UserError(f"no study storage at {path}; run `explorer run STUDY.yaml` first")
        url = url if "://" in url else f"sqlite:///{path}"
    elif kind == "postgresql":
        # Fail fast with one line when the server is down, and keep idle pooled connections alive.
        url, engine_kwargs = pg.probe(url), pg.engine_kwargs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval is "experimental"
        if kind == "postgresql":  # a server can go away mid-run: ride out the outage (store/outage.py)
            return _optuna.retrying_rdb(url, Outage(), engine_kwargs=engine_kwargs, **heartbeat)
        return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


def _open_rdb_read_only(url: str, kind: str):
    from optuna.storages import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    if kind == "sqlite":
        path = sqlite_path(url)
        _require_file(path)
        url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    elif kind == "postgresql":
        # One fast probe (a one-line reason when the server is down), then read-only sessions.
        url, engine_kwargs = pg.probe(url), pg.engine_kwargs()
        engine_kwargs["connect_args"]["options"] = "-c default_transaction_read_only=on"
    return RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)


def _require_file(path: Path) -> None:
    if not os.path.exists(path):
        raise StorageError(f"storage file {path} does not exist: check the path (the dashboard never creates one)")
    if not os.path.isfile(path):
        raise StorageError(f"storage {path} is not a file")
    if not os.access(path, os.R_OK):
        raise StorageError(f"storage file {path} is not readable: check its permissions")

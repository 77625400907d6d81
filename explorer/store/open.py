"""Open a storage URL: the one way runs, workers, commands and the dashboard get an Optuna storage.

`open_storage(url)` opens an existing storage for work; `create=True` also makes a missing
journal or SQLite file (and its folder); `read_only=True` is the dashboard's access: a
journal is read without its lock and never created or repaired, SQLite is opened with
`mode=ro`, PostgreSQL in read-only transactions, and no tables are created. Every failure
is one UserError line naming the fix, passwords masked (StorageError when read-only).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

from explorer.errors import UserError
from explorer.store import pg
from explorer.store.attrs import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S
from explorer.store.journal import JournalFile, StorageError, WritableJournalFile
from explorer.store.urls import check_url, journal_path, mask_url, sqlite_path, storage_kind


def open_storage(url: str, *, create: bool = False, read_only: bool = False,
                 stale_callback: Callable | None = None,
                 heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S, grace_period: int = GRACE_PERIOD_S):
    """An Optuna storage for `url` (see the module docstring); `stale_callback`, `heartbeat_interval`
    and `grace_period` set Optuna's heartbeat on database storages opened for work."""
    url = str(url).strip()
    try:
        if not url:
            raise UserError("no storage given: pass --storage PATH.journal or a sqlite:/// URL")
        check_url(url)
        kind = storage_kind(url)
        if kind == "journal":
            return _open_journal(journal_path(url), create, read_only)
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


def _open_journal(path: Path, create: bool, read_only: bool):
    from optuna.storages import JournalStorage

    if read_only:
        _require_file(path)  # Optuna's JournalFileBackend would create a missing file
        try:
            return JournalStorage(JournalFile(str(path)))
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
    backend = WritableJournalFile(str(path))
    backend.repair_torn_tail()
    return JournalStorage(backend)


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

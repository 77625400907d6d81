"""Where studies live: storage URLs (secrets masked), attribute names, trial tables.

The embedded default is an Optuna journal file, `runs/<study>.journal`: no server,
several local processes can run one study at once (appends are serialised by a lock
file; plain SQLite raises "database is locked" under concurrent writers), and
optuna-dashboard opens it (`optuna-dashboard runs/<study>.journal`). See
docs/studies.md for the measurements behind the choice.

URLs: a plain path or `journal:PATH` -> journal file; `sqlite:///...`, `postgresql://...`,
`mysql://...` -> RDBStorage (with heartbeats, so a killed worker's trial is failed and
retried). `mask_url()` hides passwords; every message goes through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from explorer.errors import UserError

# Trial user attrs (docs/ARCHITECTURE.md); the dashboard and export read these names.
SPEC, SPEC_ID = "spec", "spec_id"
PARAMS, MACS, ACTIVATIONS, SIZE_MB, SIZE_MIB = "params", "macs", "activations", "size_mb", "size_mib"
VAL_ACC, BEST_VAL_ACC, CURVE, VAL_LOSS = "val_acc", "best_val_acc", "curve", "val_loss"
TRAIN_SECONDS, IMAGES_PER_S, END = "train_seconds", "images_per_s", "end"
SEED, DEVICE, VERSIONS, GIT_REV = "seed", "device", "versions", "git_rev"
INFEASIBLE, OVER_BUDGET, DUPLICATE_OF, PRUNED_REASON = "infeasible", "over_budget", "duplicate_of", "pruned_reason"
FAIL_REASON, RETRY_OF = "fail_reason", "retry_of"  # also stored: why a trial failed, which trial it retries
# Study user attrs.
CONFIG, OBJECTIVES = "config", "objectives"
# Trial system attrs used to find trials whose worker died (journal files have no heartbeat).
WORKER_HOST, WORKER_PID, WORKER_START, HEARTBEAT = (
    "explorer:host", "explorer:pid", "explorer:pid_start", "explorer:heartbeat")

COST_COLUMNS = (PARAMS, MACS, ACTIVATIONS, SIZE_MB, SIZE_MIB)
KNOB_COLUMNS = ("stem", "stem_width", "base_e", "incr_e", "freq", "pct_3x3", "sr", "n_fire",
                "pools", "bypass", "batchnorm", "dropout")
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
HEARTBEAT_INTERVAL_S, GRACE_PERIOD_S = 30, 120
_DURABLE_OPS = (0, 1, 4, 6)  # journal ops CREATE_STUDY, DELETE_STUDY, CREATE_TRIAL, SET_TRIAL_STATE_VALUES

# user:PASSWORD@ (up to the last @ before the host, so an unencoded @ in it is hidden too)
_SECRET = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^\s/?#]*@")
# libpq's query-string forms: ?password=..., &sslpassword=..., &passfile=...
_SECRET_QUERY = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd|sslpassword|passfile)=)[^&#\s]*")


def mask_url(text: str) -> str:
    """Hide every password in `text`: postgresql://u:***@host/db, ...?password=***."""
    text = _SECRET.sub(lambda m: m.group("head") + "***@", str(text))
    return _SECRET_QUERY.sub(lambda m: m.group("head") + "***", text)


def default_storage_url(study_name: str) -> str:
    """The embedded default: a journal file under runs/."""
    return f"runs/{study_name}.journal"


def kind_of(url: str) -> str:
    """'journal' or 'rdb'."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    return "rdb" if scheme in RDB_SCHEMES else "journal"


def journal_path(url: str) -> Path:
    """The file behind a journal URL (`journal:PATH` or a plain path)."""
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def open_storage(url: str, *, create: bool = False,
                 stale_callback: Callable | None = None,
                 heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
                 grace_period: int = GRACE_PERIOD_S):
    """An Optuna storage for `url`; UserError (one line, secrets masked) if it cannot be opened.

    With create=False a missing journal or SQLite file is an error rather than a new file.
    """
    forms = "use a path, journal:PATH, sqlite:///PATH or postgresql://USER@HOST/DB"
    if "://" in url and kind_of(url) != "rdb":
        raise UserError(f"unknown storage URL {mask_url(url)!r}: {forms}")
    if "://" not in url and re.match(r"[A-Za-z][\w+.-]+:", url) and not url.startswith("journal:"):
        # sqlite:runs/x.db or postgresql:host would otherwise become a file named "sqlite:..."
        raise UserError(f"storage {mask_url(url)!r} looks like a URL without '//': {forms}")
    if re.fullmatch(r"sqlite(\+\w+)?://(/(:memory:)?)?", url.strip()):
        raise UserError(f"storage {url!r} is an in-memory database that other processes and later "
                        "runs cannot see; give a file: sqlite:///runs/NAME.db")
    try:
        if kind_of(url) == "journal":
            return _open_journal(journal_path(url), create)
        return _open_rdb(url, create, stale_callback, heartbeat_interval, grace_period)
    except UserError:
        raise
    except Exception as exc:  # sqlalchemy / driver / OS errors: one line, masked
        reason = mask_url(" ".join(str(exc).split()))[:300]
        raise UserError(f"cannot open storage {mask_url(url)}: {reason}; check the URL, the "
                        "server and the credentials") from None


def _open_journal(path: Path, create: bool):
    from optuna.storages import JournalStorage

    if not path.exists():
        if not create:
            raise UserError(f"no study storage at {path}; run `explorer run STUDY.yaml` first "
                            "or pass --storage")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {path.parent}: {exc.strerror}; pass --storage") from None
    if path.is_dir():
        raise UserError(f"storage {path} is a directory; give a file path such as {path}/study.journal")
    backend = _SafeJournalFileBackend(str(path))
    backend.repair_torn_tail()
    return JournalStorage(backend)


def _open_rdb(url: str, create: bool, stale_callback, heartbeat_interval, grace_period):
    from optuna.storages import RDBStorage

    if url.startswith("sqlite:///") and not create:
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            raise UserError(f"no study storage at {path}; run `explorer run STUDY.yaml` first")
    import warnings

    from optuna.exceptions import ExperimentalWarning

    from explorer import pg

    engine_kwargs: dict[str, Any] = {}
    if pg.is_postgres(url):
        # Fail fast with one line when the server is down, and keep idle pooled connections alive.
        url, engine_kwargs = pg.probe(url), pg.engine_kwargs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval is "experimental"
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period, heartbeat_stale_trial_callback=stale_callback)


def _journal_backend_class():
    from optuna.storages.journal import JournalFileBackend

    class SafeJournalFileBackend(JournalFileBackend):
        """A journal file whose appends Ctrl-C cannot tear, and whose torn tail is repaired."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            """Append under the lock; fsync only when a study or trial is created or finished.

            fsync flushes every earlier append of the file too, so each finished trial is
            durable with all its attributes, at two fsyncs per trial instead of one per
            attribute (about 3 ms each here). Ctrl-C waits until the line is written.
            """
            from optuna.storages.journal._file import get_lock_file

            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            durable = any(log.get("op_code") in _DURABLE_OPS for log in logs)
            with defer_interrupts(), get_lock_file(self._lock):
                with open(self._file_path, "rb+" if os.path.exists(self._file_path) else "wb+") as f:
                    # Writers append under this lock, so a torn last line here is a dead
                    # writer's (kill -9, disk full): cut it off, or our line would extend it
                    # into one unreadable line and every later open would fail.
                    _cut_torn_tail(f)
                    f.seek(0, os.SEEK_END)
                    f.write(text.encode("utf-8"))
                    f.flush()
                    if durable:
                        os.fsync(f.fileno())

        def repair_torn_tail(self) -> None:
            """Drop a last line left unfinished by a killed writer (kill -9 mid-append).

            Reads first without the lock: an intact file (the usual case) is left alone even
            where it is read-only to us, so `status` and `trials` can read it.
            """
            from optuna.storages.journal._file import get_lock_file

            if os.path.getsize(self._file_path) == 0:
                return
            with open(self._file_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) == b"\n":
                    return
            if not os.access(self._file_path, os.W_OK):
                return  # torn but not ours to repair; Optuna's reader skips an unfinished line
            with get_lock_file(self._lock), open(self._file_path, "rb+") as f:
                _cut_torn_tail(f)

    return SafeJournalFileBackend


def _cut_torn_tail(f) -> None:
    """Truncate an open (rb+) journal file after its last newline, if it ends mid-line."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    # read backwards in blocks to the last newline (journals grow large)
    pos = size
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


def _SafeJournalFileBackend(path: str):  # noqa: N802 - a class made lazily (optuna import)
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _journal_backend_class()
    return _BACKEND(path)


_BACKEND = None


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


def study_names(storage) -> list[str]:
    """Names of the studies in an open storage."""
    return [s.study_name for s in storage.get_all_studies()]


def list_studies(storage_url: str) -> list[dict[str, Any]]:
    """One row per study: name, objectives, directions, trial counts by state, description."""
    storage = open_storage(storage_url)
    rows = []
    for s in storage.get_all_studies():
        trials = storage.get_all_trials(s._study_id, deepcopy=False)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        config = s.user_attrs.get(CONFIG) or {}
        rows.append({"name": s.study_name, "objectives": s.user_attrs.get(OBJECTIVES),
                     "directions": [d.name.lower() for d in s.directions],
                     "n_trials": len(trials), "states": counts,
                     "description": config.get("description", "")})
    return rows


def load_study_record(storage, study_name: str):
    """The FrozenStudy named `study_name`; UserError listing the names that exist."""
    for s in storage.get_all_studies():
        if s.study_name == study_name:
            return s
    names = study_names(storage)
    raise UserError(f"no study named {study_name!r} in this storage; found: "
                    f"{', '.join(names) if names else 'none'}")


def load_trials(storage_url: str, study_name: str, storage=None):
    """The study's trials as a pandas DataFrame, one row per trial.

    Columns: number, state, start, complete, duration_s, the knobs (`pools` as '0,3,7'),
    the costs (params, macs, activations, size_mb, size_mib), the metrics (val_acc,
    best_val_acc, train_seconds, images_per_s, end), spec_id, duplicate_of, infeasible,
    over_budget, pruned_reason, fail_reason, retry_of, seed, device, git_rev, and the
    objects curve (list), val_loss (list), spec (dict), values (list).
    """
    import pandas as pd

    storage = storage or open_storage(storage_url)
    record = load_study_record(storage, study_name)
    trials = storage.get_all_trials(record._study_id, deepcopy=False)
    df = pd.DataFrame([trial_row(t) for t in trials], columns=TABLE_COLUMNS)
    for col in (DUPLICATE_OF, RETRY_OF, PARAMS, MACS, ACTIVATIONS, SEED):
        df[col] = df[col].astype("Int64")  # integers with gaps, not floats
    df[INFEASIBLE] = df[INFEASIBLE].astype(bool)
    return df


TABLE_COLUMNS = (["number", "state", "start", "complete", "duration_s"] + list(KNOB_COLUMNS)
                 + list(COST_COLUMNS)
                 + [VAL_ACC, BEST_VAL_ACC, TRAIN_SECONDS, IMAGES_PER_S, END, SPEC_ID, DUPLICATE_OF,
                    INFEASIBLE, OVER_BUDGET, PRUNED_REASON, FAIL_REASON, RETRY_OF, SEED, DEVICE,
                    GIT_REV, CURVE, VAL_LOSS, SPEC, "values"])


def trial_row(t) -> dict[str, Any]:
    """One FrozenTrial as a flat row (see load_trials)."""
    a = t.user_attrs
    spec = a.get(SPEC) or {}
    row: dict[str, Any] = {
        "number": t.number, "state": t.state.name, "start": t.datetime_start,
        "complete": t.datetime_complete,
        "duration_s": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start else None,
    }
    for k in KNOB_COLUMNS:
        v = spec.get(k)
        row[k] = (",".join(map(str, v)) or "none") if k == "pools" and v is not None else v
    for k in TABLE_COLUMNS[len(row):]:
        if k not in row:
            row[k] = a.get(k)
    row[INFEASIBLE] = bool(a.get(INFEASIBLE, False))
    row["values"] = list(t.values) if t.values else None
    return row


def to_json_text(df) -> str:
    """The table as a JSON list of records (timestamps ISO 8601)."""
    return df.to_json(orient="records", date_format="iso", indent=None)


def to_csv_text(df) -> str:
    """The table as CSV; list and dict cells as JSON text."""
    out = df.copy()
    for col in (CURVE, VAL_LOSS, SPEC, "values"):
        out[col] = out[col].map(lambda v: json.dumps(v) if v is not None else "")
    return out.to_csv(index=False)


def kind_of_storage(storage) -> str:
    """'journal' for a JournalStorage (no Optuna heartbeat), else 'rdb'."""
    from optuna.storages import JournalStorage

    return "journal" if isinstance(storage, JournalStorage) else "rdb"


def set_trial_attrs(storage, trial_id: int, attrs: dict[str, Any], *, system: bool = False) -> None:
    """Set several trial user (or system) attrs in one journal append or one RDB transaction.

    A trial sets some 25 attributes; one SQLite commit each cost about 5 ms apiece here
    (over 100 ms per trial), and one journal append each took a lock file and a write.
    """
    from optuna.storages import JournalStorage

    if not attrs:
        return
    if isinstance(storage, JournalStorage) and hasattr(storage, "_write_log"):
        from optuna.storages.journal._storage import JournalOperation

        op = JournalOperation.SET_TRIAL_SYSTEM_ATTR if system else JournalOperation.SET_TRIAL_USER_ATTR
        key = "system_attr" if system else "user_attr"
        with storage._thread_lock:
            worker = storage._replay_result.worker_id
            logs = [{"op_code": op, "worker_id": worker, "trial_id": trial_id, key: {k: v}}
                    for k, v in attrs.items()]
            storage._backend.append_logs(logs)
            storage._sync_with_backend()
        return
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a cache
    if type(backend).__name__ == "RDBStorage" and hasattr(backend, "_set_trial_attr_without_commit"):
        # One transaction (one commit, about 5 ms on SQLite) instead of one per attribute.
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        model = models.TrialSystemAttributeModel if system else models.TrialUserAttributeModel
        with _create_scoped_session(backend.scoped_session, True) as session:
            for k, v in attrs.items():
                backend._set_trial_attr_without_commit(session, model, trial_id, k, v)
        return
    setter = storage.set_trial_system_attr if system else storage.set_trial_user_attr
    for k, v in attrs.items():
        setter(trial_id, k, v)

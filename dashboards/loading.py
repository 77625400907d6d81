"""Read studies from an Optuna storage into tables, without ever writing to it.

Needs only optuna and the stored attribute names (docs/ARCHITECTURE.md). A journal file
is read without its lock (Optuna's journal readers never take it), a missing file is
never created and a torn last line is left alone (explorer.storage.open_storage would
repair it, a write); SQLite is opened with `mode=ro`, PostgreSQL in read-only
transactions, and neither creates tables. Secrets in URLs are masked wherever shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorer import pg
from explorer.errors import UserError
from explorer.export import NOISE_ATTRS, calibrations

# Scalar trial user attrs copied into columns (missing ones become NaN / None).
NUMERIC_ATTRS = ("params", "macs", "activations", "size_mb", "size_mib", "val_acc",
                 "best_val_acc", "train_seconds", "images_per_s", "latency_ms", "acc_mean", "acc_std",
                 "seed", "duplicate_of")
TEXT_ATTRS = ("spec_id", "end", "device", "over_budget", "pruned_reason", "git_rev")
SQLITE_MAGIC = b"SQLite format 3\x00"


class StorageError(UserError):
    """A storage that cannot be read: missing, unreadable or not an Optuna storage."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by *** (user:pw@host and ?password=...)."""
    from explorer.storage import mask_url as mask

    return mask(url)

def storage_kind(url: str) -> str:
    """'journal', 'sqlite' or 'rdb' for a storage URL, `journal:PATH` or plain file path."""
    url = str(url)
    if url.startswith("journal:"):
        return "journal"
    if url.startswith("sqlite:"):
        return "sqlite"
    if "://" in url:
        return "rdb"
    path = Path(url)
    try:
        with path.open("rb") as f:
            if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                return "sqlite"
    except OSError:
        pass
    return "journal"


def _sqlite_path(url: str) -> str:
    """The file path inside sqlite:///relative or sqlite:////absolute (no query)."""
    if not url.startswith("sqlite:///"):
        raise StorageError(f"cannot read {mask_url(url)}: expected sqlite:///PATH")
    return url[len("sqlite:///"):].split("?", 1)[0]


def open_storage(url: str):
    """Open a storage URL or journal path for reading; raises StorageError with the fix."""
    import optuna

    url = str(url).strip()
    if not url:
        raise StorageError("no storage given: pass --storage PATH.journal or a sqlite:/// URL")
    kind = storage_kind(url)
    try:
        if kind == "journal":
            return _open_journal(url.removeprefix("journal:"))
        if kind == "sqlite":
            path = url if not url.startswith("sqlite:") else _sqlite_path(url)
            _require_file(path)
            ro = f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true"
            return optuna.storages.RDBStorage(ro, skip_table_creation=True)
        engine_kwargs: dict[str, Any] = {}
        if pg.is_postgres(url):
            # One fast probe (a one-line reason when the server is down), then read-only sessions.
            url, engine_kwargs = pg.probe(url), pg.engine_kwargs()
            engine_kwargs["connect_args"]["options"] = "-c default_transaction_read_only=on"
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)
    except StorageError:
        raise
    except UserError as exc:
        raise StorageError(str(exc)) from None
    except Exception as exc:  # optuna, sqlalchemy and driver errors all mean "unreadable"
        raise StorageError(f"cannot read {mask_url(url)}: {_one_line(exc)}") from None


def _require_file(path: str) -> None:
    if not os.path.exists(path):
        raise StorageError(f"storage file {path} does not exist: check the path "
                           "(the dashboard never creates one)")
    if not os.path.isfile(path):
        raise StorageError(f"storage {path} is not a file")
    if not os.access(path, os.R_OK):
        raise StorageError(f"storage file {path} is not readable: check its permissions")


def _open_journal(path: str):
    from optuna.storages import JournalStorage

    _require_file(path)  # Optuna's JournalFileBackend would create a missing file
    try:
        return JournalStorage(_read_only_journal(path))
    except Exception as exc:
        raise StorageError(f"{path} is not an Optuna journal file ({_one_line(exc)}); "
                           "pass a .journal file or a sqlite:/// URL") from None


def _read_only_journal(path: str):
    """A journal backend that reads the file of Optuna's JournalFileBackend and cannot write.

    Same file format and the same rule for a torn last line (skipped until complete), but
    no lock, no file creation, and orjson when installed: JSON parsing was a fifth of the
    time to open a 10,000-trial journal.
    """
    from optuna.storages.journal import BaseJournalBackend

    class ReadOnlyJournalFile(BaseJournalBackend):
        def __init__(self) -> None:
            self._next = (0, 0)  # (log number, byte offset) where the next read starts

        def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
            number, offset = self._next if log_number_from >= self._next[0] else (0, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            logs = []
            for line in data.split(b"\n")[:-1]:  # the piece after the last newline is torn
                offset += len(line) + 1
                if number >= log_number_from and line.strip():
                    try:
                        logs.append(_loads(line))
                    except ValueError:
                        raise ValueError(f"line {number + 1} is not a journal entry") from None
                number += 1
            self._next = (number, offset)
            return logs

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise StorageError("the dashboard opens storages read-only")

    return ReadOnlyJournalFile()


def _loads(line: bytes) -> Any:
    global _loads  # noqa: PLW0603 - bind the fastest JSON parser on first use
    try:
        import orjson

        _loads = orjson.loads
    except ImportError:
        import json

        _loads = json.loads
    return _loads(line)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask_url(text[:300])


def list_studies(storage) -> pd.DataFrame:
    """One row per study: name, trial count, objectives, directions (creation order)."""
    rows = []
    for s in storage.get_all_studies():
        rows.append({
            "study": s.study_name,
            "n_trials": storage.get_n_trials(s._study_id),
            "objectives": ", ".join(map(str, s.user_attrs.get("objectives", []) or [])),
            "directions": ", ".join(d.name.lower() for d in s.directions),
        })
    return pd.DataFrame(rows, columns=["study", "n_trials", "objectives", "directions"])


def _study_id(storage, study_name: str) -> int:
    try:
        return storage.get_study_id_from_name(study_name)
    except KeyError:
        raise StorageError(f"no study named {study_name!r} in this storage") from None


def study_fingerprint(storage, study_name: str) -> tuple:
    """A cheap tuple that changes when trials are added or finish (the cache key)."""
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    study_id = _study_id(storage, study_name)
    if isinstance(storage, JournalStorage):  # replay is incremental: only new lines are read
        trials = storage.get_all_trials(study_id, deepcopy=False)
        return (len(trials), sum(t.datetime_complete is not None for t in trials))
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return (storage.get_n_trials(study_id),) + tuple(storage.get_n_trials(study_id, s) for s in states)


def _pools_text(value: Any) -> Any:
    """[0, 3, 7] -> '0,3,7' and [] -> 'none', as explorer.space encodes the pools param."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(int(v)) for v in value) or "none"
    return value


def _column(dicts: list[dict], name: str) -> list[Any]:
    return [d.get(name) for d in dicts]


def _numbers(values: list[Any]) -> np.ndarray:
    """Floats; None and anything else that is not a number (text, bools, lists) become NaN."""
    try:
        if not any(type(v) is bool for v in values):
            return np.array(values, dtype=float)  # C speed; None -> NaN
    except (TypeError, ValueError):
        pass
    return np.array([v if type(v) in (int, float) else np.nan for v in values], dtype=float)


def _knob_columns(specs: list[dict], params: list[dict]) -> dict[str, list[Any]]:
    """knob_* columns: the spec's fields, overridden by the sampled params where present."""
    names = dict.fromkeys(k for d in (specs[:1] + params[:1]) for k in d)  # usual case: same keys
    names.update(dict.fromkeys(k for d in specs + params for k in d if k not in names))
    out = {}
    for name in names:
        values = [p[name] if name in p else s.get(name) for s, p in zip(specs, params)]
        if name == "pools":  # lists in specs, "0,3,7" strings in params: one spelling
            values = [_pools_text(v) for v in values]
        out["knob_" + name] = values
    return out


def _attr_columns(attrs: list[dict]) -> dict[str, Any]:
    """The attribute columns, typed: numbers as floats, text as str, raw objects kept."""
    out: dict[str, Any] = {name: _numbers(_column(attrs, name)) for name in NUMERIC_ATTRS}
    for name in TEXT_ATTRS:
        out[name] = ["" if v is None else str(v) for v in _column(attrs, name)]
    out["infeasible"] = np.array([v is True for v in _column(attrs, "infeasible")], dtype=bool)
    for name, kind in (("curve", list), ("spec", dict), ("versions", dict), ("acc_seeds", list)):
        out[name] = [v if isinstance(v, kind) else kind() for v in _column(attrs, name)]
    loss = _column(attrs, "val_loss")
    out["val_loss_curve"] = [v if isinstance(v, list) else [] for v in loss]
    out["val_loss"] = _numbers([v[-1] if isinstance(v, list) and v else v for v in loss])
    return out


def _object_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A frame whose list columns stay Python objects (no per-column type inference)."""
    return pd.DataFrame({k: v if isinstance(v, np.ndarray) else pd.Series(v, dtype=object)
                         for k, v in columns.items()})


def load_trials(storage, study_name: str) -> pd.DataFrame:
    """Every trial of one study as a row: costs, accuracy, knobs (knob_*), spec and curve.

    `storage` is an open storage or a URL/path. Object columns `spec`, `curve`,
    `val_loss_curve` and `versions` hold the raw stored values; `trainer` and `data` the
    study's settings and `objectives` its objectives; `acc_mean` / `acc_std` / `acc_seeds`
    come from the trial or its calibration. `val_acc` falls back to
    the objective value when the study's `objectives` name it but the attr is missing.
    """
    if isinstance(storage, (str, os.PathLike)):
        storage = open_storage(str(storage))
    study_id = _study_id(storage, study_name)
    study_attrs = storage.get_study_user_attrs(study_id)
    objectives = list(study_attrs.get("objectives", []) or [])
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if not trials:
        return empty_frame()
    # Built column by column from plain lists: pandas' list-of-dicts constructor took
    # most of the load time at 10,000 trials.
    # A calibration (`explorer calibrate`) is a study attr: Optuna freezes finished trials.
    calib = calibrations(study_attrs)
    attrs = [{**{k: v for k, v in calib[t.number].items() if k in NOISE_ATTRS}, **t.user_attrs}
             if t.number in calib else t.user_attrs for t in trials]
    columns: dict[str, Any] = {
        "study": [study_name] * len(trials),
        "number": np.array([t.number for t in trials], dtype=int),
        "state": [t.state.name for t in trials],
        **_attr_columns(attrs),
    }
    if "val_acc" in objectives:
        i = objectives.index("val_acc")
        values = _numbers([t.values[i] if t.values and i < len(t.values) else None for t in trials])
        columns["val_acc"] = np.where(np.isnan(columns["val_acc"]), values, columns["val_acc"])
    start = [t.datetime_start for t in trials]
    complete = [t.datetime_complete for t in trials]
    columns.update(_knob_columns(columns["spec"], [t.params for t in trials]))
    # The study's trainer and data settings, so an exported config retrains the trial as run.
    config = study_attrs.get("config") if isinstance(study_attrs.get("config"), dict) else {}
    for key in ("trainer", "data"):
        columns[key] = [config.get(key) if isinstance(config.get(key), dict) else {}] * len(trials)
    columns["objectives"] = [objectives] * len(trials)
    frame = _object_frame(columns)
    frame["datetime_start"] = pd.to_datetime(pd.Series(start, dtype=object))
    frame["datetime_complete"] = pd.to_datetime(pd.Series(complete, dtype=object))
    frame["duration_s"] = (frame["datetime_complete"] - frame["datetime_start"]).dt.total_seconds()
    return _typed_knobs(frame)


def _typed_knobs(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric knob columns as numbers (sliders, colour scales), the rest left as objects."""
    for col in [c for c in frame.columns if c.startswith("knob_")]:
        values = frame[col]
        kinds = {type(v) for v in values.dropna()}
        if kinds and kinds <= {int, float}:
            frame[col] = pd.to_numeric(values)
        elif kinds == {bool}:
            frame[col] = values.astype(bool)
    return frame


def empty_frame() -> pd.DataFrame:
    """A trial table with the standard columns and no rows."""
    cols = (["study", "number", "state", *NUMERIC_ATTRS, *TEXT_ATTRS, "infeasible", "val_loss",
             "val_loss_curve", "curve", "spec", "versions", "acc_seeds", "trainer", "data", "objectives",
             "datetime_start", "datetime_complete",
             "duration_s"])
    return pd.DataFrame({c: pd.Series(dtype=float if c in NUMERIC_ATTRS else object) for c in cols})


def load_studies(storage, study_names: list[str]) -> pd.DataFrame:
    """Several studies' trials in one table with a fresh 0..n-1 index (the row id)."""
    frames = [load_trials(storage, name) for name in study_names]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_frame()
    return pd.concat(frames, ignore_index=True, sort=False)


def knob_columns(frame: pd.DataFrame, varied_only: bool = True) -> list[str]:
    """The knob_* columns, optionally only those taking at least two distinct values."""
    cols = [c for c in frame.columns if c.startswith("knob_")]
    if varied_only:
        cols = [c for c in cols if _n_distinct(frame[c]) > 1]
    return cols


def _n_distinct(values: pd.Series) -> int:
    try:
        return values.nunique(dropna=True)
    except TypeError:  # unhashable values (lists): compare their text
        return values.astype(str).nunique(dropna=True)

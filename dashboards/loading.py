"""Read studies for the dashboard, never writing: explorer.store opened read-only, plus the page's cache keys.

A journal file is read without its lock (Optuna's journal readers never take it), a
missing file is never created and a torn last line is left alone; SQLite is opened with
`mode=ro`, PostgreSQL in read-only transactions, and neither creates tables
(explorer.store.open_storage(read_only=True)). The trial table is explorer.store's, one
row per trial, shared with `explorer status` and `explorer trials`.
"""

from __future__ import annotations

import os

import pandas as pd

from explorer import store
from explorer.store import StorageError, mask_url  # noqa: F401 - the page's names for them
from explorer.store.table import empty_frame, objective_columns, read_trials  # noqa: F401


def open_storage(url: str):
    """Open a storage URL or journal path for reading; StorageError with the fix."""
    return store.open_storage(url, read_only=True)


def skipped_lines(storage) -> list[str]:
    """One line per unreadable journal line that reading skipped (explorer.store.journal_notes)."""
    return store.journal_notes(storage)


def list_studies(storage) -> pd.DataFrame:
    """One row per study: name, trial count, objectives, directions (creation order)."""
    rows = [{"study": s["name"], "n_trials": s["n_trials"], "objectives": ", ".join(map(str, s["objectives"])),
             "directions": ", ".join(s["directions"])} for s in store.list_studies(storage)]
    return pd.DataFrame(rows, columns=["study", "n_trials", "objectives", "directions"])


def study_fingerprint(storage, study_name: str) -> tuple:
    """A cheap tuple that changes when trials are added or finish (the cache key; explorer.store)."""
    return store.study_fingerprint(storage, study_name)


def load_trials(storage, study_name: str) -> pd.DataFrame:
    """Every trial of one study as a row (explorer.store.table); `storage` open or a URL/path."""
    if isinstance(storage, (str, os.PathLike)):
        storage = open_storage(str(storage))
    return read_trials(storage, study_name)


def load_studies(storage, study_names: list[str]) -> pd.DataFrame:
    """Several studies' trials in one table with a fresh 0..n-1 index (the row id)."""
    return records_table(load_records(storage, study_names))


def load_records(storage, study_names: list[str]) -> list[store.StudyRecord]:
    """The studies as read (explorer.store.read_study): trials, config, calibrations, directions."""
    return [store.read_study(storage, name) for name in study_names]


def records_table(records: list[store.StudyRecord]) -> pd.DataFrame:
    """The records' trials in one table with a fresh 0..n-1 index (the row id)."""
    frames = [f for f in (store.trial_table(rec) for rec in records) if not f.empty]
    if not frames:
        return empty_frame()
    return pd.concat(frames, ignore_index=True, sort=False)


def knob_columns(frame: pd.DataFrame, varied_only: bool = True) -> list[str]:
    """The knob_* columns, optionally only those taking at least two distinct values."""
    cols = store.table.knob_names(frame)
    if varied_only:
        cols = [c for c in cols if _n_distinct(frame[c]) > 1]
    return cols


def _n_distinct(values: pd.Series) -> int:
    try:
        return values.nunique(dropna=True)
    except TypeError:  # unhashable values (lists): compare their text
        return values.astype(str).nunique(dropna=True)

"""Writing trial attributes: many at once, in one journal append or one database transaction.

A trial sets some 25 attributes; one SQLite commit each cost about 5 ms apiece here (over
100 ms per trial), and one journal append each took the lock file and a write. On a
journal file the attributes go through Optuna's own public setters inside the backend's
batch() (so Optuna writes its own log records, and a change of its format cannot
corrupt ours); on a database through Optuna's own per-attribute writer in one transaction.
tests/test_store_optuna.py replays a journal written here with Optuna's stock reader.
"""

from __future__ import annotations

import contextlib
from typing import Any

from explorer.store import _optuna
from explorer.store.journal import WritableJournalFile


def set_trial_attrs(storage, trial_id: int, attrs: dict[str, Any], *, system: bool = False) -> None:
    """Set several trial user (or system) attrs of a RUNNING trial at once.

    Raises Optuna's UpdateFinishedTrialError when another worker finished the trial meanwhile.
    """
    if not attrs:
        return
    rdb = _optuna.rdb_of(storage)
    if rdb is not None and _optuna.rdb_set_trial_attrs(rdb, trial_id, attrs, system):
        return
    journal = _optuna.journal_backend_of(storage)
    batch = journal.batch() if isinstance(journal, WritableJournalFile) else contextlib.nullcontext()
    setter = storage.set_trial_system_attr if system else storage.set_trial_user_attr
    with batch:
        for key, value in attrs.items():
            setter(trial_id, key, value)
    if isinstance(journal, WritableJournalFile):
        storage.get_trial(trial_id)  # replay the appended lines now: a finished trial raises here

"""The only code that touches Optuna's private names.

Optuna offers no public way to these few things; each one either falls back to public
API when the private name is gone, or is pinned by tests/test_store_optuna.py, which
fails (loudly, in CI) when an Optuna release changes it. Nothing else in explorer
imports a private Optuna module or reads a private Optuna attribute
(tests/test_structure.py checks that).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# Optuna's journal op codes (JournalOperation), used when its private enum cannot be imported.
JOURNAL_OPS = {"CREATE_STUDY": 0, "DELETE_STUDY": 1, "SET_STUDY_USER_ATTR": 2, "SET_STUDY_SYSTEM_ATTR": 3,
               "CREATE_TRIAL": 4, "SET_TRIAL_PARAM": 5, "SET_TRIAL_STATE_VALUES": 6,
               "SET_TRIAL_INTERMEDIATE_VALUE": 7, "SET_TRIAL_USER_ATTR": 8, "SET_TRIAL_SYSTEM_ATTR": 9,
               "DISCARD_TRIALS": 10}


def study_storage(study):
    """The storage an optuna.Study reads and writes (no public accessor: pinned by a test)."""
    return study._storage


def study_id(study) -> int:
    """The storage's id of an optuna.Study."""
    try:
        return study._study_id
    except AttributeError:
        return study_storage(study).get_study_id_from_name(study.study_name)


def trial_id(trial, study=None) -> int:
    """The storage's id of a Trial or FrozenTrial (`study`: needed for a FrozenTrial's fallback)."""
    try:
        return trial._trial_id
    except AttributeError:
        study = study if study is not None else trial.study
        return study_storage(study).get_trial_id_from_study_id_trial_number(study_id(study), trial.number)


def rdb_of(storage):
    """The RDBStorage behind `storage` (Optuna wraps one in a private cache), or None."""
    from optuna.storages import RDBStorage

    if isinstance(storage, RDBStorage):
        return storage
    inner = getattr(storage, "_backend", None)  # optuna.storages._CachedStorage
    return inner if isinstance(inner, RDBStorage) else None


def journal_backend_of(storage):
    """The backend (log file) of a JournalStorage, or None for another storage."""
    from optuna.storages import JournalStorage

    return getattr(storage, "_backend", None) if isinstance(storage, JournalStorage) else None


def journal_ops() -> dict[str, int]:
    """Optuna's journal op codes by name (its private enum; JOURNAL_OPS if that moved)."""
    try:
        from optuna.storages.journal._storage import JournalOperation
    except ImportError:
        return dict(JOURNAL_OPS)
    return {op.name: int(op) for op in JournalOperation}


def rdb_set_trial_attrs(rdb, trial_id: int, attrs: dict[str, Any], system: bool) -> bool:
    """Set trial attrs in one transaction with Optuna's own per-attribute writer; False (nothing
    written) when that writer is gone, so the caller falls back to one public call each.

    One commit instead of one per attribute: about 5 ms each on SQLite here, over 100 ms
    for the 25 attributes of a trial.
    """
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        write = rdb._set_trial_attr_without_commit
        model = models.TrialSystemAttributeModel if system else models.TrialUserAttributeModel
    except (ImportError, AttributeError):
        return False
    def transaction() -> None:
        with _create_scoped_session(rdb.scoped_session, True) as session:
            for k, v in attrs.items():
                write(session, model, trial_id, k, v)

    outage = rdb_outage(rdb)
    transaction() if outage is None else outage.call(transaction)
    return True


# Optuna's trial runner logs a failed trial under this (private) module's logger: a warning
# with the whole traceback, then "Trial N failed with value None.".
OPTIMIZE_LOGGER = "optuna.study._optimize"
_FAILED = re.compile(r"Trial (\d+) failed with (parameters|value)")


class _HandledFailures(logging.Filter):
    """Drops Optuna's warnings (and traceback) for trials that failed of a condition we handle."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: tuple[type[BaseException], ...] = ()
        self._dropped: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        m = _FAILED.match(record.getMessage())
        if m is None:
            return True
        number, exc = int(m.group(1)), record.exc_info
        if m.group(2) == "parameters":
            if exc and exc[0] is not None and issubclass(exc[0], self.handled):
                self._dropped.add(number)
                return False
            return True
        if number in self._dropped:  # the second line of a warning dropped above
            self._dropped.discard(number)
            return False
        return True


_FILTER = _HandledFailures()


def quiet_failures(*handled: type[BaseException]) -> None:
    """Silence Optuna's failed-trial warning and traceback for these exceptions: the caller
    prints its own one line (Ctrl-C, an invalid spec, a storage outage)."""
    logger = logging.getLogger(OPTIMIZE_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    _FILTER.handled = tuple(dict.fromkeys(_FILTER.handled + handled))


# RDBStorage methods that touch the database: BaseStorage's public ones, and the private ones
# Optuna's cache (_CachedStorage, which wraps every RDBStorage a study uses) calls directly.
RDB_RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
               "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
               "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
               "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
               "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
               "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
               "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs",
               "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id")


def retrying_rdb(url: str, outage, **kwargs):
    """An RDBStorage whose database calls ride out an outage through `outage.call`
    (explorer.store.outage): retried, heartbeats skipped, no stale trials while it settles."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage

    def retried(name: str):
        method = getattr(RDBStorage, name)

        def call(self, *args, **kw):
            return self.outage.call(method, self, *args, **kw)

        call.__name__ = name
        return call

    def set_trial_state_values(self, trial_id, state, values=None):
        tries = [0]

        def once():
            tries[0] += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                # a retry of a write the server committed before the connection dropped
                if tries[0] > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise
        return self.outage.call(once)

    def record_heartbeat(self, trial_id):
        try:
            RDBStorage.record_heartbeat(self, trial_id)
        except Exception as exc:  # noqa: BLE001 - a missed beat is skipped; the trial's calls retry
            if not outage_error(exc):
                raise
            self.outage.went_down(exc)
        else:
            self.outage.came_back()

    def _get_stale_trial_ids(self, study_id):
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        if self.outage.settling(grace + (self.heartbeat_interval or 0)):
            return []  # every heartbeat stopped during the outage: give each worker time to beat again
        return self.outage.call(RDBStorage._get_stale_trial_ids, self, study_id)

    def outage_error(exc) -> bool:
        from explorer.store.outage import is_connection_error

        return is_connection_error(exc)

    body = {name: retried(name) for name in RDB_RETRIED}
    body.update(set_trial_state_values=set_trial_state_values, record_heartbeat=record_heartbeat,
                _get_stale_trial_ids=_get_stale_trial_ids)
    cls = type("RetryingRDBStorage", (RDBStorage,), body)
    storage = cls.__new__(cls)
    storage.outage = outage
    RDBStorage.__init__(storage, url, **kwargs)
    return storage


def rdb_outage(rdb):
    """The explorer.store.outage.Outage of a storage made by retrying_rdb, or None."""
    return getattr(rdb, "outage", None)

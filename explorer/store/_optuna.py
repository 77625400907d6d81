"""The only code that touches Optuna's private names.

Optuna offers no public way to these few things; each one either falls back to public
API when the private name is gone, or is pinned by tests/test_store_optuna.py, which
fails (loudly, in CI) when an Optuna release changes it. Nothing else in explorer
imports a private Optuna module or reads a private Optuna attribute
(tests/test_structure.py checks that).
"""

from __future__ import annotations

import json
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


def rdb_fingerprint(storage, study_id: int) -> tuple | None:
    """A study's trials summed up by one SQL query on Optuna's tables (per state: count, largest
    trial id, latest completion) plus its number of study user attrs; None for a storage that is
    not an RDB, or when Optuna's schema changed (the caller then counts through the public API).

    Optuna's own `get_n_trials` loads every trial to count them (11 s at 10,000 trials on SQLite).
    """
    rdb = rdb_of(storage)
    if rdb is None:
        return None
    import sqlalchemy as sa

    try:
        with rdb.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT state, COUNT(*), MAX(trial_id), MAX(datetime_complete) FROM trials "
                                        "WHERE study_id = :s GROUP BY state"), {"s": study_id}).all()
            n_attrs = conn.execute(sa.text("SELECT COUNT(*) FROM study_user_attributes WHERE study_id = :s"),
                                   {"s": study_id}).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    return tuple(sorted((str(getattr(r[0], "name", r[0])), int(r[1]), int(r[2]), str(r[3])) for r in rows)) + (
        ("attrs", int(n_attrs or 0)),)


def rdb_trials(storage, study_id: int) -> list | None:
    """Every trial of a study in an RDB storage as Optuna's FrozenTrials, read by six bulk SELECTs
    on Optuna's own tables (its `get_all_trials` builds ORM objects: 11 s at 10,000 trials on
    SQLite, here under 2 s); None when not an RDB or Optuna's schema moved (the caller falls back
    to `get_all_trials`). tests/test_plain_optuna.py pins equality with `get_all_trials`."""
    rdb = rdb_of(storage)
    if rdb is None:
        return None
    try:
        import sqlalchemy as sa
        from optuna.distributions import json_to_distribution
        from optuna.storages._rdb import models
        from optuna.trial import FrozenTrial

        T = models.TrialModel.__table__
        tables = {"values": models.TrialValueModel.__table__, "params": models.TrialParamModel.__table__,
                  "user": models.TrialUserAttributeModel.__table__,
                  "system": models.TrialSystemAttributeModel.__table__,
                  "steps": models.TrialIntermediateValueModel.__table__}
        value_of = models.TrialValueModel.stored_repr_to_value
        step_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        ids = sa.select(T.c.trial_id).where(T.c.study_id == study_id)
        columns = {"values": ("objective", "value", "value_type"), "params": ("param_name", "param_value",
                   "distribution_json"), "user": ("key", "value_json"), "system": ("key", "value_json"),
                   "steps": ("step", "intermediate_value", "intermediate_value_type")}
        with rdb.engine.connect() as conn:
            head = conn.execute(sa.select(T.c.trial_id, T.c.number, T.c.state, T.c.datetime_start,
                                          T.c.datetime_complete).where(T.c.study_id == study_id)
                                .order_by(T.c.trial_id)).all()
            rows = {k: (_plain_rows if k in ("user", "system") else lambda c, q: c.execute(q).all())(
                        conn, sa.select(t.c.trial_id, *(t.c[c] for c in columns[k]))
                        .where(t.c.trial_id.in_(ids)).order_by(*t.primary_key.columns))
                    for k, t in tables.items()}
    except (ImportError, AttributeError, KeyError, sa.exc.SQLAlchemyError):
        return None
    by_id: dict[int, dict[str, Any]] = {r[0]: {"values": {}, "params": {}, "dists": {}, "user": {}, "system": {},
                                               "steps": {}} for r in head}
    for tid, objective, value, kind in rows["values"]:
        by_id[tid]["values"][objective] = value_of(value, kind)
    dists: dict[str, Any] = {}
    for tid, name, value, text in rows["params"]:
        dist = dists.get(text) or dists.setdefault(text, json_to_distribution(text))
        by_id[tid]["params"][name], by_id[tid]["dists"][name] = dist.to_external_repr(value), dist
    for kind in ("user", "system"):  # one json.loads for all: a call per value took 2 s at 10,000 trials
        decoded = json.loads("[" + ",".join(r[2] for r in rows[kind]) + "]") if rows[kind] else []
        for (tid, key, _), value in zip(rows[kind], decoded):
            by_id[tid][kind][key] = value
    for tid, step, value, kind in rows["steps"]:
        by_id[tid]["steps"][step] = step_of(value, kind)
    out = []
    for tid, number, state, start, complete in head:
        d = by_id[tid]
        values = [d["values"][i] for i in sorted(d["values"])] or None
        out.append(FrozenTrial(number=number, state=state, value=None, values=values,
                               datetime_start=_local(start), datetime_complete=_local(complete),
                               params=d["params"], distributions=d["dists"], user_attrs=d["user"],
                               system_attrs=d["system"], intermediate_values=d["steps"], trial_id=tid))
    return out


def _plain_rows(conn, query) -> list[tuple]:
    """The rows of a query on plain text and integer columns through the driver's own cursor
    (SQLAlchemy's Row objects took 1 s for the 250,000 attributes of 10,000 trials)."""
    compiled = query.compile(dialect=conn.dialect)
    params = [compiled.params[k] for k in compiled.positiontup] if compiled.positional else compiled.params
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _local(when):
    """Optuna's RDB stores naive UTC; its FrozenTrials carry naive local time."""
    import datetime as dt

    return None if when is None else when.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)


def rdb_trial_counts(storage) -> dict[int, int] | None:
    """Study id -> number of trials, by one SQL query (studies without trials left out); None as above."""
    rdb = rdb_of(storage)
    if rdb is None:
        return None
    import sqlalchemy as sa

    try:
        with rdb.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT study_id, COUNT(*) FROM trials GROUP BY study_id")).all()
    except sa.exc.SQLAlchemyError:
        return None
    return {int(s): int(n) for s, n in rows}


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

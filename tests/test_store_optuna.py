"""What explorer.store relies on in Optuna, pinned: a change in an Optuna release fails here, loudly.

explorer.store._optuna is the only code touching Optuna's private names; each test below
exercises one of them (or the public fallback used when it is gone). The journal replay
test reads a file written by explorer's writer with Optuna's own stock reader, so a drift
of the journal format between the two fails CI instead of corrupting studies.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from explorer import store
from explorer.store import _optuna, journal
from explorer.store import attrs as A
from explorer.store.journal import WritableJournalFile

USER = {A.SPEC: {"base_e": 16, "pools": [1, 3]}, A.PARAMS: 2842, A.SIZE_MB: 0.011368, A.CURVE: [0.1, 0.25],
        A.INFEASIBLE: False, A.DUPLICATE_OF: None, A.OVER_BUDGET: "params 1.2M > 1M", "unicode": "± µ 7×7"}


def _study(url: str):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="s", storage=store.open_storage(url, create=True, heartbeat_interval=None),
                               directions=["maximize", "minimize"])


def test_a_journal_written_by_our_writer_replays_in_optunas_stock_reader(tmp_path, monkeypatch):
    path = tmp_path / "s.journal"
    study = _study(str(path))
    trial = study.ask()
    tid = store.trial_id(trial)
    system = store.Worker.this().claim_attrs(heartbeat=True)
    writes = []  # each append under the lock cuts a torn tail first: count those
    monkeypatch.setattr(journal, "cut_torn_tail", lambda f, real=journal.cut_torn_tail: writes.append(1) or real(f))
    store.set_trial_attrs(store.study_storage(study), tid, USER)
    store.set_trial_attrs(store.study_storage(study), tid, system, system=True)
    assert len(writes) == 2  # one append (one lock, one write) per call, not one per attribute
    study.tell(trial, [0.5, 2842])
    stock = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    (t,) = stock.get_trials()
    assert t.state == TrialState.COMPLETE and t.values == [0.5, 2842]
    assert {k: t.user_attrs[k] for k in USER} == USER
    assert {k: t.system_attrs[k] for k in system} == system


def test_a_batch_that_fails_writes_nothing_and_a_finished_trial_refuses_attrs(tmp_path):
    path = tmp_path / "s.journal"
    study = _study(str(path))
    trial = study.ask()
    storage, tid = store.study_storage(study), store.trial_id(trial)
    backend = _optuna.journal_backend_of(storage)
    assert isinstance(backend, WritableJournalFile)
    size = path.stat().st_size
    with pytest.raises(RuntimeError), backend.batch():
        storage.set_trial_user_attr(tid, "a", 1)
        raise RuntimeError("interrupted mid-batch")
    assert path.stat().st_size == size
    study.tell(trial, [0.5, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        store.set_trial_attrs(storage, tid, {"late": 1})


def test_the_journal_op_codes_are_optunas():
    from optuna.storages.journal._storage import JournalOperation

    assert _optuna.journal_ops() == {op.name: int(op) for op in JournalOperation} == _optuna.JOURNAL_OPS


def test_a_study_and_its_trials_expose_their_storage_and_ids(tmp_path):
    storage = store.open_storage(str(tmp_path / "s.journal"), create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    assert _optuna.study_storage(study) is storage
    assert _optuna.study_id(study) == storage.get_study_id_from_name("s")
    public = storage.get_trial_id_from_study_id_trial_number(_optuna.study_id(study), trial.number)
    assert _optuna.trial_id(trial) == public == study._storage.get_trial(public)._trial_id


def test_the_public_fallbacks_find_the_same_ids(tmp_path):
    storage = store.open_storage(str(tmp_path / "s.journal"), create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    expected = (_optuna.study_id(study), _optuna.trial_id(trial))

    class Bare:  # a Study / Trial without the private attributes, as a future Optuna might be
        def __init__(self, **kw):
            self.__dict__.update(kw)

    bare_study = Bare(_storage=storage, study_name="s")
    assert _optuna.study_id(bare_study) == expected[0]
    assert _optuna.trial_id(Bare(number=trial.number, study=bare_study)) == expected[1]


def test_a_database_study_unwraps_to_its_rdbstorage_and_writes_attrs_in_one_transaction(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = _study(url)
    rdb = _optuna.rdb_of(store.study_storage(study))
    assert isinstance(rdb, RDBStorage) and store.study_storage(study) is not rdb  # Optuna's cache wraps it
    assert _optuna.rdb_of(rdb) is rdb and _optuna.journal_backend_of(rdb) is None
    trial = study.ask()
    tid = store.trial_id(trial)
    assert _optuna.rdb_set_trial_attrs(rdb, tid, USER, system=False) is True  # the private fast path exists
    store.set_trial_attrs(store.study_storage(study), tid, {A.HEARTBEAT: 1.5}, system=True)
    fresh = RDBStorage(url).get_trial(tid)
    assert {k: fresh.user_attrs[k] for k in USER} == USER and fresh.system_attrs[A.HEARTBEAT] == 1.5


def test_without_the_private_rdb_writer_attrs_go_one_public_call_each(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/s.db"
    study = _study(url)
    trial = study.ask()
    monkeypatch.setattr(_optuna, "rdb_set_trial_attrs", lambda *a: False)  # as if Optuna dropped it
    store.set_trial_attrs(store.study_storage(study), store.trial_id(trial), USER)
    fresh = RDBStorage(url).get_trial(store.trial_id(trial))
    assert {k: fresh.user_attrs[k] for k in USER} == USER

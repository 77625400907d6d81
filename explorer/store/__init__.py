"""explorer.store: the one door to Optuna's storages.

Open a storage (`open_storage`), read a study (`read_study` -> typed `TrialRecord`s,
`read_trials` -> the trial table), write trial attributes (`set_trial_attrs`), claim
trials under the study's lock with heartbeats and stale-trial retries (`work`). Stored
names live in `explorer.store.attrs`. Optuna's private names are touched only in
`explorer.store._optuna`.

    urls.py     storage URLs: default, kind, paths, absolute form, masking
    pg.py       PostgreSQL: URL checks, connection probe, advisory lock
    journal.py  journal file backends: read-only and writing (Ctrl-C safe, torn tails cut)
    open.py     open_storage(url, create=, read_only=)
    trials.py   TrialRecord, StudyRecord, read_study, study names, calibrations, int8 results
    table.py    the trial table (DataFrame) and its CSV / JSON forms
    write.py    set_trial_attrs: many attributes in one append or transaction
    workers.py  worker identity, heartbeats, failing and retrying dead workers' trials; cut trials
    claim.py    the study lock and the claim loop (exactly N trials across workers)
    rungs.py    multi-fidelity rung records: read and written under the study's lock
    outage.py   riding out a database outage: retries with back-off, one line, a limit
"""

from explorer.store._optuna import study_id, study_storage, trial_id
from explorer.store.claim import (
    claim_counts,
    count_done,
    fail_stale,
    file_lock,
    interrupted,
    stop_waiting,
    study_lock,
    trial_counts,
    tune_heartbeat,
    work,
)
from explorer.store.journal import StorageError, StorageWriteError
from explorer.store.open import check_writable, journal_notes, open_storage
from explorer.store.outage import DatabaseUnavailable
from explorer.store.outcome import (
    CUT_STATE,
    DUPLICATE_STATE,
    OVER_BUDGET_STATE,
    RUNG_STATE,
    counts_text,
    front_candidate,
    outcome_key,
)
from explorer.store.trials import (
    StudyRecord,
    TrialRecord,
    calibrations,
    find_study,
    list_studies,
    read_study,
    stored_config,
    study_fingerprint,
    study_int8,
    study_names,
)
from explorer.store.urls import (
    absolute_url,
    check_url,
    default_storage_url,
    journal_path,
    mask_url,
    password_note,
    runnable_url,
    storage_kind,
)
from explorer.store.workers import (
    Heartbeat,
    Worker,
    cut_retried,
    fail_stale_trials,
    finalise_own_running,
    is_cut,
    requeue_cut,
    retry_stale,
    retry_trial,
    state_key,
    uses_own_heartbeat,
)
from explorer.store.write import set_trial_attrs

__all__ = [
    "CUT_STATE", "DUPLICATE_STATE", "DatabaseUnavailable", "Heartbeat", "OVER_BUDGET_STATE", "RUNG_STATE",
    "StorageError", "StorageWriteError", "StudyRecord", "TrialRecord", "Worker", "absolute_url", "calibrations",
    "check_url", "check_writable", "claim_counts", "count_done", "counts_text", "cut_retried",
    "default_storage_url", "fail_stale", "fail_stale_trials", "file_lock", "finalise_own_running", "find_study",
    "front_candidate", "interrupted", "is_cut", "journal_notes", "journal_path", "list_studies", "mask_url",
    "open_storage", "outcome_key", "password_note", "read_study", "read_trials", "requeue_cut", "retry_stale",
    "retry_trial", "runnable_url", "set_trial_attrs", "state_key", "stop_waiting", "storage_kind", "stored_config",
    "study_fingerprint", "study_id", "study_int8", "study_lock", "study_names", "study_storage", "trial_counts",
    "trial_id", "trial_table", "tune_heartbeat", "uses_own_heartbeat", "work",
]


def __getattr__(name: str):
    """read_trials / trial_table on first use: the trial table needs pandas (over 100 MiB), which
    `explorer dashboard` and the other light commands never import."""
    if name in ("read_trials", "trial_table"):
        from explorer.store import table

        return getattr(table, name)
    raise AttributeError(f"module 'explorer.store' has no attribute {name!r}")

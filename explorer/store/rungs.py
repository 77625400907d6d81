"""Rung records of multi-fidelity studies: written by the trial that reaches a rung, read by the next.

A trial of a study with a `schedule:` (explorer.study.schedule) that reaches a rung epoch
takes the study's claim lock (`rung_lock`: the lock explorer.store.claim counts and asks
under), reads every network's result at that rung (`results_at`), is judged, and appends
its entry to its own user attr `rungs` before the lock is released, so whoever is judged
there next, on any worker and any storage, sees it. An entry holds the epoch, the rung
(1-based), val_acc, go_on and either the judgement (rank, place, peers, kept) or `follows`:
the trial whose decision on the same network it repeats (the retry of a trial killed after
the rung, or the same network trained twice at once). So each network is judged once per
rung, and a retry goes where its first run was sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

from explorer.store import _optuna
from explorer.store import attrs as A
from explorer.store.claim import study_lock
from explorer.store.write import set_trial_attrs


@dataclass(frozen=True)
class RungResult:
    """One network's decision at a rung: the trial that was judged, its accuracy there, where it went."""

    number: int
    spec_id: str
    val_acc: float
    go_on: bool
    attrs: dict[str, Any]  # that trial's user attrs (its costs)


def rung_lock(study) -> ContextManager[None]:
    """The study's claim lock, found from its own storage (a journal file's path from its backend)."""
    journal = _optuna.journal_backend_of(_optuna.study_storage(study))
    path = getattr(journal, "path", None)
    if journal is not None and path is None:
        return contextlib.nullcontext()  # a journal backend that is not a file of ours: no lock file
    return study_lock(study, str(Path(path)) if path else None)


def entries(trial) -> list[dict[str, Any]]:
    """The trial's rung entries (none outside a scheduled study)."""
    value = trial.user_attrs.get(A.RUNGS)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def results_at(trials, epoch: int) -> dict[str, RungResult]:
    """Per network (spec_id), the decision made at rung `epoch`: the judged entry, not those that follow it."""
    out: dict[str, RungResult] = {}
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        if a.get(A.DUPLICATE_OF) is not None:  # a duplicate copies its original's entries
            continue
        for e in entries(t):
            if e.get("epoch") == epoch and e.get("follows") is None and a.get(A.SPEC_ID):
                out.setdefault(a[A.SPEC_ID], RungResult(t.number, a[A.SPEC_ID], float(e["val_acc"]),
                                                        bool(e["go_on"]), a))
    return out


def append_entry(storage, trial_id: int, earlier: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Write the trial's rung entries with `entry` appended (one attribute write)."""
    set_trial_attrs(storage, trial_id, {A.RUNGS: [*earlier, entry]})


def stopped_at(trial) -> int | None:
    """The rung (1-based) a finished trial was stopped at, or None."""
    a = trial.user_attrs
    if a.get(A.END) != A.RUNG_END:
        return None
    rung = a.get(A.RUNG)
    return int(rung) if isinstance(rung, int) else None

"""Reading a study: its trials as typed records, the study's config, objectives and calibrations.

`read_study(storage, name)` is the one reader: `explorer export` selects from its records,
and `trial_table()` (explorer.store.table) turns them into the DataFrame that `status`,
`trials` and the dashboard show. A trial's seed-noise estimate (`acc_mean`, `acc_std`,
`acc_seeds`) is merged in from the study's `calibration/N` attr, the trial's own attrs
winning: Optuna freezes a finished trial's attrs, so `explorer calibrate` stores it there.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from explorer.core.util import number
from explorer.store import _optuna
from explorer.store import attrs as A
from explorer.store.journal import StorageError
from explorer.store.outcome import front_candidate


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """One stored trial as explorer reads it (plain values; `attrs` are never changed)."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    attrs: dict[str, Any]  # user attrs, with the study's calibration merged in
    params: dict[str, Any]  # the sampled knob values (pools as text, '0,3,7')
    values: list[float] | None
    start: dt.datetime | None
    complete: dt.datetime | None
    calibration: dict[str, Any] | None = None  # the study's calibration/N entry, as stored

    @classmethod
    def from_frozen(cls, t, calibration: dict[str, Any] | None = None) -> TrialRecord:
        """A record of an optuna FrozenTrial, merged with its study calibration (if any)."""
        return cls(t.number, t.state.name, merge_calibration(t.user_attrs, calibration), t.params,
                   list(t.values) if t.values else None, t.datetime_start, t.datetime_complete, calibration)

    def num(self, key: str) -> float:
        """The attr as a float; NaN when missing or not a number."""
        return number(self.attrs.get(key))

    @property
    def spec(self) -> dict[str, Any] | None:
        """The stored spec mapping, or None."""
        spec = self.attrs.get(A.SPEC)
        return spec if isinstance(spec, dict) else None

    @property
    def cut(self) -> bool:
        """The time_budget_s guard cut it: fewer epochs than its recipe, so not comparable."""
        return self.attrs.get(A.END) == A.CUT

    @property
    def trained(self) -> bool:
        """A front candidate (explorer.store.outcome.front_candidate: COMPLETE, not a duplicate, not cut by
        the time budget, not dead or diverged) within budget, with a finite val_acc and a spec: the trials
        a front is drawn from."""
        a = self.attrs
        return (front_candidate(self.state, a.get(A.END), a.get(A.DUPLICATE_OF)) and not a.get(A.INFEASIBLE)
                and math.isfinite(self.num(A.VAL_ACC)) and self.spec is not None)

    @property
    def noise(self) -> dict[str, Any]:
        """acc_mean / acc_std / acc_seeds where known."""
        return {k: self.attrs[k] for k in A.NOISE_ATTRS if k in self.attrs}


def merge_calibration(attrs: dict[str, Any], calibration: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's user attrs with its study calibration's acc_mean / acc_std / acc_seeds (its own win)."""
    if not calibration:
        return attrs
    return {**{k: v for k, v in calibration.items() if k in A.NOISE_ATTRS}, **attrs}


@dataclass(frozen=True)
class StudyRecord:
    """One stored study: name, storage URL, config, objectives, trials and calibrations."""

    name: str
    url: str
    config: dict[str, Any]
    objectives: list[str]
    frozen_trials: list  # optuna FrozenTrials, as read (explorer.store.table builds its columns from them)
    calibrations: dict[int, dict[str, Any]] = field(default_factory=dict)
    fidelity: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # recipe -> trial -> result
    int8: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial -> its trained network at int8
    directions: list[str] = field(default_factory=list)  # 'maximize' / 'minimize', one per objective
    explorer: bool = True  # written by explorer (its `config` attr), not a plain Optuna study

    @cached_property
    def trials(self) -> list[TrialRecord]:
        """The trials as TrialRecords (built on first use: the trial table does not need them)."""
        return [TrialRecord.from_frozen(t, self.calibrations.get(t.number)) for t in self.frozen_trials]

    @property
    def costs(self) -> list[str]:
        """The cost objectives (minimised); ['params'] for single-objective studies."""
        return [o for o in self.objectives if o != A.VAL_ACC] or [A.PARAMS]

    @property
    def size_key(self) -> str:
        """The first cost objective (the 'size' of the Pareto plot); params by default."""
        return self.costs[0]


def study_names(storage) -> list[str]:
    """Names of the studies in an open storage (creation order)."""
    return [s.study_name for s in storage.get_all_studies()]


def find_study(storage, name: str) -> int:
    """The study's id; StorageError (a UserError) listing the names that exist."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        names = study_names(storage)
        raise StorageError(f"no study named {name!r} in this storage; found: "
                           f"{', '.join(names) if names else 'none'}") from None


def calibrations(study_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> stored calibration, from the study user attrs `calibration/N`."""
    n = len(A.CALIBRATION_PREFIX)
    return {int(k[n:]): v for k, v in study_attrs.items()
            if k.startswith(A.CALIBRATION_PREFIX) and k[n:].isdigit() and isinstance(v, dict)}


def int8_results(study_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> int8 result, from the study user attrs `int8/N` (explorer.results.int8)."""
    n = len(A.INT8_PREFIX)
    return {int(k[n:]): v for k, v in study_attrs.items()
            if k.startswith(A.INT8_PREFIX) and k[n:].isdigit() and isinstance(v, dict)}


def study_int8(storage, name: str) -> dict[int, dict[str, Any]]:
    """A study's int8 results alone (its user attrs; no trial is read): the dashboard's cheap read."""
    return int8_results(storage.get_study_user_attrs(find_study(storage, name)))


def fidelity_results(study_attrs: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """Recipe key -> trial number -> long result, from the study user attrs `fidelity/<recipe>/<N>`."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for k, v in study_attrs.items():
        recipe, _, number = k[len(A.FIDELITY_PREFIX):].rpartition("/")
        if k.startswith(A.FIDELITY_PREFIX) and recipe and number.isdigit() and isinstance(v, dict):
            out.setdefault(recipe, {})[int(number)] = v
    return out


def read_study(storage, name: str, *, url: str = "",
               default_objectives: tuple[str, ...] | list[str] = A.DEFAULT_OBJECTIVES) -> StudyRecord:
    """Every trial of the study `name` in an open storage, with its config and calibrations."""
    study_id = find_study(storage, name)
    attrs = storage.get_study_user_attrs(study_id)
    config = attrs.get(A.CONFIG) if isinstance(attrs.get(A.CONFIG), dict) else {}
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    explorer = A.CONFIG in attrs or A.OBJECTIVES in attrs
    objectives = list(attrs.get(A.OBJECTIVES) or metric_names(storage, name)
                      or (default_objectives if explorer else [f"objective {i}" for i in range(len(directions))]))
    return StudyRecord(name, url, dict(config), objectives, all_trials(storage, study_id), calibrations(attrs),
                       fidelity=fidelity_results(attrs), int8=int8_results(attrs), directions=directions,
                       explorer=explorer)


def metric_names(storage, name: str) -> list[str]:
    """Optuna's own names for a study's objectives (`Study.set_metric_names`), or []."""
    import optuna

    return list(optuna.load_study(study_name=name, storage=storage).metric_names or [])


def all_trials(storage, study_id: int) -> list:
    """A study's FrozenTrials: bulk SELECTs on a database (explorer.store._optuna.rdb_trials), else
    Optuna's get_all_trials (a journal replays only the lines added since its last read)."""
    fast = _optuna.rdb_trials(storage, study_id)
    return fast if fast is not None else storage.get_all_trials(study_id, deepcopy=False)


def study_fingerprint(storage, name: str) -> tuple:
    """A cheap value that changes when a study gains trials, a trial finishes or a study attr is added
    (a page's cache key): one SQL query on a database, the replayed trials of a journal."""
    study_id = find_study(storage, name)
    fast = _optuna.rdb_fingerprint(storage, study_id)
    if fast is not None:
        return fast
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return (len(trials), sum(t.datetime_complete is not None for t in trials),
            len(storage.get_study_user_attrs(study_id)))


def stored_config(storage, name: str) -> dict[str, Any] | None:
    """The config stored with study `name` (its user attr `config`), or None; no trial is read."""
    config = storage.get_study_user_attrs(find_study(storage, name)).get(A.CONFIG)
    return config if isinstance(config, dict) else None


def _n_trials(storage, name: str, counts: dict[int, int] | None) -> int:
    study_id = find_study(storage, name)
    return counts.get(study_id, 0) if counts is not None else storage.get_n_trials(study_id)


def list_studies(storage) -> list[dict[str, Any]]:
    """One row per study (creation order): name, objectives, directions, n_trials, description."""
    rows = []
    counts = _optuna.rdb_trial_counts(storage)  # one query; Optuna's get_n_trials loads every trial
    for s in storage.get_all_studies():
        config = s.user_attrs.get(A.CONFIG) if isinstance(s.user_attrs.get(A.CONFIG), dict) else {}
        rows.append({"name": s.study_name, "objectives": list(s.user_attrs.get(A.OBJECTIVES) or []),
                     "directions": [d.name.lower() for d in s.directions],
                     "n_trials": _n_trials(storage, s.study_name, counts),
                     "description": config.get("description", "")})
    return rows

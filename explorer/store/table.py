"""A study's trials as one pandas DataFrame: the table `status`, `trials` and the dashboard use.

Columns: `study`, `number`, `state`; the numeric attrs (NUMERIC_ATTRS, as floats: NaN where
missing or not a number); the text attrs (TEXT_ATTRS, '' where missing); `infeasible`;
`val_loss` (the last epoch's) and the objects `curve`, `val_loss_curve`, `spec`, `versions`,
`acc_seeds`, `values`; one `knob_<name>` column per knob (the spec's field, or the
sampled value, `pools` as '0,3,7'); the study's `trainer`, `data` and `objectives`;
`datetime_start`, `datetime_complete`, `duration_s`. `val_acc` falls back to the
objective value when a trial of a study optimising it lacks the attr.

Built column by column from plain lists: pandas' list-of-dicts constructor took most of
the load time at 10,000 trials.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from explorer.design.spec import RANGES, TORCHVISION_HEAD
from explorer.store import attrs as A
from explorer.store.outcome import UNTRAINABLE_ENDS, front_candidate, outcome_keys
from explorer.store.trials import StudyRecord, merge_calibration, read_study

NUMERIC_ATTRS = (*A.COST_ATTRS, A.VAL_ACC, A.BEST_VAL_ACC, A.TRAIN_LOSS_SUM, A.TRAIN_SECONDS, A.IMAGES_PER_S,
                 A.LATENCY_MS, A.LATENCY_SPREAD, A.ACC_MEAN, A.ACC_STD, A.SEED, A.DUPLICATE_OF, A.RETRY_OF, A.RUNG)
TEXT_ATTRS = (A.SPEC_ID, A.END, A.DEVICE, A.OVER_BUDGET, A.PRUNED_REASON, A.FAIL_REASON, A.GIT_REV,
              A.LATENCY_SETTING, A.RETRY_REASON)
OBJECT_ATTRS = ((A.CURVE, list), (A.SPEC, dict), (A.VERSIONS, dict), (A.ACC_SEEDS, list), (A.RUNGS, list))
INT_COLUMNS = ("number", A.PARAMS, A.MACS, A.ACTIVATIONS, A.SEED, A.DUPLICATE_OF, A.RETRY_OF, A.RUNG)
STUDY_COLUMNS = ("study", "trainer", "data", "objectives", "directions")  # the same on every row of a study
KNOB_PREFIX = "knob_"
OBJECTIVE_PREFIX = "objective:"  # + an objective's name: the trial's value for it (any Optuna study)


def read_trials(storage, name: str) -> pd.DataFrame:
    """The trial table of study `name` in an open storage (StorageError if there is none)."""
    return trial_table(read_study(storage, name))


def trial_table(rec: StudyRecord) -> pd.DataFrame:
    """Every trial of one study as a row (see the module docstring)."""
    trials, calib = rec.frozen_trials, rec.calibrations
    if not trials:
        return empty_frame()
    attrs = [merge_calibration(t.user_attrs, calib.get(t.number)) if calib else t.user_attrs for t in trials]
    columns: dict[str, Any] = {
        "study": [rec.name] * len(trials),
        "number": np.array([t.number for t in trials], dtype=int),
        "state": [t.state.name for t in trials],
        **_attr_columns(attrs),
        "values": [list(t.values) if t.values else None for t in trials],
    }
    for i, name in enumerate(_objective_names(rec.objectives, rec.directions)):
        values = _numbers([t.values[i] if t.values and i < len(t.values) else None for t in trials])
        columns[OBJECTIVE_PREFIX + name] = values
        if name in NUMERIC_ATTRS:  # an objective explorer knows (val_acc, params, ...), by its value
            columns[name] = np.where(np.isnan(columns[name]), values, columns[name])
    columns.update(_knob_columns(columns[A.SPEC], [t.params for t in trials]))
    # The study's trainer and data settings, so an exported config retrains the trial as run.
    for key in ("trainer", "data"):
        value = rec.config.get(key)
        columns[key] = [value if isinstance(value, dict) else {}] * len(trials)
    columns["objectives"] = [rec.objectives] * len(trials)
    columns["directions"] = [rec.directions] * len(trials)
    frame = _object_frame(columns)
    frame["datetime_start"] = pd.to_datetime(pd.Series([t.datetime_start for t in trials], dtype=object))
    frame["datetime_complete"] = pd.to_datetime(pd.Series([t.datetime_complete for t in trials], dtype=object))
    frame["duration_s"] = (frame["datetime_complete"] - frame["datetime_start"]).dt.total_seconds()
    return _typed_knobs(frame)


def comparable(frame: pd.DataFrame, untrainable: bool = False) -> np.ndarray:
    """Rows a front may hold (explorer.store.outcome.front_candidate): COMPLETE, trained itself (not a
    duplicate), not cut by the time budget, and, unless `untrainable`, not dead or diverged.

    (Budgets are checked apart: `infeasible`.) A trial a schedule stopped at a rung is PRUNED, so left
    out by its state.
    """
    return np.asarray(front_candidate(frame["state"].to_numpy(dtype=object), frame[A.END].to_numpy(dtype=object),
                                      frame[A.DUPLICATE_OF].to_numpy(dtype=float), untrainable=untrainable),
                      dtype=bool).reshape(len(frame))


def untrainable(frame: pd.DataFrame) -> np.ndarray:
    """Rows of networks that could not train (`end` dead or diverged): off a front unless asked for."""
    return frame[A.END].isin(UNTRAINABLE_ENDS).to_numpy()


def outcome_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Trials per summary key (explorer.store.outcome.outcome_keys), as `explorer run` counts the trials it
    ran; explorer.store.outcome.counts_text words them."""
    keys = outcome_keys(frame["state"].to_numpy(dtype=object), frame[A.INFEASIBLE].to_numpy(dtype=bool),
                        frame[A.DUPLICATE_OF].to_numpy(dtype=float), frame[A.END].to_numpy(dtype=object),
                        frame[A.RUNG].to_numpy(dtype=float))
    names, n = np.unique(keys.astype(str), return_counts=True)
    return {str(k): int(c) for k, c in zip(names, n)}


def rung_counts(frame: pd.DataFrame) -> list[dict[str, int]]:
    """Per rung of a multi-fidelity schedule: its epoch, the networks judged there, how many went on.

    Counted from the judged entries of trials that trained themselves (a retry or a second run of
    the same network follows the first decision and is not counted again); [] without a schedule.
    """
    rungs: dict[int, dict[str, int]] = {}
    own = frame[A.DUPLICATE_OF].isna() if len(frame) else []
    for entries in frame.loc[own, A.RUNGS] if len(frame) else []:
        for e in entries:
            if isinstance(e, dict) and e.get("follows") is None and isinstance(e.get("rung"), int):
                r = rungs.setdefault(e["rung"], {"rung": e["rung"], "epoch": int(e.get("epoch", 0)),
                                                 "judged": 0, "went_on": 0})
                r["judged"] += 1
                r["went_on"] += int(bool(e.get("go_on")))
    return [rungs[k] for k in sorted(rungs)]


def empty_frame() -> pd.DataFrame:
    """A trial table with the standard columns and no rows."""
    cols = (["study", "number", "state", *NUMERIC_ATTRS, *TEXT_ATTRS, "infeasible", "val_loss",
             "val_loss_curve", *(name for name, _ in OBJECT_ATTRS), "values", "trainer", "data",
             "objectives", "directions", "datetime_start", "datetime_complete", "duration_s"])
    return pd.DataFrame({c: pd.Series(dtype=float if c in NUMERIC_ATTRS else object) for c in cols})


def latency_settings(frame: pd.DataFrame) -> dict[str, list[int]]:
    """The settings the rows' latencies were measured on: label -> trial numbers (rows without one left out)."""
    out: dict[str, list[int]] = {}
    for label, number in zip(frame[A.LATENCY_SETTING], frame["number"]):
        if label:
            out.setdefault(label, []).append(int(number))
    return out


def objective_columns(frame: pd.DataFrame) -> dict[str, str]:
    """The objective:<name> columns with their direction ('maximize' / 'minimize'), first study's first."""
    out: dict[str, str] = {}
    if not len(frame) or "directions" not in frame.columns:
        return out
    first = frame[~frame["study"].duplicated()]  # one row per study
    for objectives, directions in zip(first["objectives"], first["directions"]):
        if isinstance(objectives, list) and isinstance(directions, list):
            for name, direction in zip(_objective_names(objectives, directions), directions):
                out.setdefault(OBJECTIVE_PREFIX + name, direction)
    return {c: d for c, d in out.items() if c in frame.columns}


def _objective_names(objectives: list[str], directions: list[str]) -> list[str]:
    """The study's objective names where they match its directions, else 'objective 0', 'objective 1', ..."""
    if not directions or len(objectives) == len(directions):
        return list(objectives)
    return [f"objective {i}" for i in range(len(directions))]


def knob_names(frame: pd.DataFrame) -> list[str]:
    """The knob_* columns, in table order."""
    return [c for c in frame.columns if c.startswith(KNOB_PREFIX)]


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


def _attr_columns(attrs: list[dict]) -> dict[str, Any]:
    """The attribute columns, typed: numbers as floats, text as str, raw objects kept."""
    out: dict[str, Any] = {name: _numbers(_column(attrs, name)) for name in NUMERIC_ATTRS}
    for name in TEXT_ATTRS:
        out[name] = ["" if v is None else str(v) for v in _column(attrs, name)]
    out[A.INFEASIBLE] = np.array([v is True for v in _column(attrs, A.INFEASIBLE)], dtype=bool)
    for name, kind in OBJECT_ATTRS:
        out[name] = [v if isinstance(v, kind) else kind() for v in _column(attrs, name)]
    loss = _column(attrs, A.VAL_LOSS)
    out["val_loss_curve"] = [v if isinstance(v, list) else [] for v in loss]
    out[A.VAL_LOSS] = _numbers([v[-1] if isinstance(v, list) and v else v for v in loss])
    return out


def _pools_text(value: Any) -> Any:
    """[0, 3, 7] -> '0,3,7' and [] -> 'none', as explorer.study.space encodes the pools param."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(int(v)) for v in value) or "none"
    return value


def _knob_columns(specs: list[dict], params: list[dict]) -> dict[str, list[Any]]:
    """knob_* columns: the spec's fields, overridden by the sampled params where present."""
    names = dict.fromkeys(k for d in (specs[:1] + params[:1]) for k in d)  # usual case: same keys
    names.update(dict.fromkeys(k for d in specs + params for k in d if k not in names))
    out = {}
    for name in names:
        # a stored spec without a head key has torchvision's head (the knobs' defaults)
        default = TORCHVISION_HEAD.get(name)
        values = [p[name] if name in p else s.get(name, default if s else None) for s, p in zip(specs, params)]
        if name == "pools":  # lists in specs, "0,3,7" strings in params: one spelling
            values = [_pools_text(v) for v in values]
        out[KNOB_PREFIX + name] = values
    return out


def _object_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A frame whose list columns stay Python objects (no per-column type inference)."""
    return pd.DataFrame({k: v if isinstance(v, np.ndarray) else pd.Series(v, dtype=object)
                         for k, v in columns.items()})


def _typed_knobs(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric knob columns as numbers (sliders, colour scales), the rest left as objects."""
    for col in knob_names(frame):
        values = frame[col]
        kinds = {type(v) for v in values.dropna()}
        if kinds and kinds <= {int, float}:
            frame[col] = pd.to_numeric(values)
        elif kinds == {bool}:
            frame[col] = values.astype(bool)
    return frame


# --- the table as files (`explorer trials`) --------------------------------------------------

def export_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as `explorer trials` writes it: number, state, times and knobs first; no per-study
    columns; counts as integers; missing text as null."""
    first = ["number", "state", "datetime_start", "datetime_complete", "duration_s", *knob_names(frame)]
    rest = [c for c in frame.columns if c not in first and c not in STUDY_COLUMNS]
    out = frame[first + rest].copy()
    ints = [*INT_COLUMNS, *(KNOB_PREFIX + n for n, r in RANGES.items() if r.kind == "int")]
    for col in [c for c in ints if c in out.columns and pd.api.types.is_numeric_dtype(out[c])]:
        out[col] = out[col].round().astype("Int64")  # integers with gaps (16, not 16.0)
    for col in TEXT_ATTRS:
        out[col] = out[col].map(lambda v: v or None).astype(object)
    return out


def to_json_text(frame: pd.DataFrame) -> str:
    """The table as a JSON list of records (timestamps ISO 8601)."""
    return export_columns(frame).to_json(orient="records", date_format="iso", indent=None)


def to_csv_text(frame: pd.DataFrame) -> str:
    """The table as CSV; list and dict cells as JSON text."""
    out = export_columns(frame)
    for col in ("curve", "val_loss_curve", "spec", "versions", "acc_seeds", "rungs", "values"):
        out[col] = out[col].map(lambda v: json.dumps(v) if v is not None else "")
    return out.to_csv(index=False)

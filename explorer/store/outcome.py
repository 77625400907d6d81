"""How a stored trial counts: its key in a summary's counts, their words, and which trials a front may hold.

One place for both rules, so `explorer run`'s summary, `explorer status`, `explorer export` and the
dashboard count and choose alike. A duplicate (a point that builds a network already trained) reuses
that trial's result: it is counted apart from the networks trained and is never on a front. A trial
cut by the time budget or stopped at a rung of a multi-fidelity schedule trained fewer epochs than
its recipe: counted apart, never on a front. A network that ended `dead` (every output 0: chance
accuracy) or `diverged` (a non-finite loss) could not train, so it is no trade-off: off the front
unless asked for (the dashboard's toggle).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from explorer.store import attrs as A

CUT_STATE = "CUT"  # a summary key: trials the time_budget_s guard cut (stored PRUNED)
DUPLICATE_STATE = "DUPLICATE"  # a summary key: trials that reused an earlier trial's result
OVER_BUDGET_STATE = "OVER_BUDGET"  # a summary key: trials a study's budget rejected before training
RUNG_STATE = "RUNG"  # + a rung's index: a summary key for trials a schedule stopped there (stored PRUNED)
UNTRAINABLE_ENDS = ("dead", "diverged")  # trainer ends of a network that cannot train
# summary key -> (one, several); a finished COMPLETE trial that is none of the above trained a network
WORDS = {"COMPLETE": ("network trained", "networks trained"),
         DUPLICATE_STATE: ("duplicate (reused)", "duplicates (reused)"),
         OVER_BUDGET_STATE: ("over budget (not trained)",) * 2, "PRUNED": ("pruned (stopped early)",) * 2,
         CUT_STATE: (A.CUT_RETRY,) * 2, "FAIL": ("failed",) * 2, "RUNNING": ("running",) * 2,
         "WAITING": ("waiting",) * 2}


def _missing(value: Any) -> Any:
    """None, or the trial table's NaN for a missing number (elementwise on an array)."""
    if isinstance(value, np.ndarray):
        return np.isnan(value) if value.dtype.kind == "f" else np.array([_missing(v) for v in value], dtype=bool)
    return value is None or (isinstance(value, float) and math.isnan(value))


def outcome_keys(state: np.ndarray, infeasible: np.ndarray, duplicate_of: np.ndarray, end: np.ndarray,
                 rung: np.ndarray | None = None) -> np.ndarray:
    """Each trial's key in a summary's counts: over budget, a duplicate, cut by the time budget, stopped at
    rung k of a schedule (RUNG_STATE + k), else its state (arrays of the trials' values, e.g. the trial
    table's columns; `rung` the 1-based rung a schedule stopped it at, missing where none)."""
    state, end = np.asarray(state, dtype=object), np.asarray(end, dtype=object)
    rung = np.full(len(state), np.nan) if rung is None else np.asarray(
        [np.nan if _missing(r) or isinstance(r, bool) else float(r) for r in rung], dtype=float)
    stopped = (end == A.RUNG_END) & np.isfinite(rung)
    at_rung = np.array([f"{RUNG_STATE}{int(r)}" if ok else "" for r, ok in zip(rung, stopped)], dtype=object)
    return np.select([np.asarray(infeasible, dtype=bool), ~_missing(np.asarray(duplicate_of)), end == A.CUT, stopped],
                     [OVER_BUDGET_STATE, DUPLICATE_STATE, CUT_STATE, at_rung], default=state)


def outcome_key(state: str, attrs: Mapping[str, Any]) -> str:
    """One trial's key in a summary's counts (`outcome_keys`) from its state and user attrs."""
    rung = attrs.get(A.RUNG)
    return str(outcome_keys(np.array([state], dtype=object), np.array([attrs.get(A.INFEASIBLE) is True]),
                            np.array([attrs.get(A.DUPLICATE_OF)], dtype=object),
                            np.array([attrs.get(A.END)], dtype=object),
                            np.array([rung if isinstance(rung, int) else None], dtype=object))[0])


def _place(key: str) -> tuple:
    """A key's place in a summary: WORDS' order, stopped-at-rung keys by rung after the pruned ones."""
    if key.startswith(RUNG_STATE) and key[len(RUNG_STATE):].isdigit():
        return (list(WORDS).index("PRUNED"), int(key[len(RUNG_STATE):]), key)
    order = list(WORDS)
    return (order.index(key) if key in order else len(order), -1 if key in order else 0, key)


def _words(key: str, n: int) -> str:
    if key.startswith(RUNG_STATE) and key[len(RUNG_STATE):].isdigit():
        return f"stopped at rung {key[len(RUNG_STATE):]}"
    return WORDS.get(key, (key.lower(),) * 2)[n != 1]


def counts_text(counts: Mapping[str, int]) -> str:
    """'16 networks trained, 2 duplicates (reused), 9 stopped at rung 1, 1 cut by the time budget' (keys of
    `outcome_key`)."""
    return ", ".join(f"{counts[k]:,} {_words(k, counts[k])}" for k in sorted(counts, key=_place)
                     if counts[k]) or "no trials"


def front_candidate(state: Any, end: Any, duplicate_of: Any, *, untrainable: bool = False) -> Any:
    """May a trial be on a front: COMPLETE, trained itself (not a duplicate), to its last epoch (not cut by
    the time budget), and a network that trained (not dead or diverged) unless `untrainable`? One trial's
    values give a bool, arrays of them (the trial table's columns) an array.

    (A study's budget is checked apart: `infeasible`.) A cut trial trained fewer epochs than its recipe,
    so its accuracy measures the machine's speed as much as the network.
    """
    end_ = np.asarray(end, dtype=object)
    ok = (np.asarray(state, dtype=object) == "COMPLETE") & _missing(duplicate_of) & (end_ != A.CUT)
    for gone in () if untrainable else UNTRAINABLE_ENDS:
        ok = ok & (end_ != gone)
    return bool(ok) if np.ndim(ok) == 0 else ok

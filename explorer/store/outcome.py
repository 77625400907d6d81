"""How a stored trial counts: its key in a summary's counts, their words, and which trials a front may hold.

One place for both rules, so `explorer run`'s summary, `explorer status`, `explorer export` and the
dashboard count and choose alike. A duplicate (a point that builds a network already trained) reuses
that trial's result: it is counted apart from the networks trained and is never on a front. A
network that ended `dead` (every output 0: chance accuracy) or `diverged` (a non-finite loss) could
not train, so it is no trade-off: off the front unless asked for (the dashboard's toggle).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from explorer.store import attrs as A

CUT_STATE = "CUT"  # a summary key: trials the time_budget_s guard cut (stored PRUNED)
DUPLICATE_STATE = "DUPLICATE"  # a summary key: trials that reused an earlier trial's result
OVER_BUDGET_STATE = "OVER_BUDGET"  # a summary key: trials a study's budget rejected before training
UNTRAINABLE_ENDS = ("dead", "diverged")  # trainer ends of a network that cannot train
# summary key -> (one, several); a finished COMPLETE trial that is none of the above trained a network
WORDS = {"COMPLETE": ("network trained", "networks trained"),
         DUPLICATE_STATE: ("duplicate (reused)", "duplicates (reused)"),
         OVER_BUDGET_STATE: ("over budget (not trained)",) * 2, "PRUNED": ("pruned (stopped early)",) * 2,
         CUT_STATE: (A.CUT_RETRY,) * 2, "FAIL": ("failed",) * 2, "RUNNING": ("running",) * 2,
         "WAITING": ("waiting",) * 2}


def _missing(value: Any) -> bool:
    """None, or the trial table's NaN for a missing number."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def outcome_key(state: str, attrs: Mapping[str, Any]) -> str:
    """A trial's key in a summary's counts: over budget, a duplicate, cut by the time budget, else its state."""
    if attrs.get(A.INFEASIBLE) is True:
        return OVER_BUDGET_STATE
    if not _missing(attrs.get(A.DUPLICATE_OF)):
        return DUPLICATE_STATE
    if attrs.get(A.END) == A.CUT:
        return CUT_STATE
    return state


def counts_text(counts: Mapping[str, int]) -> str:
    """'16 networks trained, 2 duplicates (reused), 1 cut by the time budget' (keys of `outcome_key`)."""
    order = list(WORDS)
    keys = sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(f"{counts[k]:,} {WORDS.get(k, (k.lower(),) * 2)[counts[k] != 1]}" for k in keys
                     if counts[k]) or "no trials"


def front_candidate(state: str, end: Any, duplicate_of: Any, *, untrainable: bool = False) -> bool:
    """May a trial be on a front: COMPLETE, trained itself (not a duplicate), to its last epoch (not cut by
    the time budget), and a network that trained (not dead or diverged) unless `untrainable`?

    (A study's budget is checked apart: `infeasible`.) A cut trial trained fewer epochs than its recipe,
    so its accuracy measures the machine's speed as much as the network.
    """
    return (state == "COMPLETE" and _missing(duplicate_of) and end != A.CUT
            and (untrainable or end not in UNTRAINABLE_ENDS))

"""Cost budgets: which costs a budget may name, parsing `--budget` text, checking a cost.

One list of cost names for every budget: a study file's `budgets:` (and its cost
objectives) take STUDY_BUDGETS; `explorer export --budget` takes every stored cost
(STORED_COSTS). The analytic costs are known before anything is built; a measured cost
(`latency_ms`, explorer.latency.measure) only once the network was built and timed, so
`over_budget` checks what the cost it is given knows and leaves the rest for later.
"""

from __future__ import annotations

import math
import re

from explorer.core.errors import UserError
from explorer.core.util import SI, si

COSTS = ("params", "macs", "activations", "size_mb", "size_mib")  # stored with every trial
MEASURED = ("latency_ms",)  # measured per trial where the study asks for it (explorer.latency.measure)
ANALYTIC_BUDGETS = ("params", "macs", "size_mb")
STUDY_BUDGETS = (*ANALYTIC_BUDGETS, *MEASURED)  # what a study file may cap or minimise
STORED_COSTS = (*COSTS, *MEASURED)
INT_COSTS = ("params", "macs", "activations")  # counts: whole numbers; sizes may be fractional
_FORM = "write COST<=NUMBER[,COST<=NUMBER] with COST one of {}, e.g. \"params<=1e6,macs<=5e7\""


def over_budget(cost, budgets: dict[str, float]) -> str | None:
    """Why `cost` breaks a budget ('params 1.2M > 1M'), or None.

    `cost` is an explorer.design.cost.Cost or a mapping; a budget on a cost it does not hold (a
    latency before it was measured) is not checked here.
    """
    known = {k: _value(cost, k) for k in budgets}
    broken = [f"{k} {si(known[k])} > {si(v)}" for k, v in budgets.items()
              if known[k] is not None and known[k] > v]
    return "; ".join(broken) or None


def _value(cost, key: str):
    """cost[key] for a mapping, cost.key for a Cost; None when it holds no such cost."""
    return cost.get(key) if isinstance(cost, dict) else getattr(cost, key, None)


def budget_text(budgets: dict[str, float]) -> str:
    """'params <= 1M, macs <= 50M' (messages)."""
    return ", ".join(f"{k} <= {si(v)}" for k, v in budgets.items())


def budget_flag(budgets: dict[str, float]) -> str:
    """'params<=1e+06,macs<=5e+07' (the --budget spelling)."""
    return ",".join(f"{k}<={v:g}" for k, v in budgets.items())


def parse_budget(text: str, allowed: tuple[str, ...] = STORED_COSTS) -> dict[str, float]:
    """'params<=1e6,macs<=5e7' (k/M/G suffixes allowed) -> {'params': 1e6, 'macs': 5e7}."""
    form = _FORM.format(", ".join(allowed))
    if not str(text).strip():
        raise UserError(f"the budget is empty: {form}")
    out: dict[str, float] = {}
    for part in [p.strip() for p in str(text).split(",")]:
        m = re.fullmatch(r"(\w+)\s*<=\s*([0-9.eE+-]+)\s*([kMG]?)", part)
        if not m:
            raise UserError(f"budget part {part!r} is malformed: {form}")
        key, number, suffix = m.groups()
        if key not in allowed:
            raise UserError(f"budget names unknown cost {key!r}; allowed: {', '.join(allowed)}")
        try:
            limit = float(number) * dict(SI).get(suffix, 1.0)
        except ValueError:
            raise UserError(f"budget part {part!r}: {number!r} is not a number") from None
        if not math.isfinite(limit) or limit <= 0 or key in out:
            raise UserError(f"budget part {part!r}: give each cost once, with a limit > 0")
        out[key] = limit
    return out

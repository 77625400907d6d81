"""Cost budgets: which costs a budget may name, parsing `--budget` text, checking a cost.

One list of cost names for every budget: a study file's `budgets:` (and its cost
objectives) take STUDY_BUDGETS; `explorer export --budget` takes every stored cost.
"""

from __future__ import annotations

import math
import re

from explorer.errors import UserError
from explorer.util import SI, si

COSTS = ("params", "macs", "activations", "size_mb", "size_mib")  # stored with every trial
STUDY_BUDGETS = ("params", "macs", "size_mb")  # what a study file may cap or minimise
INT_COSTS = ("params", "macs", "activations")  # counts: whole numbers; sizes may be fractional
_FORM = "write COST<=NUMBER[,COST<=NUMBER] with COST one of {}, e.g. \"params<=1e6,macs<=5e7\""


def over_budget(cost, budgets: dict[str, float]) -> str | None:
    """Why `cost` (an explorer.cost.Cost) breaks a budget ('params 1.2M > 1M'), or None."""
    broken = [f"{k} {si(getattr(cost, k))} > {si(v)}" for k, v in budgets.items() if getattr(cost, k) > v]
    return "; ".join(broken) or None


def budget_text(budgets: dict[str, float]) -> str:
    """'params <= 1M, macs <= 50M' (messages)."""
    return ", ".join(f"{k} <= {si(v)}" for k, v in budgets.items())


def budget_flag(budgets: dict[str, float]) -> str:
    """'params<=1e+06,macs<=5e+07' (the --budget spelling)."""
    return ",".join(f"{k}<={v:g}" for k, v in budgets.items())


def parse_budget(text: str, allowed: tuple[str, ...] = COSTS) -> dict[str, float]:
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

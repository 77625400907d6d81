"""The landscape of a study's search space: every network's analytic cost, before any training.

`landscape(config)` costs the whole space when it is finite and holds at most
WHOLE_SPACE_LIMIT networks, else a uniform random sample of it, drawn as the random
sampler draws (explorer.study.space.Space.sample); the analytic cost takes about 50 us a network
(bench/cost_speed.py), so 20,000 networks take about a second. Each point records its knob
values (spelled as the trial table spells them: `knob_<name>`, pools as '1,3'), whether
the knobs make a valid network, its params, MACs and size, and which of the study's
analytic budgets it breaks. A latency budget cannot be assessed analytically: it is
listed as not assessed (each trial measures it before training).

`knob_table(land, knob, trials)` summarises per value of a knob (or per quantile bin of a
continuous one): how many networks, how many invalid, what share the budgets cut away,
and the quantiles of each cost; with a trial table, also how many trials the search ran
there, which shows where it has looked and where it has not.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from explorer.core.errors import SpecError
from explorer.design.budgets import ANALYTIC_BUDGETS
from explorer.design.cost import estimate_cost
from explorer.study.config import StudyConfig
from explorer.study.space import Space, encode_pools

WHOLE_SPACE_LIMIT = 50_000
DEFAULT_SAMPLES = 20_000
COSTS = ("params", "macs", "size_mb")
COST_LABELS = {"params": "params", "macs": "MACs", "size_mb": "size MB"}
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "max": 1.0}
MAX_VALUES = 12  # a knob with more distinct values is shown in quantile bins
BINS = 6
PREFIX = "knob_"


@dataclass
class Landscape:
    """The costed points of one study's space and how they were drawn."""

    study: str
    points: pd.DataFrame  # knob_<name> (searched knobs), valid, params, macs, size_mb, over_<budget>, over
    space_size: int | None  # None: a continuous knob, so the space is infinite
    whole: bool  # every network of the space was costed
    seed: int
    seconds: float
    num_classes: int
    input_size: int
    fixed: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)  # analytic budgets, assessed
    not_assessed: dict[str, float] = field(default_factory=dict)  # measured budgets (latency)
    order: dict[str, list[str]] = field(default_factory=dict)  # a knob's choices, in study-file order

    @property
    def knobs(self) -> list[str]:
        """The searched knobs' names, in study-file order."""
        return [c.removeprefix(PREFIX) for c in self.points.columns if c.startswith(PREFIX)]


def space_size(space: Space) -> int | None:
    """Networks in the space: the product of each searched knob's value count; None if one is continuous."""
    if any(k.kind == "range" and not k.is_int and k.step is None for k in space.searched):
        return None
    return space.grid_size()


def landscape(config: StudyConfig, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
              num_classes: int = 10) -> Landscape:
    """Cost the whole space (when finite and small enough) or `samples` random draws of it."""
    start = time.perf_counter()
    space = Space.from_config(config, num_classes)
    size = space_size(space)
    whole = size is not None and size <= max(samples, WHOLE_SPACE_LIMIT)
    rng = random.Random(seed)
    draws = space.grid_points() if whole else [space.sample(rng) for _ in range(samples)]
    budgets = {k: v for k, v in config.budget.items() if k in ANALYTIC_BUDGETS}
    points = _cost_points(space, draws, budgets)
    return Landscape(config.name, points, size, whole, seed, time.perf_counter() - start, num_classes,
                     config.data.resolution, {k.name: k.fixed for k in space.knobs if k.kind == "fixed"},
                     budgets, {k: v for k, v in config.budget.items() if k not in ANALYTIC_BUDGETS},
                     {k.name: [label(c) for c in k.choices] for k in space.searched if k.kind == "choices"})


def _cost_points(space: Space, draws: list[dict[str, Any]], budgets: dict[str, float]) -> pd.DataFrame:
    """One row per draw: knob values, validity, costs (NaN when invalid), budgets broken."""
    names = [k.name for k in space.searched]
    costs: dict[str, list[float]] = {c: [] for c in COSTS}
    valid = []
    for values in draws:
        try:
            cost = estimate_cost(space.spec(values))
        except SpecError:
            cost = None
        valid.append(cost is not None)
        for c in COSTS:
            costs[c].append(float(getattr(cost, c)) if cost is not None else math.nan)
    frame = pd.DataFrame({PREFIX + n: [_knob_value(n, d[n]) for d in draws] for n in names},
                         index=range(len(draws)))  # no searched knob: one network, no knob column
    frame["valid"] = np.array(valid, dtype=bool)
    for c in COSTS:
        frame[c] = np.array(costs[c], dtype=float)
    for k, v in budgets.items():
        frame[f"over_{k}"] = frame[k].to_numpy() > v  # NaN (invalid) compares False
    frame["over"] = frame[[f"over_{k}" for k in budgets]].any(axis=1) if budgets else False
    return frame


def _knob_value(name: str, value: Any) -> Any:
    """A knob value as the trial table holds it (pools as '1,3')."""
    return encode_pools(tuple(value)) if name == "pools" else value


def label(value: Any) -> str:
    """A knob value as text: 0.25, 16, '1,3', default (None: the stem's default width)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "default"
    if isinstance(value, (tuple, list)):
        return encode_pools(tuple(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- summaries ---------------------------------------------------------------------------------

def groups(land: Landscape, knob: str) -> tuple[pd.Series, Any]:
    """(labels of the points' values of `knob`, a function labelling other values the same way)."""
    values = land.points[PREFIX + knob]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric or values.nunique() <= MAX_VALUES:
        return values.map(label), lambda other: pd.Series(other).map(label)
    edges = np.unique(np.quantile(values.to_numpy(dtype=float), np.linspace(0, 1, BINS + 1)))

    def binned(other) -> pd.Series:
        x = pd.Series(other, dtype=float)
        codes = np.clip(np.searchsorted(edges, x.to_numpy(), side="right") - 1, 0, len(edges) - 2)
        names = np.array([f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)], dtype=object)
        return pd.Series(np.where(x.notna(), names[codes], "n/a"), index=x.index)

    return binned(values), binned


def _row(points: pd.DataFrame, budgets: dict[str, float]) -> dict[str, Any]:
    """Counts, cut shares and cost quantiles of a set of points."""
    valid = points[points["valid"]]
    row: dict[str, Any] = {"networks": len(points), "invalid": int((~points["valid"]).sum()),
                           "cut": _share(valid["over"]) if budgets else 0.0}
    for k in budgets:
        row[f"cut_{k}"] = _share(valid[f"over_{k}"])
    for c in COSTS:
        q = valid[c].quantile(list(QUANTILES.values())) if len(valid) else None
        for name, p in QUANTILES.items():
            row[f"{c}_{name}"] = float(q.loc[p]) if q is not None else math.nan
    return row


def _share(flags: pd.Series) -> float:
    return float(flags.mean()) if len(flags) else math.nan


def overall(land: Landscape) -> dict[str, Any]:
    """The whole space's row: counts, cut shares, cost quantiles."""
    return _row(land.points, land.budgets)


def knob_table(land: Landscape, knob: str, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per value (or bin) of `knob`: networks, share, invalid, cut, cost quantiles (and trials)."""
    labels, label_of = groups(land, knob)
    rows = []
    order = land.order.get(knob, [])  # choices as the study file lists them; numbers ascending
    for value in sorted(labels.unique(), key=lambda v: (order.index(v),) if v in order else (len(order), _natural(v))):
        part = land.points[(labels == value).to_numpy()]
        rows.append({"knob": knob, "value": value, "share": len(part) / max(len(land.points), 1),
                     **_row(part, land.budgets)})
    table = pd.DataFrame(rows)
    if trials is not None and PREFIX + knob in trials:
        ran = label_of(trials[PREFIX + knob].to_numpy()).value_counts()
        table["trials"] = [int(ran.get(v, 0)) for v in table["value"]]
        table["trial_share"] = table["trials"] / max(len(trials), 1)
    return table


def _natural(text: str) -> tuple:
    head = str(text).split("–")[0].split(",")[0]
    try:
        return (0, float(head), str(text))
    except ValueError:
        return (1, 0.0, str(text))


def table(land: Landscape) -> pd.DataFrame:
    """Every knob's rows after one 'all' row: the CSV form."""
    first = pd.DataFrame([{"knob": "(all)", "value": "", "share": 1.0, **overall(land)}])
    return pd.concat([first, *(knob_table(land, k) for k in land.knobs)], ignore_index=True)


def to_json(land: Landscape) -> dict[str, Any]:
    """The JSON form: how the space was costed, the overall row, and each knob's rows."""
    from explorer.core.util import plain

    return plain({"study": land.study, "space_size": land.space_size, "costed": len(land.points),
                  "whole_space": land.whole, "seed": None if land.whole else land.seed,
                  "num_classes": land.num_classes, "input_size": land.input_size, "fixed": land.fixed,
                  "budgets": land.budgets, "not_assessed": land.not_assessed, "overall": overall(land),
                  "knobs": {k: knob_table(land, k).drop(columns="knob").to_dict(orient="records")
                            for k in land.knobs}})

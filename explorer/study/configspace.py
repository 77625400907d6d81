"""The `space:` section of a study file: which knobs may be searched, their allowed values
(the spec's own ranges, explorer.design.spec.RANGES, capped where open), and their parser."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from explorer.core.util import is_int as _is_int
from explorer.core.util import is_number as _is_num
from explorer.design.spec import BYPASSES, MAX_FIRE, RANGES, STEMS
from explorer.study.configcheck import Ctx, check_keys, get_value, short

# Study-file ceilings on widths and freq. SqueezeSpec sets no upper bound on these, so a
# typo such as `base_e: 99999999999` would pass it and crash later in torch. 4096
# channels is 8x SqueezeNet's widest layer (512); a freq above MAX_FIRE (the most Fire
# modules a spec may have) could never take effect.
MAX_WIDTH = 4096
MAX_FREQ = MAX_FIRE
CEILINGS = {"base_e": MAX_WIDTH, "incr_e": MAX_WIDTH, "stem_width": MAX_WIDTH, "freq": MAX_FREQ}


def _range(name: str) -> tuple[str, tuple]:
    """A numeric knob: the spec's own range (explorer.design.spec.RANGES), capped by CEILINGS where open."""
    r = RANGES[name]
    return r.kind, (r.low, r.high if r.high is not None else CEILINGS[name], r.low_open, r.high_open)


# Each searchable knob (in the order a study's space is stored and sampled): kind and the
# allowed range (low, high, low_open, high_open), or the allowed values.
KNOBS: dict[str, tuple[str, tuple | None]] = {
    **{name: _range(name) for name in ("base_e", "incr_e", "freq", "n_fire", "stem_width",
                                       "pct_3x3", "sr", "dropout")},
    "stem": ("cat", tuple(STEMS)),
    "bypass": ("cat", BYPASSES),
    "batchnorm": ("bool", None),
    "head_bn": ("bool", None),
    "head_relu": ("bool", None),
    "pools": ("pools", None),
}


@dataclass(frozen=True)
class Knob:
    """One search-space entry: a fixed value, a range (int/float, step or log) or choices."""

    name: str
    fixed: Any = None
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple | None = None

    @property
    def kind(self) -> str:
        """'fixed', 'range' or 'choices'."""
        if self.choices is not None:
            return "choices"
        return "range" if self.low is not None else "fixed"

    @property
    def is_int(self) -> bool:
        """True for integer knobs (suggest_int)."""
        return KNOBS[self.name][0] == "int"

    def to_dict(self) -> Any:
        """The YAML spelling: a bare value, {low, high, step|log} or {choices}."""
        if self.kind == "fixed":
            return list(self.fixed) if isinstance(self.fixed, tuple) else self.fixed
        if self.kind == "choices":
            return {"choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d



def parse_space(ctx: Ctx, data: dict) -> tuple[Knob, ...]:
    m = data.get("space")
    if m is None:
        ctx.fail(data, "space", "space", "missing; give at least one knob (see docs/studies.md)")
    check_keys(ctx, m, tuple(KNOBS), "space", data, "space")
    return tuple(_parse_knob(ctx, m, name) for name in KNOBS if name in m)


def _parse_knob(ctx: Ctx, m: dict, name: str) -> Knob:
    value, path = m[name], f"space.{name}"
    if isinstance(value, dict):
        if "choices" in value:
            check_keys(ctx, value, ("choices",), path, m, name)
            choices = value["choices"]
            if not isinstance(choices, list) or not choices:
                ctx.fail(value, "choices", f"{path}.choices", "must be a non-empty list")
            parsed = tuple(_check_value(ctx, value, "choices", f"{path}.choices", name, c) for c in choices)
            if len(set(parsed)) != len(parsed):
                ctx.fail(value, "choices", f"{path}.choices", "lists a value twice")
            return Knob(name, choices=parsed)
        return _parse_range(ctx, m, name, value, path)
    return Knob(name, fixed=_check_value(ctx, m, name, path, name, value))


def _parse_range(ctx: Ctx, m: dict, name: str, r: dict, path: str) -> Knob:
    kind = KNOBS[name][0]
    if kind not in ("int", "float"):
        ctx.fail(m, name, path, "takes a fixed value or {choices: [...]}, not a range")
    check_keys(ctx, r, ("low", "high", "step", "log"), path, m, name)
    for k in ("low", "high"):
        if k not in r:
            ctx.fail(m, name, path, f"a range needs low and high (missing {k})")
        if r[k] is None:
            hint = ("; for the stem's default width use {choices: [null, ...]}" if name == "stem_width"
                    else "")
            ctx.fail(r, k, f"{path}.{k}",
                     f"must be {'an integer' if kind == 'int' else 'a number'}, got null; "
                     f"a range needs numeric low and high{hint}")
    low, high = (_check_value(ctx, r, k, f"{path}.{k}", name, r[k]) for k in ("low", "high"))
    if low > high:
        ctx.fail(r, "high", f"{path}.high", f"high={high} is below low={low}; swap them")
    log = get_value(ctx, r, "log", path, False, lambda v: isinstance(v, bool), "true or false")
    step = r.get("step")
    if step is not None:
        ok = (_is_int(step) if kind == "int" else _is_num(step)) and step > 0
        if not ok:
            what = "integer" if kind == "int" else "number"
            ctx.fail(r, "step", f"{path}.step", f"must be a positive {what}, got {short(step)}")
        if log:
            ctx.fail(r, "log", f"{path}.log", "cannot combine log: true with a step; drop one")
        if step > high - low and high != low:
            ctx.fail(r, "step", f"{path}.step", f"step={step} is larger than high - low = {high - low}")
        highs = _valid_highs(name, low, high, step)
        if highs:  # Optuna would warn (with its internal path) and silently shrink the range
            ctx.fail(r, "high", f"{path}.high", f"step={step} does not divide high - low = {_num(high - low)}; "
                     f"use high: {' or '.join(_num(h) for h in highs)}")
    if log and low <= 0:
        ctx.fail(r, "low", f"{path}.low", f"log scale needs low > 0, got {low}")
    return Knob(name, low=low, high=high, step=step, log=log)


def _valid_highs(name: str, low, high, step) -> list:
    """[] when `step` divides high - low; else the nearest highs below and above that it divides
    (those the knob allows). Decimal arithmetic, as Optuna's own check: 0.1 steps are exact."""
    lo, hi, st = (Decimal(str(v)) for v in (low, high, step))
    if (hi - lo) % st == 0:
        return []
    below = lo + (hi - lo) // st * st
    kind, (_, ceiling, _, hi_open) = KNOBS[name]
    out = [below, below + st]
    if ceiling is not None:
        out = [h for h in out if h < ceiling or (h == ceiling and not hi_open)]
    return [int(h) if kind == "int" else float(h) for h in out]


def _num(v) -> str:
    """A bound as a study file would write it: 48, 0.75 (no float noise)."""
    return str(Decimal(str(v)).normalize()) if isinstance(v, float) else str(v)


def _check_value(ctx: Ctx, m: Any, key: str, path: str, name: str, v: Any) -> Any:
    """One value of knob `name` (fixed, a bound or a choice), checked against the spec's range."""
    kind, allowed = KNOBS[name]
    if kind == "int":
        if name == "stem_width" and v is None:
            return None
        if not _is_int(v):
            ctx.fail(m, key, path, f"must be an integer, got {short(v)}")
        lo, hi, _, _ = allowed
        if v < lo or (hi is not None and v > hi):
            note = _CEILING_NOTE.get(name, "") if hi is not None and v > hi else ""
            ctx.fail(m, key, path, f"{v} is out of range: allowed {lo}..{hi if hi is not None else 'any'}{note}")
        return v
    if kind == "float":
        if not _is_num(v):
            ctx.fail(m, key, path, f"must be a number, got {short(v)}")
        lo, hi, lo_open, hi_open = allowed
        bad = v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
        if bad:
            ends = ("(" if lo_open else "[", ")" if hi_open else "]")
            ctx.fail(m, key, path, f"{v} is out of range: allowed {ends[0]}{lo}, {hi}{ends[1]}")
        return float(v)
    if kind == "cat":
        if v not in allowed:
            ctx.fail(m, key, path, f"{short(v)} is not allowed; choose from {', '.join(allowed)}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            ctx.fail(m, key, path, f"must be true or false, got {short(v)}")
        return v
    ok = isinstance(v, list) and all(_is_int(p) and p >= 0 for p in v) and len(set(v)) == len(v)
    if not ok:
        ctx.fail(m, key, path, f"pool placements are lists of distinct integers >= 0, got {short(v)}")
    return tuple(sorted(v))


_CEILING_NOTE = {
    **dict.fromkeys(("base_e", "incr_e", "stem_width"),
                    f" (study files cap widths at {MAX_WIDTH} channels)"),
    "freq": f" (a spec has at most {MAX_FIRE} Fire modules, so a larger freq has no effect)",
}

"""Building blocks of the study-file validator (explorer.study.config): where a value came from, the
generic checks, and the trainer's and data loader's setting limits shared with export files
(explorer.results.exportfile) and CLI overrides."""

from __future__ import annotations

import reprlib
from typing import Any

from explorer.core.errors import UserError
from explorer.core.util import is_int as _is_int
from explorer.core.util import is_number as _is_num


class Ctx:
    """Where a value came from, for error messages: file, key path, line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, mapping: Any, key: str, path: str, message: str) -> None:
        line = getattr(mapping, "lines", {}).get(key) if isinstance(mapping, dict) else None
        where = f"{self.source}: line {line}: " if line else f"{self.source}: "
        raise UserError(f"{where}{path}: {message}")


def check_keys(ctx: Ctx, m: Any, allowed: tuple[str, ...], path: str, parent: Any, key: str) -> None:
    if not isinstance(m, dict):
        ctx.fail(parent, key, path or "study file", f"must be a mapping, got {type_name(m)}")
    for k in m:
        if k not in allowed:
            ctx.fail(m, k, f"{path}.{k}" if path else k,
                     f"unknown key; allowed: {', '.join(allowed)}")


class _Short(reprlib.Repr):
    """reprlib's bounded repr; explorer.core.yamlio's line-remembering dicts shown as dicts."""

    def repr_Lines(self, x: dict, level: int) -> str:  # noqa: N802 - reprlib's naming
        return self.repr_dict(x, level)


_SHORT = _Short()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 40, 40
_SHORT.maxlong = 500  # a mistyped huge number is shown whole


def short(v: Any) -> str:
    """repr(v), bounded: a value built from a huge structure stays one short line."""
    return _SHORT.repr(v)


def type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def get_value(ctx: Ctx, m: dict, key: str, path: str, default: Any, check, what: str) -> Any:
    if key not in m:
        return default
    value = m[key]
    if not check(value):
        ctx.fail(m, key, f"{path}.{key}" if path else key, f"must be {what}, got {short(value)}")
    return value


def is_seed(v: Any) -> bool:
    """What torch, numpy and Optuna's samplers all accept as a seed."""
    return _is_int(v) and 0 <= v <= MAX_SEED


def pos_int(v: Any) -> bool:
    return _is_int(v) and v >= 1


def nullable(check):
    return lambda v: v is None or check(v)


# The trainer's and the data loader's settings: key -> (check, what it must be, null allowed).
# Study files and CLI overrides are checked against them here, export files in
# explorer.results.exportfile, so a setting means the same wherever it is written.
MAX_SEED = 2**32 - 1  # what torch, numpy and Optuna's samplers all accept
Limit = tuple  # (check: Callable[[Any], bool], what: str, nullable: bool)
TRAINER_LIMITS: dict[str, Limit] = {
    "epochs": (lambda v: pos_int(v), "an integer >= 1", False),
    "batch_size": (lambda v: pos_int(v), "an integer >= 1", False),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0", False),
    "momentum": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)", False),
    "weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0", False),
    "label_smoothing": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)", False),
    "time_budget_s": (lambda v: _is_num(v) and v > 0, "a number of seconds > 0", True),
    "seed": (lambda v: is_seed(v), f"an integer in [0, {MAX_SEED}]", False),
    "threads": (lambda v: _is_int(v) and 1 <= v <= 1024, "an integer in [1, 1024]", False),
}
DATA_LIMITS: dict[str, Limit] = {
    "source": (lambda v: isinstance(v, str) and v != "", "a dataset name or a path", True),
    "per_class": (lambda v: pos_int(v), "an integer >= 1", True),
    "val_per_class": (lambda v: pos_int(v), "an integer >= 1", False),
    "resolution": (lambda v: _is_int(v) and 8 <= v <= 1024, "an integer in [8, 1024] (pixels)", False),
    "seed": (lambda v: is_seed(v), f"an integer in [0, {MAX_SEED}]", False),
}


def limit_check(limit: Limit) -> tuple[Any, str]:
    """(check, what) of a limit, null accepted and said where the setting allows it."""
    check, what, may_be_null = limit
    return (nullable(check), f"{what}, or null") if may_be_null else (check, what)


# CLI flag -> (section, key) of the limits above (`explorer train` and `calibrate` overrides).
CLI_SETTINGS = {"--epochs": ("trainer", "epochs"), "--batch-size": ("trainer", "batch_size"),
                "--lr": ("trainer", "lr"), "--momentum": ("trainer", "momentum"),
                "--weight-decay": ("trainer", "weight_decay"),
                "--label-smoothing": ("trainer", "label_smoothing"),
                "--time-budget": ("trainer", "time_budget_s"), "--seed": ("trainer", "seed"),
                "--threads": ("trainer", "threads"),
                "--per-class": ("data", "per_class")}


def check_overrides(**given: Any) -> None:
    """One-line UserError for a bad command-line override (`lr=-1` is checked as --lr); None = not given."""
    for name, value in given.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        section, key = CLI_SETTINGS[flag]
        check, what, _ = (TRAINER_LIMITS if section == "trainer" else DATA_LIMITS)[key]
        if not check(value):  # a flag cannot be null, so the limit's own words
            raise UserError(f"{flag}={value}: give {what}")

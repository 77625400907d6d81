"""A study file (YAML) -> a frozen, validated `StudyConfig`.

Everything is checked before anything runs: unknown keys, wrong types and impossible
ranges raise `UserError` naming the key (`space.sr.low`) and, when it came from a file,
its line. `StudyConfig.to_dict()` is the resolved config stored with the study (study
user attr `config`); `StudyConfig.from_dict()` reads it back, so a worker can join a
study from storage alone. See docs/studies.md for the schema.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from explorer import yamlio
from explorer.budgets import ANALYTIC_BUDGETS, INT_COSTS, STUDY_BUDGETS
from explorer.early_stop import SizeAwareRule
from explorer.errors import UserError
from explorer.latency import LATENCY_LIMITS, LatencyConfig, wanted_section
from explorer.spec import BYPASSES, MAX_FIRE, RANGES, STEMS
from explorer.util import is_int as _is_int
from explorer.util import is_number as _is_num

OBJECTIVES = ("val_acc", *STUDY_BUDGETS)  # val_acc maximised, the costs minimised
SAMPLERS = ("tpe", "nsga2", "random", "grid")

# Study-file ceilings on widths and freq. SqueezeSpec sets no upper bound on these, so a
# typo such as `base_e: 99999999999` would pass it and crash later in torch. 4096
# channels is 8x SqueezeNet's widest layer (512); a freq above MAX_FIRE (the most Fire
# modules a spec may have) could never take effect.
MAX_WIDTH = 4096
MAX_FREQ = MAX_FIRE
CEILINGS = {"base_e": MAX_WIDTH, "incr_e": MAX_WIDTH, "stem_width": MAX_WIDTH, "freq": MAX_FREQ}


def _range(name: str) -> tuple[str, tuple]:
    """A numeric knob: the spec's own range (explorer.spec.RANGES), capped by CEILINGS where open."""
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


@dataclass(frozen=True)
class DataConfig:
    """Which images (explorer.data.load_data): a source, a train subset, a val split from train.

    `source` is a dataset name (cifar10, cifar100, synthetic) or a path (an ImageFolder
    tree or its .tar.gz); at run time --data > EXPLORER_DATA > this > the CIFAR-10 archive
    beside the repository (../shared/datasets/cifar10-jpeg.tar.gz).
    """

    source: str | None = None
    per_class: int | None = None  # training images kept per class; None = all
    val_per_class: int = 100  # carved from train, seeded and class-balanced
    resolution: int = 32
    seed: int = 0


@dataclass(frozen=True)
class TrainerConfig:
    """Keyword arguments of explorer.train.train, except model, data and device."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    time_budget_s: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class SamplerConfig:
    """The Optuna sampler and its seed (and NSGA-II population / TPE start-up trials)."""

    name: str = "tpe"
    seed: int = 0
    population_size: int | None = None
    n_startup_trials: int | None = None


@dataclass(frozen=True)
class EarlyStopConfig:
    """Stop hopeless trials after `warmup_epochs` once `min_trials` comparable ones exist.

    Single-objective studies use Optuna's MedianPruner (PercentilePruner if quantile is
    not 0.5); multi-objective ones the size-aware rule (explorer.early_stop), comparing
    with finished trials whose `size_by` cost is within `size_factor` of the trial's.
    """

    warmup_epochs: int = SizeAwareRule.warmup_epochs  # the rule's own defaults (explorer.early_stop)
    min_trials: int = SizeAwareRule.min_trials
    quantile: float = SizeAwareRule.quantile
    size_factor: float = SizeAwareRule.size_factor
    size_by: str = SizeAwareRule.size_by


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: what to search, how to train, what to optimise, within which budget."""

    name: str
    storage: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    space: tuple[Knob, ...] = ()
    objectives: tuple[str, ...] = ("val_acc", "params")
    budgets: tuple[tuple[str, float], ...] = ()
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    early_stop: EarlyStopConfig | None = None
    latency: LatencyConfig | None = None  # set when latency_ms is an objective, a budget, or asked for
    n_trials: int | None = None
    timeout_s: float | None = None
    check_fvcore: bool = True
    description: str = ""

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        return ["maximize" if o == "val_acc" else "minimize" for o in self.objectives]

    @property
    def budget(self) -> dict[str, float]:
        """Budgets as a mapping (cost name -> maximum)."""
        return dict(self.budgets)

    def knob(self, name: str) -> Knob | None:
        """The knob named `name`, or None when the spec default applies."""
        return next((k for k in self.space if k.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain types, ready for YAML, JSON or a study user attr."""
        return {
            "name": self.name, "description": self.description, "storage": self.storage,
            "data": asdict(self.data), "trainer": asdict(self.trainer),
            "space": {k.name: k.to_dict() for k in self.space},
            "objectives": list(self.objectives), "budgets": dict(self.budgets),
            "sampler": asdict(self.sampler),
            "early_stop": asdict(self.early_stop) if self.early_stop else None,
            "n_trials": self.n_trials, "timeout_s": self.timeout_s,
            "check_fvcore": self.check_fvcore, **({"latency": asdict(self.latency)} if self.latency else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "StudyConfig":
        """Validate a mapping (a parsed study file or a stored config)."""
        return _parse(data, source)

    def identity(self) -> dict[str, Any]:
        """The parts that must match to resume a study: space, objectives, budgets, data, trainer."""
        d = self.to_dict()
        data = dict(d["data"], source=None)  # paths differ between machines
        return {"space": d["space"], "objectives": d["objectives"], "budgets": d["budgets"],
                "data": data, "trainer": d["trainer"], "latency": d.get("latency")}

    def with_overrides(self, **changes: Any) -> "StudyConfig":
        """A copy with top-level fields replaced (n_trials, timeout_s, storage)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_config(path: str | Path, *, n_trials: int | None = None,
                timeout_s: float | None = None) -> StudyConfig:
    """Read and validate a study file; every mistake is one line naming the key and line.

    `n_trials` / `timeout_s` (the command line's) replace the file's before validation, so
    a file without them runs when the command line gives one.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read study file {path}: {exc.strerror}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                        "save the file as UTF-8") from None
    try:
        data = yamlio.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{where}: not valid YAML ({problem}); fix the syntax") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    if isinstance(data, dict):
        for key, value in (("n_trials", n_trials), ("timeout_s", timeout_s)):
            if value is not None:
                data[key] = value
    return _parse(data, str(path))


# --- validation -------------------------------------------------------------------------

class _Ctx:
    """Where a value came from, for error messages: file, key path, line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, mapping: Any, key: str, path: str, message: str) -> None:
        line = getattr(mapping, "lines", {}).get(key) if isinstance(mapping, dict) else None
        where = f"{self.source}: line {line}: " if line else f"{self.source}: "
        raise UserError(f"{where}{path}: {message}")


def _check_keys(ctx: _Ctx, m: Any, allowed: tuple[str, ...], path: str, parent: Any, key: str) -> None:
    if not isinstance(m, dict):
        ctx.fail(parent, key, path or "study file", f"must be a mapping, got {_type(m)}")
    for k in m:
        if k not in allowed:
            ctx.fail(m, k, f"{path}.{k}" if path else k,
                     f"unknown key; allowed: {', '.join(allowed)}")


def _type(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _get(ctx: _Ctx, m: dict, key: str, path: str, default: Any, check, what: str) -> Any:
    if key not in m:
        return default
    value = m[key]
    if not check(value):
        ctx.fail(m, key, f"{path}.{key}" if path else key, f"must be {what}, got {value!r}")
    return value


def _is_seed(v: Any) -> bool:
    """What torch, numpy and Optuna's samplers all accept as a seed."""
    return _is_int(v) and 0 <= v <= MAX_SEED


def _pos_int(v: Any) -> bool:
    return _is_int(v) and v >= 1


def _opt(check):
    return lambda v: v is None or check(v)


def _parse(data: Any, source: str) -> StudyConfig:
    ctx = _Ctx(source)
    top = ("name", "description", "storage", "data", "trainer", "space", "objectives",
           "budgets", "sampler", "early_stop", "n_trials", "timeout_s", "check_fvcore", "latency")
    _check_keys(ctx, data, top, "", None, "")
    if "name" not in data:
        ctx.fail(data, "name", "name", "missing; every study needs a name (letters, digits, -, _)")
    name = _get(ctx, data, "name", "", None, lambda v: isinstance(v, str) and _good_name(v),
                "a name of letters, digits, '-', '_' and '.'")
    cfg = StudyConfig(
        name=name,
        description=_get(ctx, data, "description", "", "", lambda v: isinstance(v, str), "text"),
        storage=_get(ctx, data, "storage", "", None, _opt(lambda v: isinstance(v, str) and v),
                     "a storage URL or path"),
        data=_parse_data(ctx, data),
        trainer=_parse_trainer(ctx, data),
        space=_parse_space(ctx, data),
        objectives=_parse_objectives(ctx, data),
        budgets=_parse_budgets(ctx, data),
        sampler=_parse_sampler(ctx, data),
        early_stop=_parse_early_stop(ctx, data),
        latency=_parse_latency(ctx, data),
        n_trials=_get(ctx, data, "n_trials", "", None, _opt(_pos_int), "an integer >= 1"),
        timeout_s=_get(ctx, data, "timeout_s", "", None, _opt(lambda v: _is_num(v) and v > 0),
                       "a number of seconds > 0"),
        check_fvcore=_get(ctx, data, "check_fvcore", "", True, lambda v: isinstance(v, bool),
                          "true or false"),
    )
    _check_whole(ctx, data, cfg)
    return cfg


def _good_name(v: str) -> bool:
    return bool(v) and all(c.isalnum() or c in "-_." for c in v) and not v.startswith(".")


def _section(ctx: _Ctx, data: dict, key: str, cls: type) -> tuple[dict, tuple[str, ...]]:
    allowed = tuple(cls.__dataclass_fields__)
    m = data.get(key, {})
    if m is None:
        m = {}
    _check_keys(ctx, m, allowed, key, data, key)
    return m, allowed


# The trainer's and the data loader's settings: key -> (check, what it must be, null allowed).
# Study files and CLI overrides are checked against them here, export files in
# explorer.exportfile, so a setting means the same wherever it is written.
MAX_SEED = 2**32 - 1  # what torch, numpy and Optuna's samplers all accept
Limit = tuple  # (check: Callable[[Any], bool], what: str, nullable: bool)
TRAINER_LIMITS: dict[str, Limit] = {
    "epochs": (lambda v: _pos_int(v), "an integer >= 1", False),
    "batch_size": (lambda v: _pos_int(v), "an integer >= 1", False),
    "lr": (lambda v: _is_num(v) and v > 0, "a number > 0", False),
    "momentum": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)", False),
    "weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0", False),
    "label_smoothing": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)", False),
    "time_budget_s": (lambda v: _is_num(v) and v > 0, "a number of seconds > 0", True),
    "seed": (lambda v: _is_seed(v), f"an integer in [0, {MAX_SEED}]", False),
}
DATA_LIMITS: dict[str, Limit] = {
    "source": (lambda v: isinstance(v, str) and v != "", "a dataset name or a path", True),
    "per_class": (lambda v: _pos_int(v), "an integer >= 1", True),
    "val_per_class": (lambda v: _pos_int(v), "an integer >= 1", False),
    "resolution": (lambda v: _is_int(v) and 8 <= v <= 1024, "an integer in [8, 1024] (pixels)", False),
    "seed": (lambda v: _is_seed(v), f"an integer in [0, {MAX_SEED}]", False),
}


def limit_check(limit: Limit) -> tuple[Any, str]:
    """(check, what) of a limit, null accepted and said where the setting allows it."""
    check, what, nullable = limit
    return (_opt(check), f"{what}, or null") if nullable else (check, what)


# CLI flag -> (section, key) of the limits above (`explorer train` and `calibrate` overrides).
CLI_SETTINGS = {"--epochs": ("trainer", "epochs"), "--batch-size": ("trainer", "batch_size"),
                "--lr": ("trainer", "lr"), "--momentum": ("trainer", "momentum"),
                "--weight-decay": ("trainer", "weight_decay"),
                "--label-smoothing": ("trainer", "label_smoothing"),
                "--time-budget": ("trainer", "time_budget_s"), "--seed": ("trainer", "seed"),
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


def _parse_limited(ctx: _Ctx, data: dict, section: str, cls, limits: dict[str, Limit]):
    m, _ = _section(ctx, data, section, cls)
    values = {}
    for f in fields(cls):
        check, what = limit_check(limits[f.name])
        values[f.name] = _get(ctx, m, f.name, section, f.default, check, what)
    return values


def _parse_data(ctx: _Ctx, data: dict) -> DataConfig:
    return DataConfig(**_parse_limited(ctx, data, "data", DataConfig, DATA_LIMITS))


def _parse_trainer(ctx: _Ctx, data: dict) -> TrainerConfig:
    values = _parse_limited(ctx, data, "trainer", TrainerConfig, TRAINER_LIMITS)
    for key in ("lr", "momentum", "weight_decay", "label_smoothing"):
        values[key] = float(values[key])
    return TrainerConfig(**values)


def _parse_objectives(ctx: _Ctx, data: dict) -> tuple[str, ...]:
    obj = data.get("objectives", ["val_acc", "params"])
    ok = isinstance(obj, list) and obj and all(isinstance(o, str) for o in obj)
    if not ok:
        ctx.fail(data, "objectives", "objectives", f"must be a list such as [val_acc, params], got {obj!r}")
    for o in obj:
        if o not in OBJECTIVES:
            ctx.fail(data, "objectives", "objectives", f"unknown objective {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if obj[0] != "val_acc" or len(set(obj)) != len(obj):
        ctx.fail(data, "objectives", "objectives",
                 "must start with val_acc (maximised) followed by distinct costs to minimise")
    return tuple(obj)


def _parse_budgets(ctx: _Ctx, data: dict) -> tuple[tuple[str, float], ...]:
    m = data.get("budgets") or {}
    _check_keys(ctx, m, STUDY_BUDGETS, "budgets", data, "budgets")
    out = []
    for k in STUDY_BUDGETS:
        if k not in m:
            continue
        if k in INT_COSTS:  # a count: 2e5 is fine, 0.5 or 199999.9 would be silently truncated
            v = _get(ctx, m, k, "budgets", None, lambda v: _is_num(v) and v >= 1 and float(v).is_integer(),
                     "a whole number >= 1 (such as 200000 or 2e5)")
            out.append((k, int(v)))
        else:
            v = _get(ctx, m, k, "budgets", None, lambda v: _is_num(v) and v > 0, "a number > 0")
            out.append((k, float(v)))
    return tuple(out)


def _parse_sampler(ctx: _Ctx, data: dict) -> SamplerConfig:
    m = data.get("sampler") or {}
    if isinstance(m, str):
        if m not in SAMPLERS:
            ctx.fail(data, "sampler", "sampler", f"unknown sampler {m!r}; allowed: {', '.join(SAMPLERS)}")
        m = {"name": m}
    _check_keys(ctx, m, tuple(SamplerConfig.__dataclass_fields__), "sampler", data, "sampler")
    p = "sampler"
    name = _get(ctx, m, "name", p, "tpe", lambda v: v in SAMPLERS, "one of " + ", ".join(SAMPLERS))
    return SamplerConfig(
        name=name, seed=_get(ctx, m, "seed", p, 0, _is_seed, f"an integer in [0, {MAX_SEED}]"),
        population_size=_get(ctx, m, "population_size", p, None, _opt(lambda v: _is_int(v) and v >= 2),
                             "an integer >= 2"),
        n_startup_trials=_get(ctx, m, "n_startup_trials", p, None, _opt(_pos_int), "an integer >= 1"),
    )


def _parse_early_stop(ctx: _Ctx, data: dict) -> EarlyStopConfig | None:
    m = data.get("early_stop")
    if m is None or m is False:
        return None
    if m is True:
        m = {}
    _check_keys(ctx, m, tuple(EarlyStopConfig.__dataclass_fields__), "early_stop", data, "early_stop")
    p, d = "early_stop", EarlyStopConfig()
    return EarlyStopConfig(
        warmup_epochs=_get(ctx, m, "warmup_epochs", p, d.warmup_epochs, lambda v: _is_int(v) and v >= 0,
                           "an integer >= 0"),
        min_trials=_get(ctx, m, "min_trials", p, d.min_trials, _pos_int, "an integer >= 1"),
        quantile=float(_get(ctx, m, "quantile", p, d.quantile, lambda v: _is_num(v) and 0 < v < 1, "in (0, 1)")),
        size_factor=float(_get(ctx, m, "size_factor", p, d.size_factor, lambda v: _is_num(v) and v >= 1,
                               "a number >= 1")),
        size_by=_get(ctx, m, "size_by", p, d.size_by, lambda v: v in ANALYTIC_BUDGETS,
                     "one of " + ", ".join(ANALYTIC_BUDGETS)),
    )


def _parse_latency(ctx: _Ctx, data: dict) -> LatencyConfig | None:
    """The `latency:` section (explorer.latency.wanted_section: implied by latency_ms, true = defaults)."""
    m = wanted_section(data)
    return None if m is None else LatencyConfig(**_parse_limited(ctx, {"latency": m}, "latency", LatencyConfig,
                                                                 LATENCY_LIMITS))


def _parse_space(ctx: _Ctx, data: dict) -> tuple[Knob, ...]:
    m = data.get("space")
    if m is None:
        ctx.fail(data, "space", "space", "missing; give at least one knob (see docs/studies.md)")
    _check_keys(ctx, m, tuple(KNOBS), "space", data, "space")
    return tuple(_parse_knob(ctx, m, name) for name in KNOBS if name in m)


def _parse_knob(ctx: _Ctx, m: dict, name: str) -> Knob:
    value, path = m[name], f"space.{name}"
    if isinstance(value, dict):
        if "choices" in value:
            _check_keys(ctx, value, ("choices",), path, m, name)
            choices = value["choices"]
            if not isinstance(choices, list) or not choices:
                ctx.fail(value, "choices", f"{path}.choices", "must be a non-empty list")
            parsed = tuple(_check_value(ctx, value, "choices", f"{path}.choices", name, c) for c in choices)
            if len(set(parsed)) != len(parsed):
                ctx.fail(value, "choices", f"{path}.choices", "lists a value twice")
            return Knob(name, choices=parsed)
        return _parse_range(ctx, m, name, value, path)
    return Knob(name, fixed=_check_value(ctx, m, name, path, name, value))


def _parse_range(ctx: _Ctx, m: dict, name: str, r: dict, path: str) -> Knob:
    kind = KNOBS[name][0]
    if kind not in ("int", "float"):
        ctx.fail(m, name, path, "takes a fixed value or {choices: [...]}, not a range")
    _check_keys(ctx, r, ("low", "high", "step", "log"), path, m, name)
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
    log = _get(ctx, r, "log", path, False, lambda v: isinstance(v, bool), "true or false")
    step = r.get("step")
    if step is not None:
        ok = (_is_int(step) if kind == "int" else _is_num(step)) and step > 0
        if not ok:
            what = "integer" if kind == "int" else "number"
            ctx.fail(r, "step", f"{path}.step", f"must be a positive {what}, got {step!r}")
        if log:
            ctx.fail(r, "log", f"{path}.log", "cannot combine log: true with a step; drop one")
        if step > high - low and high != low:
            ctx.fail(r, "step", f"{path}.step", f"step={step} is larger than high - low = {high - low}")
    if log and low <= 0:
        ctx.fail(r, "low", f"{path}.low", f"log scale needs low > 0, got {low}")
    return Knob(name, low=low, high=high, step=step, log=log)


def _check_value(ctx: _Ctx, m: Any, key: str, path: str, name: str, v: Any) -> Any:
    """One value of knob `name` (fixed, a bound or a choice), checked against the spec's range."""
    kind, allowed = KNOBS[name]
    if kind == "int":
        if name == "stem_width" and v is None:
            return None
        if not _is_int(v):
            ctx.fail(m, key, path, f"must be an integer, got {v!r}")
        lo, hi, _, _ = allowed
        if v < lo or (hi is not None and v > hi):
            note = _CEILING_NOTE.get(name, "") if hi is not None and v > hi else ""
            ctx.fail(m, key, path, f"{v} is out of range: allowed {lo}..{hi if hi is not None else 'any'}{note}")
        return v
    if kind == "float":
        if not _is_num(v):
            ctx.fail(m, key, path, f"must be a number, got {v!r}")
        lo, hi, lo_open, hi_open = allowed
        bad = v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi)
        if bad:
            ends = ("(" if lo_open else "[", ")" if hi_open else "]")
            ctx.fail(m, key, path, f"{v} is out of range: allowed {ends[0]}{lo}, {hi}{ends[1]}")
        return float(v)
    if kind == "cat":
        if v not in allowed:
            ctx.fail(m, key, path, f"{v!r} is not allowed; choose from {', '.join(allowed)}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            ctx.fail(m, key, path, f"must be true or false, got {v!r}")
        return v
    ok = isinstance(v, list) and all(_is_int(p) and p >= 0 for p in v) and len(set(v)) == len(v)
    if not ok:
        ctx.fail(m, key, path, f"pool placements are lists of distinct integers >= 0, got {v!r}")
    return tuple(sorted(v))


_CEILING_NOTE = {
    **dict.fromkeys(("base_e", "incr_e", "stem_width"),
                    f" (study files cap widths at {MAX_WIDTH} channels)"),
    "freq": f" (a spec has at most {MAX_FIRE} Fire modules, so a larger freq has no effect)",
}


def _check_whole(ctx: _Ctx, data: dict, cfg: StudyConfig) -> None:
    """Checks that span sections: grids need finite knobs; early_stop.size_by; NSGA-II is multi-objective."""
    if cfg.sampler.name == "grid":
        for k in cfg.space:
            if k.kind == "range" and (k.step is None and not (k.is_int and not k.log)):
                ctx.fail(data["space"], k.name, f"space.{k.name}",
                         "a grid needs a finite knob: give a step or a list of choices")
    if cfg.sampler.name == "nsga2" and len(cfg.objectives) < 2:
        ctx.fail(data, "sampler", "sampler.name", "nsga2 needs two or more objectives; use tpe for val_acc alone")
    if cfg.n_trials is None and cfg.timeout_s is None and cfg.sampler.name != "grid":
        ctx.fail(data, "n_trials", "n_trials", "missing; give n_trials or timeout_s (or both)")

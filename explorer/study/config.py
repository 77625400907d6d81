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

from explorer.core import yamlio
from explorer.core.errors import UserError
from explorer.core.util import is_int as _is_int
from explorer.core.util import is_number as _is_num
from explorer.design.budgets import ANALYTIC_BUDGETS, INT_COSTS, STUDY_BUDGETS
from explorer.latency.measure import LATENCY_LIMITS, LatencyConfig, wanted_section
from explorer.study.configcheck import (
    DATA_LIMITS,
    MAX_SEED,
    TRAINER_LIMITS,
    Ctx,
    Limit,
    check_keys,
    get_value,
    is_seed,
    limit_check,
    nullable,
    pos_int,
    short,
    type_name,
)
from explorer.study.configspace import Knob, parse_space
from explorer.study.early_stop import SizeAwareRule
from explorer.study.schedule import Schedule, parse_schedule
from explorer.training.config import TrainerConfig

OBJECTIVES = ("val_acc", *STUDY_BUDGETS)  # val_acc maximised, the costs minimised
SAMPLERS = ("tpe", "nsga2", "random", "grid", "gp")


@dataclass(frozen=True)
class DataConfig:
    """Which images (explorer.training.data.load_data): a source, a train subset, a val split from train.

    `source` is a dataset name (cifar10, cifar100, synthetic) or a path (an ImageFolder
    tree or its .tar.gz); at run time --data > EXPLORER_DATA > this > the CIFAR-10 archive
    beside the repository (explorer.training.datasource).
    """

    source: str | None = None
    per_class: int | None = None  # training images kept per class; None = all
    val_per_class: int = 100  # carved from train, seeded and class-balanced
    resolution: int = 32
    seed: int = 0


# Trainer settings that are not part of a study's recipe: changing them makes no other study.
# time_budget_s only guards against a runaway trial; a trial it cuts is kept off the front.
NOT_RECIPE = ("time_budget_s",)


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
    not 0.5); multi-objective ones the size-aware rule (explorer.study.early_stop), comparing
    with finished trials whose `size_by` cost is within `size_factor` of the trial's.
    """

    warmup_epochs: int = SizeAwareRule.warmup_epochs  # the rule's own defaults (explorer.study.early_stop)
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
    schedule: Schedule | None = None  # multi-fidelity: rung epochs and the share kept (explorer.study.schedule)
    latency: LatencyConfig | None = None  # set when latency_ms is an objective, a budget, or asked for
    n_trials: int | None = None
    timeout_s: float | None = None
    jobs: int | str | None = None  # trial processes of `explorer run` on this machine (None: 1); or "auto"
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
            **({"schedule": self.schedule.to_dict()} if self.schedule else {}),
            "n_trials": self.n_trials, "timeout_s": self.timeout_s,
            **({"jobs": self.jobs} if self.jobs is not None else {}),
            "check_fvcore": self.check_fvcore, **({"latency": asdict(self.latency)} if self.latency else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "StudyConfig":
        """Validate a mapping (a parsed study file or a stored config)."""
        return _parse(data, source)

    def identity(self) -> dict[str, Any]:
        """The parts that must match to resume a study: space, objectives, budgets, data, trainer
        (all but its time_budget_s: a guard against runaway trials, not part of the recipe)."""
        d = self.to_dict()
        data = dict(d["data"], source=None)  # paths differ between machines
        trainer = {k: v for k, v in d["trainer"].items() if k not in NOT_RECIPE}
        return {"space": d["space"], "objectives": d["objectives"], "budgets": d["budgets"],
                "data": data, "trainer": trainer, "latency": d.get("latency")}

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
    text = yamlio.read_text(path, "study file")
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


def resolve_target(study: str, storage: str | None) -> tuple[str, str, list[str]]:
    """(study name, storage URL, objectives) from a study file path or a study name."""
    from explorer.store.urls import default_storage_url

    if study.endswith((".yaml", ".yml")) or Path(study).is_file():
        config = load_config(study)
        return config.name, storage or config.storage or default_storage_url(config.name), list(config.objectives)
    return study, storage or default_storage_url(study), []


def _parse(data: Any, source: str) -> StudyConfig:
    ctx = Ctx(source)
    top = ("name", "description", "storage", "data", "trainer", "space", "objectives",
           "budgets", "sampler", "early_stop", "schedule", "n_trials", "timeout_s", "jobs", "check_fvcore", "latency")
    check_keys(ctx, data, top, "", None, "")
    if "name" not in data:
        ctx.fail(data, "name", "name", "missing; every study needs a name (letters, digits, -, _)")
    name = get_value(ctx, data, "name", "", None, lambda v: isinstance(v, str) and _good_name(v),
                "a name of letters, digits, '-', '_' and '.'")
    trainer = _parse_trainer(ctx, data)
    cfg = StudyConfig(
        name=name,
        description=get_value(ctx, data, "description", "", "", lambda v: isinstance(v, str), "text"),
        storage=get_value(ctx, data, "storage", "", None, nullable(lambda v: isinstance(v, str) and v),
                     "a storage URL or path"),
        data=_parse_data(ctx, data),
        trainer=trainer,
        space=parse_space(ctx, data),
        objectives=_parse_objectives(ctx, data),
        budgets=_parse_budgets(ctx, data),
        sampler=_parse_sampler(ctx, data),
        early_stop=_parse_early_stop(ctx, data),
        schedule=parse_schedule(ctx, data, trainer.epochs),
        latency=_parse_latency(ctx, data),
        n_trials=get_value(ctx, data, "n_trials", "", None, nullable(pos_int), "an integer >= 1"),
        timeout_s=get_value(ctx, data, "timeout_s", "", None, nullable(lambda v: _is_num(v) and v > 0),
                       "a number of seconds > 0"),
        jobs=get_value(ctx, data, "jobs", "", None, nullable(lambda v: v == "auto" or pos_int(v)),
                       "a number of processes >= 1, or auto (one per core)"),
        check_fvcore=get_value(ctx, data, "check_fvcore", "", True, lambda v: isinstance(v, bool),
                          "true or false"),
    )
    _check_whole(ctx, data, cfg)
    return cfg


def _good_name(v: str) -> bool:
    return bool(v) and all(c.isalnum() or c in "-_." for c in v) and not v.startswith(".")


def _section(ctx: Ctx, data: dict, key: str, cls: type) -> tuple[dict, tuple[str, ...]]:
    allowed = tuple(cls.__dataclass_fields__)
    m = data.get(key, {})
    if m is None:
        m = {}
    check_keys(ctx, m, allowed, key, data, key)
    return m, allowed



def _parse_limited(ctx: Ctx, data: dict, section: str, cls, limits: dict[str, Limit]):
    m, _ = _section(ctx, data, section, cls)
    values = {}
    for f in fields(cls):
        check, what = limit_check(limits[f.name])
        values[f.name] = get_value(ctx, m, f.name, section, f.default, check, what)
    return values


def _parse_data(ctx: Ctx, data: dict) -> DataConfig:
    return DataConfig(**_parse_limited(ctx, data, "data", DataConfig, DATA_LIMITS))


def _parse_trainer(ctx: Ctx, data: dict) -> TrainerConfig:
    values = _parse_limited(ctx, data, "trainer", TrainerConfig, TRAINER_LIMITS)
    for key in ("lr", "momentum", "weight_decay", "label_smoothing"):
        values[key] = float(values[key])
    return TrainerConfig(**values)


def _parse_objectives(ctx: Ctx, data: dict) -> tuple[str, ...]:
    obj = data.get("objectives", ["val_acc", "params"])
    ok = isinstance(obj, list) and obj and all(isinstance(o, str) for o in obj)
    if not ok:
        ctx.fail(data, "objectives", "objectives", f"must be a list such as [val_acc, params], got {short(obj)}")
    for o in obj:
        if o not in OBJECTIVES:
            ctx.fail(data, "objectives", "objectives",
                     f"unknown objective {short(o)}; allowed: {', '.join(OBJECTIVES)}")
    if obj[0] != "val_acc" or len(set(obj)) != len(obj):
        ctx.fail(data, "objectives", "objectives",
                 "must start with val_acc (maximised) followed by distinct costs to minimise")
    return tuple(obj)


def _parse_budgets(ctx: Ctx, data: dict) -> tuple[tuple[str, float], ...]:
    m = data.get("budgets")
    if m is None:  # left out or null: no budgets; 0, [] or "" are mistakes, not "none"
        m = {}
    if not isinstance(m, dict):
        ctx.fail(data, "budgets", "budgets", f"must be a mapping such as {{params: 200000}} (leave it out for "
                 f"no budgets), got {type_name(m)} {short(m)}")
    check_keys(ctx, m, STUDY_BUDGETS, "budgets", data, "budgets")
    out = []
    for k in STUDY_BUDGETS:
        if k not in m:
            continue
        if k in INT_COSTS:  # a count: 2e5 is fine, 0.5 or 199999.9 would be silently truncated
            v = get_value(ctx, m, k, "budgets", None, lambda v: _is_num(v) and v >= 1 and float(v).is_integer(),
                     "a whole number >= 1 (such as 200000 or 2e5)")
            out.append((k, int(v)))
        else:
            v = get_value(ctx, m, k, "budgets", None, lambda v: _is_num(v) and v > 0, "a number > 0")
            out.append((k, float(v)))
    return tuple(out)


def _parse_sampler(ctx: Ctx, data: dict) -> SamplerConfig:
    m = data.get("sampler")
    if m is None:
        m = {}
    if not isinstance(m, (str, dict)):  # sampler: 0 is not "the default"
        ctx.fail(data, "sampler", "sampler", f"must be a sampler name ({', '.join(SAMPLERS)}) or a mapping, "
                 f"got {type_name(m)} {short(m)}")
    if isinstance(m, str):
        if m not in SAMPLERS:
            ctx.fail(data, "sampler", "sampler", f"unknown sampler {short(m)}; allowed: {', '.join(SAMPLERS)}")
        m = {"name": m}
    check_keys(ctx, m, tuple(SamplerConfig.__dataclass_fields__), "sampler", data, "sampler")
    p = "sampler"
    name = get_value(ctx, m, "name", p, "tpe", lambda v: v in SAMPLERS, "one of " + ", ".join(SAMPLERS))
    return SamplerConfig(
        name=name, seed=get_value(ctx, m, "seed", p, 0, is_seed, f"an integer in [0, {MAX_SEED}]"),
        population_size=get_value(ctx, m, "population_size", p, None, nullable(lambda v: _is_int(v) and v >= 2),
                             "an integer >= 2"),
        n_startup_trials=get_value(ctx, m, "n_startup_trials", p, None, nullable(pos_int), "an integer >= 1"),
    )


def _parse_early_stop(ctx: Ctx, data: dict) -> EarlyStopConfig | None:
    m = data.get("early_stop")
    if m is None or m is False:
        return None
    if m is True:
        m = {}
    check_keys(ctx, m, tuple(EarlyStopConfig.__dataclass_fields__), "early_stop", data, "early_stop")
    p, d = "early_stop", EarlyStopConfig()
    return EarlyStopConfig(
        warmup_epochs=get_value(ctx, m, "warmup_epochs", p, d.warmup_epochs, lambda v: _is_int(v) and v >= 0,
                           "an integer >= 0"),
        min_trials=get_value(ctx, m, "min_trials", p, d.min_trials, pos_int, "an integer >= 1"),
        quantile=float(get_value(ctx, m, "quantile", p, d.quantile, lambda v: _is_num(v) and 0 < v < 1, "in (0, 1)")),
        size_factor=float(get_value(ctx, m, "size_factor", p, d.size_factor, lambda v: _is_num(v) and v >= 1,
                               "a number >= 1")),
        size_by=get_value(ctx, m, "size_by", p, d.size_by, lambda v: v in ANALYTIC_BUDGETS,
                     "one of " + ", ".join(ANALYTIC_BUDGETS)),
    )


def _parse_latency(ctx: Ctx, data: dict) -> LatencyConfig | None:
    """The `latency:` section (explorer.latency.measure.wanted_section: implied by latency_ms, true = defaults)."""
    m = wanted_section(data)
    return None if m is None else LatencyConfig(**_parse_limited(ctx, {"latency": m}, "latency", LatencyConfig,
                                                                 LATENCY_LIMITS))



def _check_whole(ctx: Ctx, data: dict, cfg: StudyConfig) -> None:
    """Checks that span sections: grids need finite knobs; early_stop.size_by; NSGA-II is multi-objective."""
    if cfg.sampler.name == "grid":
        for k in cfg.space:
            if k.kind == "range" and (k.step is None and not (k.is_int and not k.log)):
                ctx.fail(data["space"], k.name, f"space.{k.name}",
                         "a grid needs a finite knob: give a step or a list of choices")
    if cfg.sampler.name == "nsga2" and len(cfg.objectives) < 2:
        ctx.fail(data, "sampler", "sampler.name", "nsga2 needs two or more objectives; use tpe for val_acc alone")
    if cfg.schedule is not None and cfg.early_stop is not None:
        ctx.fail(data, "schedule", "schedule", "and early_stop both stop trials early; keep one of them "
                 "(set early_stop: false)")
    if cfg.n_trials is None and cfg.timeout_s is None and cfg.sampler.name != "grid":
        ctx.fail(data, "n_trials", "n_trials", "missing; give n_trials or timeout_s (or both)")

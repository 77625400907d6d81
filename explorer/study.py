"""The run loop: create, resume or join a study, then run its trials until n_trials are done.

`run_study` is `explorer run`'s entry (everything is checked, and the data loaded, before
the study is created or changed); `join_worker` is `explorer worker`'s (the config is read
from storage, only the data and the device are local). Both end in `run_trials`, which
claims each trial under the study's lock (explorer.store.claim) and runs it with
explorer.objective.TrialRunner; it takes an injected `trainer` for tests and benchmarks.

Never lose a trial: at start-up and before each trial, RUNNING trials whose worker is gone
are failed and retried (explorer.store.workers). Ctrl-C (or SIGTERM) fails the running
trial, enqueues it again and returns; running the same command again resumes.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import threading
import time
import warnings
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from explorer import store
from explorer.budgets import budget_text, over_budget
from explorer.config import StudyConfig
from explorer.cost import estimate_cost
from explorer.datasource import default_archive, require, resolve_source
from explorer.errors import SpecError, UserError
from explorer.objective import InvalidSpec, TrialRunner, format_outcome, outcome
from explorer.runtime import check_device
from explorer.space import Space
from explorer.store import attrs as A
from explorer.util import defer_interrupts, print_notes, si

FEASIBILITY_SAMPLES = 2000
MAX_INFEASIBLE_STREAK = 1000


@dataclass
class RunSummary:
    """Counts for the trials this call ran, and the study's totals after it."""

    study_name: str
    storage_url: str
    ran: int = 0
    trained: int = 0
    states: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    gave_up: str = ""  # why the run stopped early without reaching n_trials (an error)


# --- checks before anything runs ---------------------------------------------------------

def check_space(config: StudyConfig, num_classes: int = 10, samples: int = FEASIBILITY_SAMPLES) -> dict:
    """Reject a space with no valid, within-budget point (corners plus random draws).

    Returns the shares found, e.g. {"checked": 2002, "invalid": 0.1, "over_budget": 0.3}.
    """
    space = Space.from_config(config, num_classes)
    rng = random.Random(config.sampler.seed)
    draws = space.corners() + [space.sample(rng) for _ in range(samples)]
    if config.sampler.name == "grid" and space.grid_size() <= samples:
        draws = space.grid_points()
    invalid = over = 0
    first_error, smallest = "", None
    budgets = config.budget
    for values in draws:
        try:
            cost = estimate_cost(space.spec(values))
        except SpecError as exc:
            invalid += 1
            first_error = first_error or str(exc)
            continue
        if over_budget(cost, budgets):
            over += 1
            if smallest is None or cost.params < smallest.params:
                smallest = cost
    n = len(draws)
    if invalid == n:
        raise UserError(f"{config.name}: no point of the search space is a valid network "
                        f"({first_error}); widen the space or fix the fixed knobs")
    for knob, choice, why in space.dead_choices():
        raise UserError(f"{config.name}: space.{knob}: the choice {_spelled(choice)} never gives a valid "
                        f"network with the rest of the space ({why}); drop it, or widen the knob it "
                        "depends on")
    if invalid + over == n:
        figures = ", ".join(f"{k} {si(getattr(smallest, k))}" for k in budgets if hasattr(smallest, k))
        raise UserError(f"{config.name}: no point of the search space meets the budgets "
                        f"{budget_text(budgets)} (the smallest of {n} points checked has {figures}); "
                        "raise the budgets or shrink the space")
    return {"checked": n, "invalid": invalid / n, "over_budget": over / n}


def _spelled(choice: Any) -> str:
    """A choice as the study file writes it: [7, 9] for pools, none for text."""
    return str(list(choice)) if isinstance(choice, tuple) else str(choice)


def grid_trials(space: Space, config: StudyConfig, wanted: int | None) -> int:
    """How many trials a grid study can count: its valid, within-budget points (at most `wanted`).

    Over-budget and invalid points are recorded but never count, so aiming at the whole
    grid would make Optuna's GridSampler re-run points to make up the number.
    """
    size = space.grid_size()
    countable = size
    if size <= 200_000:  # microseconds per point
        countable = 0
        for values in space.grid_points():
            try:
                countable += not over_budget(estimate_cost(space.spec(values)), config.budget)
            except SpecError:
                pass
    return min(wanted or countable, countable)


# --- the study -------------------------------------------------------------------------

def make_sampler(config: StudyConfig, space: Space):
    """The configured Optuna sampler, seeded."""
    import optuna

    s = config.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "nsga2":
        kw = {"population_size": s.population_size} if s.population_size else {}
        return optuna.samplers.NSGAIISampler(seed=s.seed, **kw)
    kw = {"n_startup_trials": s.n_startup_trials} if s.n_startup_trials else {}
    return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, **kw)


def make_pruner(config: StudyConfig):
    """Optuna's median (or percentile) pruner for single-objective studies; else none."""
    import optuna

    es = config.early_stop
    if es is None or len(config.objectives) > 1:
        return optuna.pruners.NopPruner()
    # Optuna's `percentile` is the share of trials kept, compared at the same step, so
    # "stop below the q-quantile" is PercentilePruner((1 - q) * 100); n_min_trials counts
    # trials that reported at that epoch (n_startup_trials counts any COMPLETE trial,
    # over-budget and duplicate ones included).
    kw = dict(n_startup_trials=es.min_trials, n_warmup_steps=es.warmup_epochs, n_min_trials=es.min_trials)
    if es.quantile == 0.5:
        return optuna.pruners.MedianPruner(**kw)
    return optuna.pruners.PercentilePruner((1 - es.quantile) * 100, **kw)


def open_study(config: StudyConfig, storage_url: str, *, create: bool = True):
    """Create the study or resume it; a stored config with another search space is an error.

    Nothing is written when the existing study does not match.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = store.open_storage(storage_url, create=create, stale_callback=store.retry_stale)
    space = Space.from_config(config)
    sampler, pruner = make_sampler(config, space), make_pruner(config)
    if config.name not in store.study_names(storage):
        if not create:
            raise UserError(f"no study named {config.name!r} in {store.mask_url(storage_url)}")
        try:
            with defer_interrupts():  # Ctrl-C must not leave a study without its config
                study = optuna.create_study(study_name=config.name, storage=storage, sampler=sampler,
                                            pruner=pruner, directions=config.directions)
                study.set_metric_names(list(config.objectives))
                study.set_user_attr(A.CONFIG, config.to_dict())
                study.set_user_attr(A.OBJECTIVES, list(config.objectives))
            return study
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: resume it like any other
    study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
    _check_same_study(study, config, storage_url)
    if create and study.user_attrs.get(A.CONFIG) != config.to_dict():
        # n_trials, timeout, sampler, early stopping or the data path changed (the identity
        # did not): store them, so that workers joining from storage follow this run
        study.set_user_attr(A.CONFIG, config.to_dict())
    return study


def _check_same_study(study, config: StudyConfig, storage_url: str) -> None:
    stored = study.user_attrs.get(A.CONFIG)
    for _ in range(20):  # a process that is creating the study writes its config next
        if stored is not None:
            break
        time.sleep(0.25)
        stored = store.study_storage(study).get_study_user_attrs(store.study_id(study)).get(A.CONFIG)
    if stored is None:
        raise UserError(f"study {config.name!r} in {store.mask_url(storage_url)} was not made by "
                        "explorer; choose another name")
    old = StudyConfig.from_dict(stored, source="stored config").identity()
    new = config.identity()
    for part in ("space", "objectives", "budgets", "data", "trainer", "latency"):
        if old[part] != new[part]:
            diff = _first_difference(old[part], new[part], part)
            raise UserError(f"study {config.name!r} already exists in {store.mask_url(storage_url)} "
                            f"with a different {part} ({diff}); rename the study or use another --storage")


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{path}.{k}" if path else k)
    return f"{path or 'value'}: stored {old!r}, file {new!r}"


def join_study(storage_url: str, study_name: str):
    """(study, config) of an existing study, the config read from the study's user attrs."""
    storage = store.open_storage(storage_url, create=False, stale_callback=store.retry_stale)
    stored = storage.get_study_user_attrs(store.find_study(storage, study_name)).get(A.CONFIG)
    if stored is None:
        raise UserError(f"study {study_name!r} has no explorer config; it was not made by `explorer run`")
    config = StudyConfig.from_dict(stored, source=f"study {study_name!r}")
    return open_study(config, storage_url, create=False), config


def load_data_for(config: StudyConfig, data_path: str):
    """Load the study's dataset once per process (explorer.data.load_data)."""
    from explorer.data import load_data

    d = config.data
    data = load_data(data_path, per_class=d.per_class, val_per_class=d.val_per_class,
                     resolution=d.resolution, seed=d.seed)
    print_notes(data.notes)
    return data


# --- the run loop ----------------------------------------------------------------------

def run_trials(study, config: StudyConfig, *, data: Any, device: str, n_trials: int | None = None,
               timeout_s: float | None = None, trainer: Callable | None = None,
               num_classes: int | None = None, progress: bool = True, out=None,
               storage_url: str | None = None) -> RunSummary:
    """Run trials of an existing study until n_trials count as done, the time is up or Ctrl-C.

    n_trials counts the study's finished trials (all workers, earlier runs included);
    infeasible trials cost microseconds and do not count. Each trial is claimed under the
    study's lock, as `explorer worker` does, so runs and workers together never start more
    than n_trials (a journal file's lock needs `storage_url`).
    """
    import optuna
    from tqdm import tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = out or sys.stdout
    n_classes = num_classes or _num_classes(data)
    runner = TrialRunner(study, config, data=data, device=device, trainer=trainer, num_classes=n_classes)
    n_trials = n_trials if n_trials is not None else config.n_trials
    if config.sampler.name == "grid":
        n_trials = grid_trials(runner.space, config, n_trials)
    timeout_s = timeout_s if timeout_s is not None else config.timeout_s
    summary = RunSummary(study.study_name, "")

    def lock():
        return store.study_lock(study, storage_url)

    with lock():  # fail + requeue atomically for the other workers (see explorer.store.claim)
        stale = store.fail_stale_trials(study)
    if stale:
        print(f"retrying trials of workers that died: {', '.join(f'#{n}' for n in stale)}", file=out)
    done = store.count_done(study)
    if n_trials is not None and done >= n_trials:
        print(f"{study.study_name}: {done} trials already done (n_trials={n_trials}); nothing to run",
              file=out)
        return summary
    bar = tqdm(total=n_trials, initial=done, unit="trial", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc=study.study_name)
    started, streak, stopping = time.perf_counter(), [0], [False]

    def after(study_, frozen) -> None:
        summary.ran += 1
        summary.states[frozen.state.name] = summary.states.get(frozen.state.name, 0) + 1
        counted = frozen.state.name in ("COMPLETE", "PRUNED") and not frozen.user_attrs.get(A.INFEASIBLE)
        summary.trained += int(counted and frozen.user_attrs.get(A.DUPLICATE_OF) is None)
        streak[0] = 0 if counted else streak[0] + 1
        tqdm.write(format_outcome(outcome(frozen)), file=out)
        if counted:
            bar.update(1)
        if streak[0] >= MAX_INFEASIBLE_STREAK:
            summary.gave_up = (f"stopped after {streak[0]} trials in a row were infeasible or failed; "
                               "shrink the space or raise the budgets")
            tqdm.write(f"stopping: {summary.gave_up}", file=out)
            stopping[0] = True

    old_term = _term_as_interrupt()
    try:
        store.work(study, runner, target=n_trials, lock=lock, timeout_s=timeout_s,
                   catch=(InvalidSpec,), on_trial=after, stop=lambda: stopping[0] or runner.exhausted(), out=out)
    except KeyboardInterrupt:
        summary.interrupted = True
        store.interrupted(study, lock)  # fail + requeue atomically for the other workers
    finally:
        bar.close()
        if runner.beat is not None:
            runner.beat.stop()
        summary.seconds = time.perf_counter() - started
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return summary


def _term_as_interrupt():
    """SIGTERM (a scheduler stopping a worker) finalises the running trial as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _num_classes(data: Any) -> int:
    if hasattr(data, "num_classes"):
        return int(data.num_classes)
    classes = getattr(data, "classes", None)
    return len(classes) if classes is not None else 10


def run_study(config: StudyConfig, *, storage_url: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, data_path: str | None = None, device: str | None = None,
              trainer: Callable | None = None, data: Any = None, progress: bool = True,
              out=None) -> RunSummary:
    """Check everything, create or resume the study, load the data, run trials."""
    out = out or sys.stdout
    url = storage_url or config.storage or store.default_storage_url(config.name)
    check_space(config)
    device = check_device(device)
    if config.latency and config.latency.device:  # a named latency device must be here too
        check_device(config.latency.device)
    # Everything is checked, and the data loaded, before the study is created or changed.
    if data is None:
        path = require(resolve_source(data_path, config.data.source, missing=(
            "no data given: pass --data PATH, set EXPLORER_DATA, set data.source in the study file, "
            f"or place the archive at {default_archive()}")))
        config = replace(config, data=replace(config.data, source=path))
        data = load_data_for(config, path)
    if _num_classes(data) != 10:
        check_space(config, num_classes=_num_classes(data))  # the classifier's size changed
    overrides = {k: v for k, v in (("n_trials", n_trials), ("timeout_s", timeout_s)) if v is not None}
    config = replace(config, storage=store.mask_url(url), **overrides)
    study = open_study(config, url)
    summary = run_trials(study, config, data=data, device=device, n_trials=n_trials, storage_url=url,
                         timeout_s=timeout_s, trainer=trainer, progress=progress, out=out)
    summary.storage_url = url
    return summary


# --- a worker: join a study from storage -----------------------------------------------------

@dataclass
class Joined:
    """A study joined from storage: its config, this worker's objective and its target."""

    study: Any
    config: StudyConfig
    runner: TrialRunner
    target: int | None


def join_worker(url: str, name: str, *, data_path: str | None, device: str | None, n_trials: int | None,
                heartbeat_interval: int | None = None, grace_period: int | None = None) -> Joined:
    """Join a study (config from storage), load its data here, build the objective; nothing runs yet."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, config = join_study(url, name)
    store.tune_heartbeat(study, heartbeat_interval, grace_period)
    device = check_device(device)
    path = require(resolve_source(data_path, config.data.source, missing=(
        f"no data for study {config.name!r} on this machine: pass --data PATH or set EXPLORER_DATA")))
    data = load_data_for(config, path)
    runner = TrialRunner(study, config, data=data, device=device, trainer=None, num_classes=data.num_classes)
    target = n_trials if n_trials is not None else config.n_trials
    if config.sampler.name == "grid":
        target = grid_trials(runner.space, config, target)
    return Joined(study, config, runner, target)


def reseed(joined: Joined) -> int:
    """Give this worker's sampler its own seed: equal seeds would propose equal trials."""
    config = joined.config
    seed = (config.sampler.seed + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())) % 2**31
    joined.study.sampler = make_sampler(replace(config, sampler=replace(config.sampler, seed=seed)),
                                        joined.runner.space)
    return seed

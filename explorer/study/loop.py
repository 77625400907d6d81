"""The run loop: create, resume or join a study, then run its trials until n_trials are done.

`run_study` is `explorer run`'s entry (everything is checked, and the data loaded, before
the study is created or changed); `join_worker` is `explorer worker`'s (the config is read
from storage, only the data and the device are local). Both end in `run_trials`, which
claims each trial under the study's lock (explorer.store.claim) and runs it with
explorer.study.objective.TrialRunner; it takes an injected `trainer` for tests and benchmarks.

Never lose a trial: at start-up and before each trial, RUNNING trials whose worker is gone
are failed and retried (explorer.store.workers). Ctrl-C (or SIGTERM) fails the running
trial, enqueues it again and returns; running the same command again resumes. A trial
the time_budget_s guard cut is counted apart ("2 cut by the time budget") and retried only
when asked (`retry_cut`, `explorer run --retry-cut`).
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from explorer import store
from explorer.core.errors import SpecError, UserError
from explorer.core.runtime import check_device, use_threads
from explorer.core.util import defer_interrupts, print_notes, si
from explorer.design.budgets import budget_text, over_budget
from explorer.design.cost import estimate_cost
from explorer.design.spec import spec_id
from explorer.store import attrs as A
from explorer.study.config import StudyConfig
from explorer.study.objective import InvalidSpec, TrialRunner, format_outcome, outcome
from explorer.study.sampling import make_sampler
from explorer.study.space import Space
from explorer.training.datasource import default_archive, require, resolve_source

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
    requeued: list[int] = field(default_factory=list)  # cut trials queued again (--retry-cut)
    exhausted: str = ""  # why the run stopped early because no new network was coming (not an error)

    def counts_text(self) -> str:
        """'14 networks trained, 2 cut by the time budget' (the trials this call ran)."""
        return states_text(self.states)


CUT_STATE = store.CUT_STATE  # a summary key: trials the time_budget_s guard cut (stored PRUNED, end time_budget)


states_text = store.counts_text  # '16 networks trained, 2 duplicates (reused), 1 cut by the time budget'


# --- checks before anything runs ---------------------------------------------------------

def check_space(config: StudyConfig, space: Space | None = None, samples: int = FEASIBILITY_SAMPLES) -> dict:
    """Reject a space with no valid, within-budget point (corners plus random draws).

    `space` defaults to the config's at 10 classes. Returns the shares found, e.g.
    {"checked": 2002, "invalid": 0.1, "over_budget": 0.3}.
    """
    space = space or Space.from_config(config)
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
    """How many trials a grid study can count: its valid, within-budget networks (at most `wanted`).

    Over-budget and invalid points are recorded but never count, so aiming at the whole
    grid would make Optuna's GridSampler re-run points to make up the number.
    """
    size = space.grid_size()
    countable = size
    if size <= 200_000:  # microseconds per point
        networks = set()  # points that build the same network are duplicates: they count once
        for values in space.grid_points():
            try:
                spec = space.spec(values)
            except SpecError:
                continue
            if not over_budget(estimate_cost(spec), config.budget):
                networks.add(spec_id(spec))
        countable = len(networks)
    return min(wanted or countable, countable)


# --- the study -------------------------------------------------------------------------

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


def open_study(config: StudyConfig, storage_url: str, *, create: bool = True, space: Space | None = None):
    """Create the study or resume it; a stored config with another search space is an error.

    Nothing is written when the existing study does not match. `space` (default: the
    config's) gives the sampler its knobs.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = store.open_storage(storage_url, create=create, stale_callback=store.retry_stale)
    space = space or Space.from_config(config)
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


def joined_config(storage_url: str, study_name: str) -> StudyConfig:
    """The config of an existing study, read from the study's user attrs."""
    storage = store.open_storage(storage_url, create=False, stale_callback=store.retry_stale)
    stored = store.stored_config(storage, study_name)
    if stored is None:
        raise UserError(f"study {study_name!r} has no explorer config; it was not made by `explorer run`")
    return StudyConfig.from_dict(stored, source=f"study {study_name!r}")


def join_study(storage_url: str, study_name: str):
    """(study, config) of an existing study, the config read from the study's user attrs."""
    config = joined_config(storage_url, study_name)
    return open_study(config, storage_url, create=False), config


def load_data_for(config: StudyConfig, data_path: str):
    """Load the study's dataset once per process (explorer.training.data.load_data)."""
    from explorer.training.data import load_data

    use_threads(config.trainer.threads)  # the resize on load runs on torch's threads too
    d = config.data
    data = load_data(data_path, per_class=d.per_class, val_per_class=d.val_per_class,
                     resolution=d.resolution, seed=d.seed)
    print_notes(data.notes)
    return data


# --- the run loop ----------------------------------------------------------------------

def run_trials(study, config: StudyConfig, *, data: Any, device: str, n_trials: int | None = None,
               timeout_s: float | None = None, trainer: Callable | None = None, space: Space | None = None,
               progress: bool = True, out=None, storage_url: str | None = None,
               retry_cut: bool = False, build: Callable | None = None) -> RunSummary:
    """Run trials of an existing study until n_trials count as done, the time is up or Ctrl-C.

    n_trials counts the study's finished trials (all workers, earlier runs included);
    infeasible trials cost microseconds and do not count. Each trial is claimed under the
    study's lock, as `explorer worker` does, so runs and workers together never start more
    than n_trials (a journal file's lock needs `storage_url`). `retry_cut` first enqueues
    the trials the time budget cut; each retry takes its cut trial's place in the count.
    `space` defaults to the config's at the data's classes.
    `trainer` and `build` (spec -> what the trainer takes) replace the real ones in tests and
    replays (explorer.tabular.replay).
    """
    import optuna
    from tqdm import tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = out or sys.stdout
    space = space or Space.from_config(config, _num_classes(data))
    runner = TrialRunner(study, config, data=data, device=device, trainer=trainer, space=space,
                         build=build)
    n_trials = n_trials if n_trials is not None else config.n_trials
    if config.sampler.name == "grid":
        n_trials = grid_trials(space, config, n_trials)
    summary = RunSummary(study.study_name, "")
    with store.study_lock(study, storage_url):  # fail + requeue atomically for the other workers
        stale = store.fail_stale_trials(study)
        summary.requeued = store.requeue_cut(study) if retry_cut else []
    if stale:
        print(f"retrying trials of workers that died: {', '.join(f'#{n}' for n in stale)}", file=out)
    if retry_cut:
        _say_requeued(summary.requeued, out)
    done = store.count_done(study)
    if n_trials is not None and done >= n_trials:
        print(f"{study.study_name}: {done} trials already done (n_trials={n_trials}); nothing to run",
              file=out)
        return summary
    bar = tqdm(total=n_trials, initial=done, unit="trial", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc=study.study_name)
    tally, started = _Tally(summary, bar, out), time.perf_counter()
    old_term = _term_as_interrupt()
    try:
        claim_trials(study, runner, summary, target=n_trials, url=storage_url,
                     timeout_s=timeout_s if timeout_s is not None else config.timeout_s,
                     on_trial=tally, stop=tally.gave_up, out=out)
    finally:
        bar.close()
        if runner.beat is not None:
            runner.beat.stop()
        summary.seconds = time.perf_counter() - started
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return summary


def claim_trials(study, runner: TrialRunner, summary: RunSummary, *, target: int | None, url: str | None,
                 timeout_s: float | None, poll_s: float = 2.0, on_trial: Callable | None = None,
                 stop: Callable[[], bool] | None = None, out=None) -> int:
    """Claim and run trials under the study's lock (explorer.store.work) until `target` count as
    done, the time is up, `stop()` or the runner finds the space exhausted; how many ran.

    Ctrl-C fails the running trial and queues it again (`summary.interrupted`); `summary.exhausted`
    says why no new network was coming, if that stopped the loop.
    """
    def lock():
        return store.study_lock(study, url)

    ran = 0
    try:
        ran = store.work(study, runner, target=target, lock=lock, poll_s=poll_s, timeout_s=timeout_s,
                         catch=(InvalidSpec,), on_trial=on_trial, out=out,
                         stop=lambda: (stop is not None and stop()) or runner.exhausted())
    except KeyboardInterrupt:
        summary.interrupted = True
        store.interrupted(study, lock)  # fail + requeue atomically for the other workers
    finally:
        summary.exhausted = runner.exhausted_reason()
    return ran


class _Tally:
    """The run loop's state between trials: each finished trial counted into the summary, its
    line printed, the progress bar moved; a streak of infeasible or failed trials gives up."""

    def __init__(self, summary: RunSummary, bar, out) -> None:
        self.summary, self.bar, self.out = summary, bar, out
        self.streak = 0  # infeasible or failed trials in a row

    def gave_up(self) -> bool:
        """True once MAX_INFEASIBLE_STREAK trials in a row were infeasible or failed."""
        return bool(self.summary.gave_up)

    def __call__(self, study, frozen) -> None:
        """explorer.store.work's `on_trial`: one finished trial."""
        from tqdm import tqdm

        s = self.summary
        s.ran += 1
        key = store.state_key(frozen)
        s.states[key] = s.states.get(key, 0) + 1
        a = frozen.user_attrs
        feasible = frozen.state.name in ("COMPLETE", "PRUNED") and not a.get(A.INFEASIBLE)
        counted = feasible and a.get(A.DUPLICATE_OF) is None  # as store.claim_counts counts
        s.trained += int(counted)
        self.streak = 0 if feasible else self.streak + 1
        tqdm.write(format_outcome(outcome(frozen)), file=self.out)
        if counted:
            self.bar.update(1)
        if self.streak >= MAX_INFEASIBLE_STREAK:
            s.gave_up = (f"stopped after {self.streak} trials in a row were infeasible or failed; "
                         "shrink the space or raise the budgets")
            tqdm.write(f"stopping: {s.gave_up}", file=self.out)


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


def _say_requeued(numbers: list[int], out) -> None:
    queued = ", ".join(f"#{n}" for n in numbers)
    print(f"retrying trials cut by the time budget: {queued}" if queued
          else "no trial cut by the time budget is waiting for a retry", file=out)


def run_study(config: StudyConfig, *, storage_url: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, data_path: str | None = None, device: str | None = None,
              trainer: Callable | None = None, data: Any = None, progress: bool = True,
              out=None, retry_cut: bool = False, jobs: int | str | None = None) -> RunSummary:
    """Check everything, create or resume the study, load the data, run trials.

    `jobs` (default: the study file's `jobs`, else 1): more than one runs the trials in that
    many child processes (explorer.study.jobs); 'auto' is one per core on CPU.
    """
    from explorer.study.jobs import resolve_jobs, run_jobs

    out = out or sys.stdout
    url = storage_url or config.storage or store.default_storage_url(config.name)
    space = Space.from_config(config)  # the run's one space: at 10 classes until the data says otherwise
    check_space(config, space)
    device = check_device(device)
    if config.latency and config.latency.device:  # a named latency device must be here too
        check_device(config.latency.device)
    # Everything is checked, and the data loaded, before the study is created or changed.
    store.check_writable(url)  # a read-only storage is found before minutes of data loading
    if data is None:
        path = require(resolve_source(data_path, config.data.source, missing=(
            "no data given: pass --data PATH, set EXPLORER_DATA, set data.source in the study file, "
            f"or place the archive at {default_archive()}")))
        config = replace(config, data=replace(config.data, source=path))
        data = load_data_for(config, path)
    if _num_classes(data) != space.num_classes:
        space = replace(space, num_classes=_num_classes(data))
        check_space(config, space)  # the classifier's size changed
    overrides = {k: v for k, v in (("n_trials", n_trials), ("timeout_s", timeout_s)) if v is not None}
    config = replace(config, storage=store.mask_url(url), **overrides)
    study = open_study(config, url, space=space)
    n_jobs = resolve_jobs(jobs if jobs is not None else config.jobs, config, device, space)
    if n_jobs > 1:
        if trainer is not None:
            raise ValueError("an injected trainer runs in this process only: use jobs=1")
        del data  # the children load their own (from the cache this load filled)
        requeued = []
        if retry_cut:  # queued before the children start, so they run the retries
            with store.study_lock(study, url):
                requeued = store.requeue_cut(study)
            _say_requeued(requeued, out)
        summary = run_jobs(study, config, url=url, jobs=n_jobs, device=device, n_trials=n_trials,
                           summary=RunSummary(study.study_name, url, requeued=requeued), progress=progress,
                           out=out)
        summary.storage_url = url
        return summary
    summary = run_trials(study, config, data=data, device=device, n_trials=n_trials, storage_url=url,
                         timeout_s=timeout_s, trainer=trainer, space=space, progress=progress, out=out,
                         retry_cut=retry_cut)
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
    url: str


def join_worker(url: str, name: str, *, data_path: str | None, device: str | None, n_trials: int | None,
                heartbeat_interval: int | None = None, grace_period: int | None = None,
                threads: int | None = None) -> Joined:
    """Join a study (config from storage), load its data here, build the objective; nothing runs yet.

    `threads` replaces the study's trainer.threads for this worker (each trial records its own).
    """
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = joined_config(url, name)
    config = replace(stored, trainer=replace(stored.trainer, threads=threads)) if threads is not None else stored
    device = check_device(device)
    path = require(resolve_source(data_path, config.data.source, missing=(
        f"no data for study {config.name!r} on this machine: pass --data PATH or set EXPLORER_DATA")))
    data = load_data_for(config, path)
    space = Space.from_config(config, data.num_classes)
    study = open_study(stored, url, create=False, space=space)  # the stored recipe: this worker's threads differ
    store.tune_heartbeat(study, heartbeat_interval, grace_period)
    runner = TrialRunner(study, config, data=data, device=device, trainer=None, space=space)
    target = n_trials if n_trials is not None else config.n_trials
    if config.sampler.name == "grid":
        target = grid_trials(space, config, target)
    return Joined(study, config, runner, target, url)


def run_joined(joined: Joined, *, poll_s: float = 2.0, on_trial: Callable | None = None) -> RunSummary:
    """`explorer worker`'s loop: trials of the joined study until its target counts as done, its
    timeout_s, Ctrl-C (`interrupted`) or no new network coming (`exhausted`)."""
    summary = RunSummary(joined.study.study_name, joined.url)
    summary.ran = claim_trials(joined.study, joined.runner, summary, target=joined.target, url=joined.url,
                               timeout_s=joined.config.timeout_s, poll_s=poll_s, on_trial=on_trial)
    return summary

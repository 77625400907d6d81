"""The objective and the run loop: sample -> validate -> cost -> build -> train -> record.

Per trial: the space suggests knob values (explorer.space is the only code calling
`trial.suggest_*`); the spec validates them (an invalid combination fails the trial with
its reason); the analytic cost decides the budget (over budget: recorded as infeasible,
with Optuna constraints set so samplers learn, never trained); an identical network
(same spec_id) already trained is reused (`duplicate_of`); otherwise the model is built,
its cost cross-checked with fvcore (a disagreement is a bug: the trial fails loudly and
the run stops), trained, and every figure needed to rebuild the result is stored.

Never lose a trial: each trial records its worker (host, pid, pid start time) and, on a
journal file (which has no Optuna heartbeat), a heartbeat every 30 s; at start-up and
before each trial, RUNNING trials whose worker is gone (or silent for 120 s) are marked
FAIL and their parameters enqueued again. RDB storages also use Optuna's heartbeat.
Ctrl-C fails the running trial (reason `interrupted`), enqueues it again and exits;
running the same command again resumes.

`run_study` is the CLI's entry; `join_study` is for workers (config read from storage);
both end in `run_trials`, which takes an injected `trainer` for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from explorer import storage as st
from explorer.config import StudyConfig
from explorer.cost import Cost, estimate_cost
from explorer.early_stop import Peer, SizeAwareRule
from explorer.errors import SpecError, UserError
from explorer.space import Space
from explorer.spec import spec_id as spec_id_of

ARCHIVE_NAME = "shared/datasets/cifar10-jpeg.tar.gz"
FEASIBILITY_SAMPLES = 2000
MAX_INFEASIBLE_STREAK = 1000


class CostMismatch(RuntimeError):
    """The analytic cost and fvcore disagree: a bug in cost.py or model.py, never user error."""


class InvalidSpec(Exception):
    """The sampled knobs make no valid network; the trial fails with the reason."""


# --- inputs -----------------------------------------------------------------------------

def default_archive() -> Path:
    """../shared/datasets/cifar10-jpeg.tar.gz beside the repository."""
    return Path(__file__).resolve().parents[2] / ARCHIVE_NAME


def resolve_data_path(cli: str | None, config: StudyConfig) -> str | None:
    """--data > EXPLORER_DATA > the study file's data.source > the archive beside the repo."""
    for candidate in (cli, os.environ.get("EXPLORER_DATA")):
        if candidate:
            return candidate
    source = config.data.source  # from a stored config it may be another machine's path
    if source and not (_looks_like_path(source) and not Path(source).exists()):
        return source
    archive = default_archive()
    return str(archive) if archive.exists() else None


def _looks_like_path(source: str) -> bool:
    return source not in ("cifar10", "cifar100", "synthetic") and not source.startswith("cifar")


def default_device() -> str:
    """cuda when available, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str | None) -> str:
    """The device to train on (default_device() for None); UserError for one that is not here."""
    import torch

    if name is None:
        return default_device()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "mps"):
        raise UserError(f"--device {name}: unsupported device type {dev.type!r}; use cpu or cuda")
    return name


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("explorer", "torch", "torchvision", "optuna", "fvcore", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_revision() -> str:
    """The project's git revision (with +dirty), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- checks before anything runs ---------------------------------------------------------

def over_budget(cost: Cost, budgets: dict[str, float]) -> str | None:
    """Why `cost` breaks a budget ('params 1.2M > 1M'), or None."""
    broken = [f"{k} {_fmt(getattr(cost, k))} > {_fmt(v)}" for k, v in budgets.items()
              if getattr(cost, k) > v]
    return "; ".join(broken) or None


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
    if invalid + over == n:
        figures = ", ".join(f"{k} {_fmt(getattr(smallest, k))}" for k in budgets)
        raise UserError(f"{config.name}: no point of the search space meets the budgets "
                        f"{_budget_text(budgets)} (the smallest of {n} points checked has {figures}); "
                        "raise the budgets or shrink the space")
    return {"checked": n, "invalid": invalid / n, "over_budget": over / n}


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


def _budget_text(budgets: dict[str, float]) -> str:
    return ", ".join(f"{k} <= {_fmt(v)}" for k, v in budgets.items())


def _fmt(v: float) -> str:
    if isinstance(v, float) and v < 1000:
        return f"{v:.3g}"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:g}"


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
    storage = st.open_storage(storage_url, create=create, stale_callback=retry_stale)
    space = Space.from_config(config)
    sampler, pruner = make_sampler(config, space), make_pruner(config)
    if config.name not in st.study_names(storage):
        if not create:
            raise UserError(f"no study named {config.name!r} in {st.mask_url(storage_url)}")
        try:
            with st.defer_interrupts():  # Ctrl-C must not leave a study without its config
                study = optuna.create_study(study_name=config.name, storage=storage, sampler=sampler,
                                            pruner=pruner, directions=config.directions)
                study.set_metric_names(list(config.objectives))
                study.set_user_attr(st.CONFIG, config.to_dict())
                study.set_user_attr(st.OBJECTIVES, list(config.objectives))
            return study
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: resume it like any other
    study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
    _check_same_study(study, config, storage_url)
    if create and study.user_attrs.get(st.CONFIG) != config.to_dict():
        # n_trials, timeout, sampler, early stopping or the data path changed (the identity
        # did not): store them, so that workers joining from storage follow this run
        study.set_user_attr(st.CONFIG, config.to_dict())
    return study


def _check_same_study(study, config: StudyConfig, storage_url: str) -> None:
    stored = study.user_attrs.get(st.CONFIG)
    for _ in range(20):  # a process that is creating the study writes its config next
        if stored is not None:
            break
        time.sleep(0.25)
        stored = study._storage.get_study_user_attrs(study._study_id).get(st.CONFIG)
    if stored is None:
        raise UserError(f"study {config.name!r} in {st.mask_url(storage_url)} was not made by "
                        "explorer; choose another name")
    old = StudyConfig.from_dict(stored, source="stored config").identity()
    new = config.identity()
    for part in ("space", "objectives", "budgets", "data", "trainer"):
        if old[part] != new[part]:
            diff = _first_difference(old[part], new[part], part)
            raise UserError(f"study {config.name!r} already exists in {st.mask_url(storage_url)} "
                            f"with a different {part} ({diff}); rename the study or use another --storage")


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{path}.{k}" if path else k)
    return f"{path or 'value'}: stored {old!r}, file {new!r}"


def join_study(storage_url: str, study_name: str):
    """(study, config) of an existing study, the config read from the study's user attrs."""
    storage = st.open_storage(storage_url, create=False, stale_callback=retry_stale)
    record = st.load_study_record(storage, study_name)
    stored = record.user_attrs.get(st.CONFIG)
    if stored is None:
        raise UserError(f"study {study_name!r} has no explorer config; it was not made by `explorer run`")
    config = StudyConfig.from_dict(stored, source=f"study {study_name!r}")
    return open_study(config, storage_url, create=False), config


# --- never lose a trial ------------------------------------------------------------------

def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None and os.path.exists("/proc"):
        return _proc_start(pid) == start
    return True


def stale_reason(trial, now: float, grace_s: float, heartbeats: bool) -> str | None:
    """Why a RUNNING trial's worker is gone (dead pid on this host, or no heartbeat), or None."""
    sa = trial.system_attrs
    host, pid = sa.get(st.WORKER_HOST), sa.get(st.WORKER_PID)
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return None
        if not _alive(pid, sa.get(st.WORKER_START)):
            return f"worker pid {pid} on {host} is gone"
        return None
    if not heartbeats:
        return None
    beat = sa.get(st.HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else now)
    if now - beat > grace_s:
        return f"no heartbeat from {host or 'its worker'} for {now - beat:.0f}s"
    return None


def retry_trial(study, trial, reason: str) -> None:
    """Enqueue the trial's parameters again, remembering which trial it retries."""
    if not trial.params:
        return
    origin = trial.user_attrs.get(st.RETRY_OF, trial.number)
    study.enqueue_trial(dict(trial.params), user_attrs={st.RETRY_OF: origin, "retry_reason": reason})


def retry_stale(study, trial) -> None:
    """Optuna's heartbeat callback (RDB storages): a stale trial is retried."""
    retry_trial(study, trial, "no heartbeat")


def fail_stale_trials(study, *, grace_s: float = st.GRACE_PERIOD_S) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL and enqueue them again; their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage, now = study._storage, time.time()
    heartbeats = st.kind_of_storage(storage) == "journal"
    failed = []
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(t, now, grace_s, heartbeats)
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, st.FAIL_REASON, f"stale: {reason}")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker got there first and retried it
        retry_trial(study, t, reason)
        failed.append(t.number)
    return failed


def finalise_own_running(study) -> None:
    """After Ctrl-C: no trial of this process may stay RUNNING (fail it, enqueue it again)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if t.system_attrs.get(st.WORKER_PID) != os.getpid() or t.system_attrs.get(st.WORKER_HOST) != socket.gethostname():
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, st.FAIL_REASON, "interrupted")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        retry_trial(study, t, "interrupted")


class _Heartbeat:
    """One thread per worker writing the running trial's heartbeat every `interval` s (journal files)."""

    def __init__(self, storage, interval: float) -> None:
        self.storage, self.interval = storage, interval
        self.trial_id: int | None = None
        self._wake, self._stopped = threading.Event(), False
        threading.Thread(target=self._beat, daemon=True).start()

    def stop(self) -> None:
        """End the thread (a run in a long-lived process must not leave one per call)."""
        self._stopped = True
        self._wake.set()

    def _beat(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopped:
                return
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self.storage.set_trial_system_attr(trial_id, st.HEARTBEAT, time.time())
            except Exception:  # the trial finished meanwhile; nothing to keep alive
                pass


# --- one trial -------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the summary line shows for one finished trial."""

    number: int
    state: str
    knobs: dict[str, Any]
    params: int | None = None
    macs: int | None = None
    val_acc: float | None = None
    seconds: float = 0.0
    note: str = ""


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


class TrialRunner:
    """The objective: one call runs one trial end to end."""

    def __init__(self, study, config: StudyConfig, *, data: Any, device: str,
                 trainer: Callable | None, num_classes: int) -> None:
        self.study, self.config, self.data, self.device = study, config, data, device
        self.trainer = trainer or _real_trainer()
        self.space = Space.from_config(config, num_classes)
        self.storage = study._storage
        self.heartbeats = st.kind_of_storage(self.storage) == "journal"
        self.beat = _Heartbeat(self.storage, st.HEARTBEAT_INTERVAL_S) if self.heartbeats else None
        self.rule = _size_rule(config)
        self.versions, self.git_rev = package_versions(), git_revision()
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.pid_start = _proc_start(self.pid)
        self._seen: set[int] = set()
        self.done_by_spec: dict[str, Any] = {}  # spec_id -> first COMPLETE trained trial
        self.peers: list[Peer] = []
        self.outcomes: list[Outcome] = []

    # the index of finished trials, refreshed incrementally (only unseen trials are read)
    def refresh(self) -> None:
        """Index finished trials not seen before: duplicates by spec_id, peers for early stop."""
        from optuna.trial import TrialState

        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        for t in self.storage.get_all_trials(self.study._study_id, deepcopy=False, states=finished):
            if t.number in self._seen:
                continue
            self._seen.add(t.number)
            a = t.user_attrs
            if a.get(st.INFEASIBLE) or a.get(st.DUPLICATE_OF) is not None or st.CURVE not in a:
                continue
            if t.state == TrialState.COMPLETE:
                self.done_by_spec.setdefault(a[st.SPEC_ID], t)
            if self.rule is not None:
                self.peers.append(Peer(float(a[self.rule.size_by]), tuple(a[st.CURVE])))

    def __call__(self, trial) -> list[float]:
        self._claim(trial)
        if self.beat:
            self.beat.trial_id = trial._trial_id
        values = None
        try:
            values = self.space.suggest(trial)
            result = self._evaluate(trial, values)
            return result
        except KeyboardInterrupt:
            with st.defer_interrupts():
                self._set(trial, {st.FAIL_REASON: "interrupted"})
                if values is not None:
                    retry_trial(self.study, self.storage.get_trial(trial._trial_id), "interrupted")
            raise
        except InvalidSpec as exc:
            self._set(trial, {st.FAIL_REASON: f"invalid spec: {exc}"})
            raise
        except CostMismatch as exc:
            self._set(trial, {st.FAIL_REASON: f"cost mismatch: {exc}"})
            raise
        finally:
            if self.beat:
                self.beat.trial_id = None

    def _claim(self, trial) -> None:
        """Record who runs this trial, so a dead worker's trial can be found and retried."""
        attrs = {st.WORKER_HOST: self.host, st.WORKER_PID: self.pid, st.WORKER_START: self.pid_start}
        if self.heartbeats:
            attrs[st.HEARTBEAT] = time.time()
        st.set_trial_attrs(self.storage, trial._trial_id, attrs, system=True)

    def _set(self, trial, attrs: dict[str, Any]) -> None:
        st.set_trial_attrs(self.storage, trial._trial_id, attrs)

    def _evaluate(self, trial, values: dict[str, Any]) -> list[float]:
        import optuna

        try:
            spec = self.space.spec(values)
        except SpecError as exc:
            raise InvalidSpec(str(exc)) from None
        cost, sid = estimate_cost(spec), spec_id_of(spec)
        record = {st.SPEC: spec.to_dict(), st.SPEC_ID: sid, st.PARAMS: cost.params,
                  st.MACS: cost.macs, st.ACTIVATIONS: cost.activations, st.SIZE_MB: cost.size_mb,
                  st.SIZE_MIB: cost.size_mib, st.SEED: self.config.trainer.seed,
                  st.DEVICE: self.device, st.VERSIONS: self.versions, st.GIT_REV: self.git_rev}
        for k, v in self.config.budget.items():
            trial.set_constraint(k, getattr(cost, k) / v - 1.0)
        reason = over_budget(cost, self.config.budget)
        if reason:
            self._set(trial, {**record, st.INFEASIBLE: True, st.OVER_BUDGET: reason})
            return self._values(0.0, cost)
        self.refresh()
        dup = self.done_by_spec.get(sid)
        if dup is not None:
            copied = {k: dup.user_attrs[k] for k in _RESULT_ATTRS if k in dup.user_attrs}
            self._set(trial, {**record, **copied, st.INFEASIBLE: False, st.DUPLICATE_OF: dup.number})
            return list(dup.values)
        self._set(trial, {**record, st.INFEASIBLE: False})
        res, pruned = self._train(trial, spec, cost)
        self._set(trial, {**_result_attrs(res, pruned), **({st.PRUNED_REASON: pruned} if pruned else {})})
        if pruned:
            raise optuna.TrialPruned(pruned)
        return self._values(float(res.final_acc), cost)

    def _values(self, acc: float, cost: Cost) -> list[float]:
        return [acc] + [float(getattr(cost, o)) for o in self.config.objectives[1:]]

    def _train(self, trial, spec, cost: Cost):
        """Build, cross-check with fvcore, train with early stopping; (result, pruned reason)."""
        from explorer.model import seeded_model

        model = seeded_model(spec, self.config.trainer.seed)  # export/retrain redraws the same weights
        if self.config.check_fvcore:
            _check_fvcore(model, spec, cost)
        epochs = self.config.trainer.epochs
        size = float(getattr(cost, self.rule.size_by)) if self.rule else 0.0
        single = len(self.config.objectives) == 1 and self.config.early_stop is not None
        state: dict[str, Any] = {"pruned": None}

        def on_epoch_end(epoch_1: int, metrics: dict) -> bool:
            epoch, acc = epoch_1 - 1, float(metrics["val_acc"])  # the trainer counts from 1
            if single:
                trial.report(acc, epoch)
                if epoch < epochs - 1 and trial.should_prune():
                    state["pruned"] = f"val_acc {acc:.4f} after epoch {epoch + 1}: Optuna {type(self.study.pruner).__name__}"
            elif self.rule is not None:
                state["pruned"] = self.rule.check(size, epoch, acc, self.peers, last_epoch=epochs - 1)
            return state["pruned"] is not None

        kw = asdict(self.config.trainer)
        res = self.trainer(model, self.data, device=self.device, on_epoch_end=on_epoch_end, **kw)
        return res, state["pruned"]


_RESULT_ATTRS = (st.VAL_ACC, st.BEST_VAL_ACC, st.CURVE, st.VAL_LOSS, st.TRAIN_SECONDS,
                 st.IMAGES_PER_S, st.END)


def _result_attrs(res, pruned: str | None) -> dict[str, Any]:
    """The stored figures of an explorer.train.TrainResult."""
    return {st.VAL_ACC: float(res.final_acc), st.BEST_VAL_ACC: float(res.best_acc),
            st.CURVE: [float(a) for a in res.val_acc], st.VAL_LOSS: [float(v) for v in res.val_loss],
            st.TRAIN_SECONDS: float(res.train_seconds), st.IMAGES_PER_S: float(res.images_per_s),
            st.END: "pruned" if pruned else res.end}


def _check_fvcore(model, spec, cost: Cost) -> None:
    import torch

    from explorer.cost import fvcore_cost

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: fvcore's batch-of-one trace ran 3-5x faster on one thread
    try:
        macs, params, _ = fvcore_cost(model, spec.input_size)
    finally:
        torch.set_num_threads(threads)
    if (macs, params) != (cost.macs, cost.params):
        raise CostMismatch(f"spec {spec.to_json()}: analytic params {cost.params} / MACs {cost.macs} "
                           f"but fvcore counts {params} / {macs}; fix explorer/cost.py or explorer/model.py")


def _size_rule(config: StudyConfig) -> SizeAwareRule | None:
    es = config.early_stop
    if es is None or len(config.objectives) == 1:
        return None
    return SizeAwareRule(es.warmup_epochs, es.min_trials, es.quantile, es.size_factor, es.size_by)


def _real_trainer() -> Callable:
    from explorer.train import train

    return train


# --- the run loop ----------------------------------------------------------------------

def count_done(study) -> int:
    """Finished trials that count toward n_trials: trained or reused (COMPLETE/PRUNED, feasible)."""
    from optuna.trial import TrialState

    trials = study._storage.get_all_trials(study._study_id, deepcopy=False,
                                           states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sum(1 for t in trials if not t.user_attrs.get(st.INFEASIBLE))


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
    from explorer.commands import worker as claim
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
        if storage_url is None and claim.rdb_of(study) is None:
            return contextlib.nullcontext()  # a journal whose path we were not given
        return claim.study_lock(study, storage_url or "")

    with lock():  # fail + requeue atomically for the other workers (see claim.work)
        stale = fail_stale_trials(study)
    if stale:
        print(f"retrying trials of workers that died: {', '.join(f'#{n}' for n in stale)}", file=out)
    done = count_done(study)
    if n_trials is not None and done >= n_trials:
        print(f"{study.study_name}: {done} trials already done (n_trials={n_trials}); nothing to run",
              file=out)
        return summary
    bar = tqdm(total=n_trials, initial=done, unit="trial", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc=study.study_name)
    started, streak, stopping = time.perf_counter(), [0], [False]

    def after(study_, frozen) -> None:
        runner_out = outcome(runner, frozen)
        summary.ran += 1
        summary.states[frozen.state.name] = summary.states.get(frozen.state.name, 0) + 1
        counted = frozen.state.name in ("COMPLETE", "PRUNED") and not frozen.user_attrs.get(st.INFEASIBLE)
        summary.trained += int(counted and frozen.user_attrs.get(st.DUPLICATE_OF) is None)
        streak[0] = 0 if counted else streak[0] + 1
        tqdm.write(format_outcome(runner_out, runner.space), file=out)
        if counted:
            bar.update(1)
        if streak[0] >= MAX_INFEASIBLE_STREAK:
            summary.gave_up = (f"stopped after {streak[0]} trials in a row were infeasible or failed; "
                               "shrink the space or raise the budgets")
            tqdm.write(f"stopping: {summary.gave_up}", file=out)
            stopping[0] = True

    old_term = _term_as_interrupt()
    try:
        claim.work(study, runner, target=n_trials, lock=lock, timeout_s=timeout_s,
                   catch=(InvalidSpec,), on_trial=after, stop=lambda: stopping[0], out=out)
    except KeyboardInterrupt:
        summary.interrupted = True
        with st.defer_interrupts(), lock():  # fail + requeue atomically for the other workers
            finalise_own_running(study)
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
    for name in ("num_classes",):
        if hasattr(data, name):
            return int(getattr(data, name))
    classes = getattr(data, "classes", None)
    return len(classes) if classes is not None else 10


def outcome(runner: TrialRunner, t) -> Outcome:
    a = t.user_attrs
    note = a.get(st.PRUNED_REASON) and "pruned"
    if a.get(st.INFEASIBLE):
        note = f"infeasible: {a.get(st.OVER_BUDGET)}"
    elif a.get(st.DUPLICATE_OF) is not None:
        note = f"duplicate of #{a[st.DUPLICATE_OF]}"
    elif a.get(st.FAIL_REASON):
        note = a[st.FAIL_REASON]
    elif a.get(st.END) not in (None, "completed", "pruned"):
        note = a[st.END]
    knobs = {k: v for k, v in t.params.items()}
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
    return Outcome(t.number, t.state.name, knobs, a.get(st.PARAMS), a.get(st.MACS), a.get(st.VAL_ACC),
                   seconds, note or "")


def format_outcome(o: Outcome, space: Space | None = None) -> str:
    """One summary line: number, knobs, params, MACs, val acc, seconds, state (and why)."""
    knobs = " ".join(f"{k}={_short(v)}" for k, v in o.knobs.items())
    acc = f"{o.val_acc:.3f}" if o.val_acc is not None else "-"
    params = _fmt(o.params) if o.params is not None else "-"
    macs = _fmt(o.macs) if o.macs is not None else "-"
    line = (f"#{o.number:<4d} {o.state:<8s} val_acc {acc:>5s}  params {params:>6s}  MACs {macs:>6s}  "
            f"{o.seconds:6.1f}s  {knobs}")
    return line + (f"  [{o.note}]" if o.note else "")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def load_data_for(config: StudyConfig, data_path: str | None, device: str):
    """Load the study's dataset once per process (explorer.data.load_data)."""
    from explorer.data import load_data

    if data_path is None:
        raise UserError(f"no data for study {config.name!r}: pass --data PATH, set EXPLORER_DATA, "
                        f"set data.source in the study file, or place the archive at {default_archive()}")
    d = config.data
    return load_data(data_path, per_class=d.per_class, val_per_class=d.val_per_class,
                     resolution=d.resolution, seed=d.seed)


def run_study(config: StudyConfig, *, storage_url: str | None = None, n_trials: int | None = None,
              timeout_s: float | None = None, data_path: str | None = None, device: str | None = None,
              trainer: Callable | None = None, data: Any = None, progress: bool = True,
              out=None) -> RunSummary:
    """Check everything, create or resume the study, load the data, run trials."""
    out = out or sys.stdout
    url = storage_url or config.storage or st.default_storage_url(config.name)
    check_space(config)
    device = check_device(device)
    # Everything is checked, and the data loaded, before the study is created or changed.
    if data is None:
        path = resolve_data_path(data_path, config)
        if path is None:
            raise UserError(f"no data given: pass --data PATH, set EXPLORER_DATA, set data.source "
                            f"in the study file, or place the archive at {default_archive()}")
        if _looks_like_path(path) and not Path(path).exists():
            raise UserError(f"data not found at {path}; pass --data PATH or set EXPLORER_DATA")
        config = replace(config, data=replace(config.data, source=path))
        data = load_data_for(config, path, device)
    if _num_classes(data) != 10:
        check_space(config, num_classes=_num_classes(data))  # the classifier's size changed
    overrides = {k: v for k, v in (("n_trials", n_trials), ("timeout_s", timeout_s)) if v is not None}
    config = replace(config, storage=st.mask_url(url), **overrides)
    study = open_study(config, url)
    summary = run_trials(study, config, data=data, device=device, n_trials=n_trials, storage_url=url,
                         timeout_s=timeout_s, trainer=trainer, progress=progress, out=out)
    summary.storage_url = url
    return summary


def work(storage_url: str, study_name: str, *, data_path: str | None = None, device: str | None = None,
         n_trials: int | None = None, timeout_s: float | None = None, trainer: Callable | None = None,
         progress: bool = True, out=None) -> RunSummary:
    """A worker: join an existing study (config from storage), load its data, run trials."""
    study, config = join_study(storage_url, study_name)
    path = resolve_data_path(data_path, config)
    if path is None:
        raise UserError(f"no data for study {study_name!r} on this machine: pass --data PATH or set EXPLORER_DATA")
    device = check_device(device)
    data = load_data_for(config, path, device)
    summary = run_trials(study, config, data=data, device=device, n_trials=n_trials, timeout_s=timeout_s,
                         trainer=trainer, progress=progress, out=out, storage_url=storage_url)
    summary.storage_url = st.mask_url(storage_url)
    return summary

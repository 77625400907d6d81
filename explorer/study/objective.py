"""The objective: one trial end to end, sample -> validate -> cost -> build -> train -> record.

Per trial: the space suggests knob values (explorer.study.space is the only code calling
`trial.suggest_*`); the spec validates them (an invalid combination fails the trial with
its reason); the analytic cost decides the budget (over budget: recorded as infeasible,
with Optuna constraints set so samplers learn, never trained); an identical network
(same spec_id) already trained is reused (`duplicate_of`); otherwise the model is built,
its cost cross-checked with fvcore (a disagreement is a bug: the trial fails loudly and
the run stops), trained with early stopping, and every figure needed to rebuild the
result is stored. A trial the trainer's time_budget_s guard cuts is stored PRUNED with
end `time_budget` and its reason: fewer epochs than its recipe, so never on a front.
Ctrl-C fails the trial (reason `interrupted`) and enqueues it again. In a study with a
`schedule:` (explorer.study.schedule), explorer.study.rungs judges the trial at each rung epoch; one
stopped there is stored PRUNED with end `rung` and its rung, and a proposal of the same network
later is its duplicate (not trained again).
Where the study measures latency (explorer.latency.measure), a network within the analytic budgets
is built and timed before the duplicate check and the training; over a latency budget, it
is recorded as infeasible without training. Training runs inside explorer.latency.quiet.training,
so that a latency measurement anywhere on this machine pauses it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

from explorer import store
from explorer.core.errors import SpecError
from explorer.core.runtime import check_device, git_revision, package_versions
from explorer.core.util import defer_interrupts, si
from explorer.design.budgets import ANALYTIC_BUDGETS, over_budget
from explorer.design.cost import Cost, estimate_cost
from explorer.design.spec import spec_id as spec_id_of
from explorer.latency import quiet
from explorer.latency.measure import Latency, latency_of, setting_for
from explorer.store import attrs as A
from explorer.study.config import StudyConfig
from explorer.study.early_stop import Peer, SizeAwareRule
from explorer.study.rungs import RungGate
from explorer.study.sampling import proposal_seed
from explorer.study.space import Space

MAX_DUPLICATES = 20  # proposals in a row of networks already trained before the space counts as exhausted


class CostMismatch(RuntimeError):
    """The analytic cost and fvcore disagree: a bug in cost.py or model.py, never user error."""


class InvalidSpec(Exception):
    """The sampled knobs make no valid network; the trial fails with the reason."""


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
    latency_ms: float | None = None


class TrialRunner:
    """The objective: one call runs one trial end to end."""

    def __init__(self, study, config: StudyConfig, *, data: Any, device: str,
                 trainer: Callable | None, space: Space, build: Callable | None = None) -> None:
        self.study, self.config, self.data, self.device = study, config, data, device
        self.trainer = trainer or _real_trainer()
        self.make = build  # spec -> what `trainer` trains (a replay passes the spec itself); None: seeded_model
        self.space = space
        self.storage = store.study_storage(study)
        self.heartbeats = store.uses_own_heartbeat(self.storage)
        self.beat = store.Heartbeat(self.storage) if self.heartbeats else None
        self.rule = _size_rule(config)
        self.gate = RungGate(study, config) if config.schedule else None  # multi-fidelity rungs
        if config.latency and config.latency.device:
            check_device(config.latency.device)
        self.versions, self.git_rev = package_versions(), git_revision()
        self.worker = store.Worker.this()
        self._seen: set[int] = set()
        self.done_by_spec: dict[str, Any] = {}  # spec_id -> first COMPLETE trained trial
        self.peers: list[Peer] = []
        self.duplicates = 0  # proposals in a row (this process) of networks already trained

    def exhausted(self) -> bool:
        """No new network is coming: MAX_DUPLICATES proposals in a row were networks already
        trained, or a grid study with a latency budget has visited every point (which it cuts
        is known only once timed)."""
        if self.duplicates >= MAX_DUPLICATES:
            return True
        if self.config.sampler.name != "grid" or A.LATENCY_MS not in self.config.budget:
            return False
        return self.study.sampler.is_exhausted(self.study)

    def exhausted_reason(self) -> str:
        """Why `exhausted()` stopped the run ('' when it did not)."""
        if self.duplicates >= MAX_DUPLICATES:
            return (f"the space looks exhausted: the sampler proposed {self.duplicates} networks in a row "
                    "that were already trained (duplicates do not count toward n_trials); widen the space "
                    "or lower n_trials")
        return "every grid point was visited" if self.exhausted() else ""

    def refresh(self) -> None:
        """Index finished trials not seen before: duplicates by spec_id, peers for early stop."""
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number in self._seen:
                continue
            self._seen.add(t.number)
            a = t.user_attrs
            if a.get(A.INFEASIBLE) or a.get(A.DUPLICATE_OF) is not None or A.CURVE not in a or store.is_cut(t):
                continue  # a cut trial is neither a result to reuse nor a peer to compare with
            if t.state == TrialState.COMPLETE or a.get(A.END) == A.RUNG_END:  # a rung stop is reused too
                self.done_by_spec.setdefault(a[A.SPEC_ID], t)
            if a.get(A.END) == A.RUNG_END:
                continue  # not a peer of the size-aware rule (a schedule replaces it)
            if self.rule is not None:
                self.peers.append(Peer(float(a[self.rule.size_by]), tuple(a[A.CURVE])))

    def __call__(self, trial) -> list[float]:
        tid = store.trial_id(trial)
        store.set_trial_attrs(self.storage, tid, self.worker.claim_attrs(self.heartbeats), system=True)
        if self.beat:
            self.beat.trial_id = tid
        values = None
        try:
            values = self.space.suggest(trial)
            return self._evaluate(trial, values)
        except KeyboardInterrupt:
            store.stop_waiting(self.study)  # an unreachable database is not waited for after Ctrl-C
            with defer_interrupts():
                self._set(trial, {A.FAIL_REASON: "interrupted"})
                if values is not None:
                    store.retry_trial(self.study, self.storage.get_trial(tid), "interrupted")
            raise
        except InvalidSpec as exc:
            self._set(trial, {A.FAIL_REASON: f"invalid spec: {exc}"})
            raise
        except CostMismatch as exc:
            self._set(trial, {A.FAIL_REASON: f"cost mismatch: {exc}"})
            raise
        except store.StorageWriteError as exc:  # disk full: say why, if the storage takes this line
            with contextlib.suppress(store.StorageWriteError):
                self._set(trial, {A.FAIL_REASON: f"storage write failed: {exc}"})
            raise
        finally:
            if self.beat:
                self.beat.trial_id = None

    def _set(self, trial, attrs: dict[str, Any]) -> None:
        store.set_trial_attrs(self.storage, store.trial_id(trial), attrs)

    def _evaluate(self, trial, values: dict[str, Any]) -> list[float]:
        import optuna

        try:
            spec = self.space.spec(values)
        except SpecError as exc:
            raise InvalidSpec(str(exc)) from None
        cost, sid = estimate_cost(spec), spec_id_of(spec)
        record = {A.SPEC: spec.to_dict(), A.SPEC_ID: sid, A.PARAMS: cost.params,
                  A.MACS: cost.macs, A.ACTIVATIONS: cost.activations, A.SIZE_MB: cost.size_mb,
                  A.SIZE_MIB: cost.size_mib, A.SEED: self.config.trainer.seed,
                  A.DEVICE: self.device, A.VERSIONS: self.versions, A.GIT_REV: self.git_rev,
                  A.THREADS: self.config.trainer.threads,
                  A.SAMPLER_SEED: proposal_seed(self.config, trial.number)}
        for k, v in self.config.budget.items():
            if k in ANALYTIC_BUDGETS:
                trial.set_constraint(k, getattr(cost, k) / v - 1.0)
        reason = over_budget(cost, self.config.budget)
        if reason:
            self._set(trial, {**record, A.INFEASIBLE: True, A.OVER_BUDGET: reason})
            return self._values(0.0, cost)
        model, lat, reason = self._timed(trial, spec, sid, record)
        if reason:
            self._set(trial, {**record, A.INFEASIBLE: True, A.OVER_BUDGET: reason})
            return self._values(0.0, cost, lat)
        self.refresh()
        dup = self.done_by_spec.get(sid)
        if dup is not None:
            copied = {k: dup.user_attrs[k] for k in A.RESULT_ATTRS if k in dup.user_attrs}
            self._set(trial, {**record, **copied, A.INFEASIBLE: False, A.DUPLICATE_OF: dup.number})
            self.duplicates += 1  # recorded (the sampler learns from it) but not counted: propose again
            if dup.state != optuna.trial.TrialState.COMPLETE:  # stopped at a rung: so is its duplicate
                reason = f"duplicate of #{dup.number}, stopped at rung {dup.user_attrs.get(A.RUNG)}"
                self._set(trial, {A.PRUNED_REASON: reason})
                raise optuna.TrialPruned(reason)
            return self._values(float(dup.values[0]), cost, lat)  # its accuracy, this trial's latency
        self._set(trial, {**record, A.INFEASIBLE: False})
        self.duplicates = 0
        res, pruned, rung = self._train(trial, model, spec, cost)
        if res.end == A.CUT:  # the guard cut it: stored, never on a front, never a sampler's value
            pruned, rung = self._cut_reason(res), {}
        self._set(trial, {**_result_attrs(res, pruned), **({A.PRUNED_REASON: pruned} if pruned else {}), **rung})
        if pruned:
            raise optuna.TrialPruned(pruned)
        return self._values(float(res.final_acc), cost, lat)

    def _cut_reason(self, res) -> str:
        """Why a trial the time_budget_s guard cut is not comparable, and how to retry it."""
        t = self.config.trainer
        done = f"{res.epochs:.2g}" if res.epochs else str(len(res.val_acc))
        budget = f"={t.time_budget_s:g} s" if t.time_budget_s is not None else ""
        return (f"time budget: trainer.time_budget_s{budget} reached after {done} of {t.epochs} "
                "epochs; retry with `explorer run STUDY --retry-cut` (raise time_budget_s on a slow machine)")

    def _values(self, acc: float, cost: Cost, lat: Latency | None = None) -> list[float]:
        """The objective values; a latency not measured (over an analytic budget) is +inf."""
        def value(o: str) -> float:
            if o == A.LATENCY_MS:
                return lat.ms if lat is not None else float("inf")
            return float(getattr(cost, o))

        return [acc] + [value(o) for o in self.config.objectives[1:]]

    def _build(self, spec):
        """The trial's network with its seeded initial weights (export/retrain redraws the same)."""
        from explorer.design.model import seeded_model

        if self.make is not None:
            return self.make(spec)
        return seeded_model(spec, self.config.trainer.seed)

    def _timed(self, trial, spec, sid: str, record: dict[str, Any]) -> tuple[Any, Latency | None, str | None]:
        """Where the study measures latency: build and time the network (cached, or timed in quiet),
        add the figures to `record`, set the constraint; (model, latency, over-budget reason)."""
        cfg = self.config.latency
        if cfg is None:
            return None, None, None
        model = self._build(spec)
        lat = latency_of(model, sid, setting_for(cfg, self.device, spec.input_size), cfg)
        record.update(_latency_attrs(lat))
        limit = self.config.budget.get(A.LATENCY_MS)
        if limit is not None:
            trial.set_constraint(A.LATENCY_MS, lat.ms / limit - 1.0)
        return model, lat, over_budget({A.LATENCY_MS: lat.ms}, self.config.budget)

    def _train(self, trial, model, spec, cost: Cost):
        """Build (unless built), cross-check with fvcore, train with early stopping or rungs;
        (result, pruned reason, the rung attrs of a trial stopped at a rung)."""
        model = model if model is not None else self._build(spec)
        if self.config.check_fvcore:
            check_fvcore(model, spec, cost)
        epochs = self.config.trainer.epochs
        size = float(getattr(cost, self.rule.size_by)) if self.rule else 0.0
        single = len(self.config.objectives) == 1 and self.config.early_stop is not None
        state: dict[str, Any] = {"pruned": None, "rung": {}}

        def on_epoch_end(epoch_1: int, metrics: dict) -> bool:
            epoch, acc = epoch_1 - 1, float(metrics["val_acc"])  # the trainer counts from 1
            if single:
                trial.report(acc, epoch)
                if epoch < epochs - 1 and trial.should_prune():
                    state["pruned"] = (f"val_acc {acc:.4f} after epoch {epoch + 1}: Optuna "
                                       f"{type(self.study.pruner).__name__}")
            elif self.rule is not None:
                state["pruned"] = self.rule.check(size, epoch, acc, self.peers, last_epoch=epochs - 1)
            elif self.gate is not None and (stop := self.gate.judge(trial, epoch_1, acc)) is not None:
                state["pruned"], state["rung"] = stop.reason, {A.END: A.RUNG_END, A.RUNG: stop.rung}
            return state["pruned"] is not None

        kw = asdict(self.config.trainer)
        with quiet.training() as pause:  # a latency measurement on this machine pauses it
            res = self.trainer(model, self.data, device=self.device, on_epoch_end=on_epoch_end,
                               pause=pause, **kw)
        return res, state["pruned"], state["rung"]


def _latency_attrs(lat: Latency) -> dict[str, Any]:
    """The stored figures of a latency: median, spread, its setting's label, and every detail."""
    return {A.LATENCY_MS: lat.ms, A.LATENCY_SPREAD: lat.spread, A.LATENCY_SETTING: lat.setting.label(),
            A.LATENCY: lat.to_dict()}


def _result_attrs(res, pruned: str | None) -> dict[str, Any]:
    """The stored figures of an explorer.training.train.TrainResult (`end` stays time_budget for a cut trial)."""
    return {A.VAL_ACC: float(res.final_acc), A.BEST_VAL_ACC: float(res.best_acc),
            A.CURVE: [float(a) for a in res.val_acc], A.VAL_LOSS: [float(v) for v in res.val_loss],
            A.TRAIN_SECONDS: float(res.train_seconds), A.IMAGES_PER_S: float(res.images_per_s),
            A.END: "pruned" if pruned and res.end != A.CUT else res.end,
            **({A.TRAIN_LOSS: [float(v) for v in res.train_loss], A.TRAIN_LOSS_SUM: float(res.train_loss_sum)}
               if getattr(res, "train_loss", None) else {})}  # a test's fake trainer may not measure it


def check_fvcore(model, spec, cost: Cost) -> None:
    """CostMismatch unless fvcore counts the built model's params and MACs as the analytic cost does."""
    import torch

    from explorer.design.cost import fvcore_cost

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: fvcore's batch-of-one trace ran 3-5x faster on one thread
    try:
        macs, params, _ = fvcore_cost(model, spec.input_size)
    finally:
        torch.set_num_threads(threads)
    if (macs, params) != (cost.macs, cost.params):
        raise CostMismatch(f"spec {spec.to_json()}: analytic params {cost.params} / MACs {cost.macs} "
                           f"but fvcore counts {params} / {macs}; "
                           "fix explorer/design/cost.py or explorer/design/model.py")


def _size_rule(config: StudyConfig) -> SizeAwareRule | None:
    es = config.early_stop
    if es is None or len(config.objectives) == 1:
        return None
    return SizeAwareRule(es.warmup_epochs, es.min_trials, es.quantile, es.size_factor, es.size_by)


def _real_trainer() -> Callable:
    from explorer.training.train import train

    return train


# --- the line printed per finished trial ------------------------------------------------------

def outcome(t) -> Outcome:
    """The summary of a finished FrozenTrial."""
    a = t.user_attrs
    note = a.get(A.PRUNED_REASON) and "pruned"
    if a.get(A.END) == A.CUT:
        note = f"{A.CUT_RETRY}: not on the front"
    elif a.get(A.INFEASIBLE):
        note = f"infeasible: {a.get(A.OVER_BUDGET)}"
    elif a.get(A.DUPLICATE_OF) is not None:
        note = f"duplicate of #{a[A.DUPLICATE_OF]}"
    elif a.get(A.END) == A.RUNG_END:
        note = f"stopped at rung {a.get(A.RUNG)}: not on the front"
    elif a.get(A.FAIL_REASON):
        note = a[A.FAIL_REASON]
    elif a.get(A.END) not in (None, "completed", "pruned"):
        note = a[A.END]
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
    return Outcome(t.number, t.state.name, dict(t.params), a.get(A.PARAMS), a.get(A.MACS), a.get(A.VAL_ACC),
                   seconds, note or "", a.get(A.LATENCY_MS))


def format_outcome(o: Outcome) -> str:
    """One summary line: number, knobs, params, MACs, val acc, seconds, state (and why)."""
    knobs = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.knobs.items())
    acc = f"{o.val_acc:.3f}" if o.val_acc is not None else "-"
    params, macs = si(o.params), si(o.macs)
    latency = f"  latency {o.latency_ms:.3g} ms" if o.latency_ms is not None else ""
    line = (f"#{o.number:<4d} {o.state:<8s} val_acc {acc:>5s}  params {params:>6s}  MACs {macs:>6s}{latency}  "
            f"{o.seconds:6.1f}s  {knobs}")
    return line + (f"  [{o.note}]" if o.note else "")

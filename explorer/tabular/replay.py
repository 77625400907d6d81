"""Replaying a search on the table: `explorer run`'s own loop, with training looked up.

A replay is a real study (in memory): the study's sampler made by explorer.study.sampling
(the same space translation and per-trial seeds), trials claimed and counted by
explorer.study.loop.run_trials (duplicates recorded and not counted, over-budget points
skipped), each trial run by explorer.study.objective.TrialRunner. Only the training is
replaced: the "model" is the spec, and the trainer returns the table's stored bench result for
its network, epoch by epoch, so early stopping and rung schedules see the curve a real run
would have shown. A trial costs about a millisecond; a replay's result is a pure function of
the table, the study config, the sampler and its seed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from explorer.design.spec import spec_id
from explorer.results.pareto import hypervolume, pareto_front
from explorer.study.config import SamplerConfig, StudyConfig
from explorer.tabular.tablefile import Table, curve

REF_ACC = 0.1  # chance on CIFAR-10's 10 classes: the reference point's accuracy


@dataclass(frozen=True)
class Found:
    """One replay: the networks trained, in the order the search trained them."""

    sampler: str
    seed: int
    spec_ids: list[str]  # one per counted (trained) trial, in trial order
    epochs: list[float]  # epochs each trained network was trained (a stopped one: fewer)
    trials: int  # every trial, duplicates and over-budget points included


class _TableData:
    """What the trainer is handed instead of images: the class count the runner asks for."""

    num_classes = 10


class TableTrainer:
    """`train(model, data, **settings)` for specs: the table's bench curve of that network."""

    def __init__(self, table: Table) -> None:
        bench = table.bench
        self.epochs = int(bench["epochs"].max())
        self.index = {sid: i for i, sid in enumerate(bench.index)}
        self.acc = curve(bench, self.epochs)
        self.loss = curve(bench, self.epochs, "train_loss")
        self.vloss = curve(bench, self.epochs, "val_loss")
        self.seconds = bench["train_seconds"].to_numpy(dtype=float)

    def __call__(self, spec, data, *, epochs: int, on_epoch_end=None, seed: int = 0, **_: Any):
        from explorer.training.train import TrainResult

        sid = spec_id(spec)
        if sid not in self.index:
            raise KeyError(f"network {sid} is not in the table: the study's space is not the table's")
        if epochs > self.epochs:
            raise ValueError(f"the study trains {epochs} epochs; the table's bench recipe has {self.epochs}")
        i = self.index[sid]
        res = TrainResult(seed=seed, device="table")
        for e in range(epochs):
            res.val_acc.append(float(self.acc[i, e]))
            res.val_loss.append(float(self.vloss[i, e]))
            res.train_loss.append(float(self.loss[i, e]))
            res.epochs = e + 1
            metrics = {"epoch": e + 1, "val_acc": res.val_acc[-1], "val_loss": res.val_loss[-1],
                       "train_seconds": self.seconds[i] * (e + 1) / self.epochs, "steps": 0}
            if on_epoch_end and on_epoch_end(e + 1, metrics) and e + 1 < epochs:
                res.end = "stopped"
                break
        res.final_acc, res.best_acc = res.val_acc[-1], max(res.val_acc)
        res.train_loss_sum = math.fsum(res.train_loss)
        res.train_seconds = self.seconds[i] * res.epochs / self.epochs
        return res


def replay_config(config: StudyConfig, sampler: str, seed: int, n_trials: int,
                  population_size: int | None = None) -> StudyConfig:
    """The study config with another sampler, seed and trial count; no fvcore check (nothing is built)."""
    s = SamplerConfig(name=sampler, seed=seed, population_size=population_size if sampler == "nsga2" else None)
    return replace(config, name=f"replay-{sampler}-{seed}", sampler=s, n_trials=n_trials, timeout_s=None,
                   check_fvcore=False, latency=None, jobs=None)


def replay(config: StudyConfig, trainer: TableTrainer, *, sampler: str, seed: int, n_trials: int,
           population_size: int | None = None) -> Found:
    """Run `n_trials` trained trials of the study with this sampler and seed, training looked up."""
    import optuna

    from explorer.store import attrs as A
    from explorer.study.loop import make_pruner, run_trials
    from explorer.study.sampling import make_sampler
    from explorer.study.space import Space

    cfg = replay_config(config, sampler, seed, n_trials, population_size)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=cfg.name, storage=optuna.storages.InMemoryStorage(),
                                sampler=make_sampler(cfg, Space.from_config(cfg)), pruner=make_pruner(cfg),
                                directions=cfg.directions)
    study.set_user_attr(A.CONFIG, cfg.to_dict())
    run_trials(study, cfg, data=_TableData(), device="cpu", trainer=trainer, progress=False, out=io.StringIO(),
               build=lambda spec: spec)
    ids, epochs = [], []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if t.state.name in ("COMPLETE", "PRUNED") and not a.get(A.INFEASIBLE) and a.get(A.DUPLICATE_OF) is None:
            ids.append(a[A.SPEC_ID])
            epochs.append(float(len(a.get(A.CURVE) or [])))
    return Found(sampler, seed, ids, epochs, len(study.trials))


# --- what a replay found --------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """The table's exact front and hypervolume (val_acc vs log10 params), and the reference point."""

    ref_params: float
    ref_acc: float
    hv: float
    front: frozenset[str]


def reference(table: Table, budget_params: float | None) -> Reference:
    """The exact front of the bench rows; the reference point is (budget or largest params, chance)."""
    bench = table.bench
    params, acc = bench["params"].to_numpy(dtype=float), bench["val_acc"].to_numpy(dtype=float)
    ref_params = float(budget_params or params.max() * 1.01)
    mask = pareto_front(params, acc)
    hv = hypervolume(params, acc, ref_params, REF_ACC, log_size=True)
    return Reference(ref_params, REF_ACC, hv, frozenset(bench.index[mask]))


def hv_fraction(table: Table, ref: Reference, spec_ids: list[str]) -> float:
    """Hypervolume of the networks found (their full bench accuracy) over the table's exact one."""
    if not spec_ids:
        return 0.0
    rows = table.bench.loc[list(dict.fromkeys(spec_ids))]
    hv = hypervolume(rows["params"].to_numpy(dtype=float), rows["val_acc"].to_numpy(dtype=float),
                     ref.ref_params, ref.ref_acc, log_size=True)
    return hv / ref.hv if ref.hv > 0 else math.nan


def front_recall(ref: Reference, spec_ids: list[str]) -> float:
    """Share of the exact front's networks among those found."""
    return len(ref.front & set(spec_ids)) / len(ref.front) if ref.front else math.nan


def curve_of(table: Table, ref: Reference, found: Found, checkpoints: list[int]) -> list[float]:
    """HV fraction after the first k trained networks, for each k in `checkpoints`."""
    return [hv_fraction(table, ref, found.spec_ids[:k]) for k in checkpoints]


def summary(values: list[float]) -> dict[str, float]:
    """Median and interquartile range."""
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": round(float(med), 4), "q1": round(float(q1), 4), "q3": round(float(q3), 4)}

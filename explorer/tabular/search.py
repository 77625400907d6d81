"""Search efficiency on the table: replays of each sampler over seeds, HV fraction per trial count."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from explorer.study.config import StudyConfig
from explorer.tabular.replay import Reference, TableTrainer, front_recall, hv_fraction, reference, replay
from explorer.tabular.tablefile import Table


@dataclass(frozen=True)
class Contender:
    """A sampler setting to replay: name as in study files, and NSGA-II's population size."""

    sampler: str
    population_size: int | None = None

    @property
    def label(self) -> str:
        """'nsga2 (population 8)', 'tpe', ..."""
        return f"{self.sampler} (population {self.population_size})" if self.population_size else self.sampler

    @classmethod
    def parse(cls, text: str) -> "Contender":
        """'nsga2:16' -> NSGA-II with population 16; 'tpe' -> TPE."""
        name, _, pop = text.partition(":")
        return cls(name, int(pop) if pop else None)


def replay_study(config: StudyConfig, table: Table) -> StudyConfig:
    """The user's study (its budgets, objectives) with the table's bench epochs as its recipe length."""
    epochs = int(table.bench["epochs"].max())
    return replace(config, trainer=replace(config.trainer, epochs=epochs), early_stop=None)


def fractions(table: Table, ref: Reference, spec_ids: Sequence[str], upto: int) -> list[float]:
    """HV fraction after each of the first `upto` trained networks (the last value repeats past the end)."""
    out: list[float] = []
    for k in range(1, upto + 1):
        out.append(hv_fraction(table, ref, list(spec_ids[:k])) if k <= len(spec_ids) else out[-1])
    return out


def run_one(args: tuple) -> dict[str, Any]:
    """One replay (picklable for a process pool): the HV fraction after every trained trial."""
    config, table, contender, seed, n_trials, budget = args
    trainer = TableTrainer(table)
    ref = reference(table, budget)
    found = replay(config, trainer, sampler=contender.sampler, seed=seed, n_trials=n_trials,
                   population_size=contender.population_size)
    return {"label": contender.label, "seed": seed, "fractions": fractions(table, ref, found.spec_ids, n_trials),
            "recall": front_recall(ref, found.spec_ids), "trials": found.trials, "trained": len(found.spec_ids)}


def first_reaching(fracs: Sequence[float], target: float) -> float:
    """Trials (1-based) until the HV fraction first reaches `target`; inf if never."""
    hit = np.flatnonzero(np.asarray(fracs) >= target)
    return float(hit[0] + 1) if hit.size else math.inf


def summarise(runs: list[dict[str, Any]], checkpoints: Sequence[int], target: float = 0.95) -> dict[str, Any]:
    """Per contender: median and IQR of the HV fraction at each checkpoint, trials to `target`, recall."""
    out: dict[str, Any] = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        mine = [r for r in runs if r["label"] == label]
        n = len(mine[0]["fractions"])
        at = {}
        for k in checkpoints:
            if k <= n:
                v = np.array([r["fractions"][k - 1] for r in mine])
                q1, med, q3 = np.percentile(v, [25, 50, 75])
                at[str(k)] = {"median": round(float(med), 4), "q1": round(float(q1), 4), "q3": round(float(q3), 4)}
        reach = [first_reaching(r["fractions"], target) for r in mine]
        out[label] = {"seeds": len(mine), "hv_fraction": at, "max_trials": n,
                      f"trials_to_{int(target * 100)}": _median_inf(reach),
                      f"reached_{int(target * 100)}": sum(math.isfinite(x) for x in reach),
                      "front_recall_at_end": round(float(np.median([r["recall"] for r in mine])), 4)}
    return out


def _median_inf(values: list[float]) -> float | str:
    """The median, where runs that never reached count as infinitely many trials ('>N' if the median is one)."""
    med = float(np.median(values))
    return med if math.isfinite(med) else "never (median)"

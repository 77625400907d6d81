"""A multi-fidelity schedule against the full budget, replayed on the table (pure functions of it).

For one sampler and seed, `explorer run`'s own loop is replayed twice on the table
(explorer.tabular.replay): the study as it is (every proposal trains its whole recipe) and
the same study with a `schedule:` (explorer.study.schedule), for the same number of
proposals. Compared: the hypervolume of the networks each trained to the whole recipe, at
their full-recipe accuracy (val_acc vs log10 params, the table's reference point), the
epochs each trained, and the front recall of the schedule: of the networks on the front
of everything it proposed (at their full-recipe accuracy, which the table knows for the
stopped ones too), the share it trained to the end.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from explorer.results.pareto import pareto_front
from explorer.study.config import StudyConfig
from explorer.study.schedule import Schedule
from explorer.tabular.replay import Found, TableTrainer, hv_fraction, reference, replay
from explorer.tabular.tablefile import Table


def scheduled(config: StudyConfig, schedule: Schedule) -> StudyConfig:
    """The study with `schedule` (and no size-aware early stopping: a schedule replaces it)."""
    return replace(config, schedule=schedule, early_stop=None)


def completed(found: Found, recipe: int) -> list[str]:
    """The networks a replay trained to the recipe's last epoch."""
    return [s for s, e in zip(found.spec_ids, found.epochs) if e >= recipe]


def proposals_recall(table: Table, found: Found, recipe: int) -> float:
    """Share of the front of every network the search trained (full-recipe accuracy) that it trained to the end."""
    rows = table.bench.loc[list(dict.fromkeys(found.spec_ids))]
    mask = pareto_front(rows["params"].to_numpy(dtype=float), rows["val_acc"].to_numpy(dtype=float))
    front = set(rows.index[mask])
    return len(front & set(completed(found, recipe))) / len(front) if front else float("nan")


def compare_one(args: tuple) -> dict[str, Any]:
    """One seed (picklable for a process pool): the full-budget replay and the scheduled one, side by side."""
    config, table, sampler, population, seed, n_trials, budget, schedule = args
    trainer, ref = TableTrainer(table), reference(table, budget)
    recipe = int(config.trainer.epochs)
    kw = dict(sampler=sampler, seed=seed, n_trials=n_trials, population_size=population)
    full = replay(config, trainer, **kw)
    mf = replay(scheduled(config, schedule), trainer, **kw)
    hv_full, hv_mf = hv_fraction(table, ref, full.spec_ids), hv_fraction(table, ref, completed(mf, recipe))
    return {"seed": seed, "n_trials": n_trials, "hv_full": hv_full, "hv_mf": hv_mf,
            "hv_ratio": hv_mf / hv_full if hv_full > 0 else float("nan"),
            "epochs_full": float(sum(full.epochs)), "epochs_mf": float(sum(mf.epochs)),
            "epochs_ratio": float(sum(mf.epochs)) / float(sum(full.epochs)),
            "completed_mf": len(completed(mf, recipe)), "recall": proposals_recall(table, mf, recipe),
            "stopped": _stopped(mf, recipe)}


def _stopped(found: Found, recipe: int) -> dict[str, int]:
    """How many networks stopped after each epoch count ('1': after 1 epoch, ...)."""
    out: dict[str, int] = {}
    for e in found.epochs:
        if e < recipe:
            out[str(int(e))] = out.get(str(int(e)), 0) + 1
    return out


def _iqr(values: list[float]) -> dict[str, float]:
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"median": round(float(med), 4), "q1": round(float(q1), 4), "q3": round(float(q3), 4)}


def summarise(runs: list[dict[str, Any]], *, hv_goal: float = 0.99, epochs_goal: float = 0.4,
              recall_goal: float = 0.9) -> dict[str, Any]:
    """Median and IQR over seeds of the HV ratio, epochs ratio and recall; the goals met by the medians."""
    hv = _iqr([r["hv_ratio"] for r in runs])
    ep = _iqr([r["epochs_ratio"] for r in runs])
    rc = _iqr([r["recall"] for r in runs])
    return {"seeds": len(runs), "hv_ratio": hv, "epochs_ratio": ep, "recall": rc,
            "hv_full": _iqr([r["hv_full"] for r in runs]), "hv_mf": _iqr([r["hv_mf"] for r in runs]),
            "completed_mf": _iqr([r["completed_mf"] for r in runs]),
            "seeds_meeting_hv": sum(r["hv_ratio"] >= hv_goal for r in runs),
            "goals": {"hv_ratio": hv["median"] >= hv_goal, "epochs_ratio": ep["median"] <= epochs_goal,
                      "recall": rc["median"] >= recall_goal}}


# --- two real runs of a study: full budget and scheduled -------------------------------------------

def _trained(rec) -> list:
    """Trials that trained themselves (COMPLETE or stopped, within budget, not a duplicate)."""
    from explorer.store import attrs as A

    return [t for t in rec.trials if t.state in ("COMPLETE", "PRUNED") and not t.attrs.get(A.INFEASIBLE)
            and t.attrs.get(A.DUPLICATE_OF) is None and t.attrs.get(A.CURVE)]


def run_figures(rec, ref_params: float, ref_acc: float = 0.1) -> dict[str, Any]:
    """One stored run: hypervolume of its whole-recipe trials (val_acc vs log10 params), epochs and
    training seconds of every trial it trained, how many ran the whole recipe."""
    from explorer.results.pareto import hypervolume
    from explorer.store import attrs as A

    whole = [t for t in rec.trials if t.trained]
    trained = _trained(rec)
    hv = hypervolume([t.num(A.PARAMS) for t in whole], [t.num(A.VAL_ACC) for t in whole], ref_params, ref_acc,
                     log_size=True)
    return {"trained": len(trained), "whole_recipe": len(whole), "hv": hv,
            "epochs": float(sum(len(t.attrs[A.CURVE]) for t in trained)),
            "train_seconds": float(sum(t.num(A.TRAIN_SECONDS) for t in trained))}


def shared_recall(full, mf) -> tuple[float, int]:
    """(recall, networks both trained): of the front of the networks both runs trained, at the full run's
    accuracy, the share the scheduled run trained to the end."""
    from explorer.store import attrs as A

    acc = {t.attrs[A.SPEC_ID]: (t.num(A.PARAMS), t.num(A.VAL_ACC)) for t in full.trials if t.trained}
    done = {t.attrs[A.SPEC_ID] for t in mf.trials if t.trained}
    shared = sorted({t.attrs[A.SPEC_ID] for t in _trained(mf)} & set(acc))
    if not shared:
        return float("nan"), 0
    mask = pareto_front(np.array([acc[s][0] for s in shared]), np.array([acc[s][1] for s in shared]))
    front = {s for s, m in zip(shared, mask) if m}
    return len(front & done) / len(front), len(shared)


def compare_runs(full, mf, ref_params: float) -> dict[str, Any]:
    """The replay's figures for two real runs of the same study and proposals (StudyRecords)."""
    f, m = run_figures(full, ref_params), run_figures(mf, ref_params)
    recall, shared = shared_recall(full, mf)
    return {"full": f, "scheduled": m, "hv_ratio": m["hv"] / f["hv"] if f["hv"] > 0 else float("nan"),
            "epochs_ratio": m["epochs"] / f["epochs"] if f["epochs"] else float("nan"),
            "train_seconds_ratio": m["train_seconds"] / f["train_seconds"] if f["train_seconds"] else float("nan"),
            "recall": recall, "shared_networks": shared}

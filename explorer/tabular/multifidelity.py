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

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from explorer.results.pareto import hypervolume, pareto_front
from explorer.study.config import StudyConfig
from explorer.study.schedule import Schedule, rung_order
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


# --- what any rule could reach: selecting at the first rung with hindsight ------------------------

def selection_bound(table: Table, *, rung: int = 1, epochs_ratio: float = 0.4, sizes: tuple[int, ...] = (64, 128),
                    draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """How much of the front a search can keep if every proposal trains to `rung` epochs and the best
    share goes on to the recipe's end, the share set so the epochs total `epochs_ratio` of the full
    search's (rung 1 of 4 epochs, 0.4x: 20 % go on).

    An optimistic reference for a rule (not a proof about every rule): it is synchronous (it sees
    all n proposals before choosing) and draws n networks uniformly from the table. Per ranking of
    the n proposals at the rung, by Pareto rank of (score, params) then crowding
    (explorer.study.schedule.rung_order), the top share is kept; reported are the medians over
    `draws` draws of the front recall (of the n proposals' front at full-recipe accuracy, the share
    kept) and the HV ratio (kept over all n). Rankings: val_acc and -train_loss at the rung;
    `hindsight`, a least-squares fit of the final val_acc on (val_acc and -train_loss at the rung,
    log10 params) over every row of the table, final accuracies included (no search knows them: an
    optimistic surrogate); `oracle`, the final val_acc itself.
    """
    bench = table.bench
    recipe = int(max(int(c.rsplit("_", 1)[1]) for c in bench.columns if c.startswith("val_acc_")
                     and bench[c].notna().all()))
    if not 1 <= rung < recipe:
        raise ValueError(f"rung {rung} must be below the table's {recipe} epochs")
    share = (epochs_ratio - rung / recipe) / (1 - rung / recipe)
    if share <= 0:
        raise ValueError(f"epochs ratio {epochs_ratio} is spent by the rung alone ({rung}/{recipe} epochs)")
    params = bench["params"].to_numpy(dtype=float)
    final = bench[f"val_acc_{recipe}"].to_numpy(dtype=float)
    acc_r = bench[f"val_acc_{rung}"].to_numpy(dtype=float)
    loss_r = bench[f"train_loss_{rung}"].to_numpy(dtype=float)
    x = np.column_stack([np.ones(len(bench)), acc_r, -loss_r, np.log10(params)])
    coef, *_ = np.linalg.lstsq(x, final, rcond=None)
    scores = {"val_acc": acc_r, "-train_loss": -loss_r, "hindsight": x @ coef, "oracle": final}
    ref_params = float(params.max() * 1.01)
    hv = lambda idx: hypervolume(params[idx], final[idx], ref_params, 0.1, log_size=True)  # noqa: E731
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"rung": rung, "recipe_epochs": recipe, "epochs_ratio": epochs_ratio,
                           "share_kept": round(share, 4), "draws": draws,
                           "hindsight_spearman": round(float(pd.Series(x @ coef).corr(pd.Series(final),
                                                                                       method="spearman")), 4)}
    for n in sizes:
        kept = int(math.floor(share * n + 1e-9))
        figs: dict[str, dict[str, list[float]]] = {k: {"recall": [], "hv_ratio": []} for k in scores}
        fronts = []
        for _ in range(draws):
            pick = rng.choice(len(bench), n, replace=False)
            front = set(pick[pareto_front(params[pick], final[pick])].tolist())
            fronts.append(len(front) / n)
            for name, score in scores.items():
                order, _ = rung_order(score[pick], params[pick].reshape(-1, 1), list(range(n)))
                chosen = pick[order[:kept]]
                figs[name]["recall"].append(len(front & set(chosen.tolist())) / len(front))
                figs[name]["hv_ratio"].append(hv(chosen) / hv(pick))
        out[str(n)] = {"kept": kept, "front_share": round(float(np.median(fronts)), 4),
                       **{name: {k: round(float(np.median(v)), 4) for k, v in f.items()} for name, f in figs.items()}}
    return out

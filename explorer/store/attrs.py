"""Every name explorer stores in an Optuna storage: trial and study attributes, table columns.

Trial user attrs describe a trial (its spec, costs, training result, why it ended);
study user attrs hold the resolved study config, its objectives and the seed-noise
calibrations (`calibration/<trial number>`: Optuna refuses user attrs on finished trials,
study attrs stay writable); trial system attrs name the worker running a trial and its
heartbeat. docs/ARCHITECTURE.md lists them with their meaning.
"""

from __future__ import annotations

from explorer.design.budgets import COSTS

# Trial user attrs.
SPEC, SPEC_ID = "spec", "spec_id"
PARAMS, MACS, ACTIVATIONS, SIZE_MB, SIZE_MIB = COSTS
VAL_ACC, BEST_VAL_ACC, CURVE, VAL_LOSS = "val_acc", "best_val_acc", "curve", "val_loss"
TRAIN_SECONDS, IMAGES_PER_S, END = "train_seconds", "images_per_s", "end"
# The mean training loss per epoch and its sum (Ru et al. 2021, "Revisiting the train loss":
# a training-speed estimate that ranks networks; lower is better). explorer.results.fidelity reports it.
TRAIN_LOSS, TRAIN_LOSS_SUM = "train_loss", "train_loss_sum"
SEED, DEVICE, VERSIONS, GIT_REV = "seed", "device", "versions", "git_rev"
# torch intra-op threads the trial trained with; the seed its sampler proposed it with
THREADS, SAMPLER_SEED = "threads", "sampler_seed"
INFEASIBLE, OVER_BUDGET, DUPLICATE_OF, PRUNED_REASON = "infeasible", "over_budget", "duplicate_of", "pruned_reason"
FAIL_REASON, RETRY_OF, RETRY_REASON = "fail_reason", "retry_of", "retry_reason"
# The `end` of a trial the trainer's time_budget_s guard cut: not comparable (fewer epochs
# than its recipe), so it is stored PRUNED with its reason in pruned_reason and never on a
# front; `explorer run --retry-cut` enqueues its params again (retry_reason CUT_RETRY,
# retry_of its own number: the retry takes its place in the trial count).
CUT, CUT_RETRY = "time_budget", "cut by the time budget"
# Multi-fidelity schedules (explorer.study.schedule): `rungs` lists what a trial measured at each
# rung it reached and what was decided there (explorer.store.rungs); a trial stopped at a rung is
# stored PRUNED with end RUNG_END and `rung` = the rung's 1-based index: never on a front.
RUNGS, RUNG, RUNG_END = "rungs", "rung", "rung"
# Where the study measures latency (explorer.latency.measure): the median ms per forward pass, the
# relative half-width of its 95% CI, the setting's label (latencies compare only under equal
# labels) and the whole measurement (setting fields, runs, quiet, cached) as a mapping.
LATENCY_MS, LATENCY_SPREAD, LATENCY_SETTING, LATENCY = MEASURED_ATTRS = (
    "latency_ms", "latency_spread", "latency_setting", "latency")
# A trial's seed-noise estimate: its own attrs, else merged from the study's calibration.
ACC_MEAN, ACC_STD, ACC_SEEDS = NOISE_ATTRS = ("acc_mean", "acc_std", "acc_seeds")

# Study user attrs.
CONFIG, OBJECTIVES = "config", "objectives"
CALIBRATION_PREFIX = "calibration/"  # + trial number: {acc_mean, acc_std, acc_seeds, noise}
FIDELITY_PREFIX = "fidelity/"  # + recipe key + "/" + trial number: a long-recipe result (explorer.results.fidelity)

# Trial system attrs: who runs a trial, so a dead worker's trial can be found (journal files
# have no Optuna heartbeat, so explorer writes its own).
WORKER_HOST, WORKER_PID, WORKER_START, HEARTBEAT = (
    "explorer:host", "explorer:pid", "explorer:pid_start", "explorer:heartbeat")
HEARTBEAT_INTERVAL_S, GRACE_PERIOD_S = 30, 120  # a RUNNING trial silent for GRACE_PERIOD_S is stale

COST_ATTRS = COSTS
# What a training run stores (a duplicate copies these from the trial it repeats).
RESULT_ATTRS = (VAL_ACC, BEST_VAL_ACC, CURVE, VAL_LOSS, TRAIN_LOSS, TRAIN_LOSS_SUM, TRAIN_SECONDS, IMAGES_PER_S,
                END, RUNGS, RUNG)
DEFAULT_OBJECTIVES = (VAL_ACC, PARAMS)


def calibration_key(number: int) -> str:
    """The study user attr holding trial `number`'s calibration."""
    return f"{CALIBRATION_PREFIX}{number}"


def fidelity_key(recipe: str, number: int) -> str:
    """The study user attr holding trial `number`'s result under the long recipe `recipe`."""
    return f"{FIDELITY_PREFIX}{recipe}/{number}"

"""Build synthetic stored studies fast, for dashboard tests and benchmarks.

Trials are written with Optuna's public API (`create_trial` + `Study.add_trials`) into a
JournalStorage whose backend buffers the log in memory and writes the journal file once:
10,000 trials take seconds instead of 10,000 fsyncs. The file is an ordinary Optuna
journal (one JSON log per line, as JournalFileBackend writes it).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend

SR = (0.125, 0.25, 0.5, 0.75, 1.0)
PCT = (0.25, 0.5, 0.75)
BASE_E = (16, 32, 64)
POOLS = ("1,4", "3,7", "0,4")
BYPASS = ("none", "simple", "complex")
DISTRIBUTIONS = {
    "sr": CategoricalDistribution(SR),
    "pct_3x3": CategoricalDistribution(PCT),
    "base_e": CategoricalDistribution(BASE_E),
    "pools": CategoricalDistribution(POOLS),
    "bypass": CategoricalDistribution(BYPASS),
    "lr": FloatDistribution(1e-3, 1e-1, log=True),
}
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


class _BufferedBackend(BaseJournalBackend):
    """Keeps logs in memory; `dump(path)` writes them as a journal file in one go."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int):
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(json.loads(json.dumps(log)) for log in logs)

    def dump(self, path: Path) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in self.logs)
        Path(path).write_text(text, encoding="utf-8")


def spec_dict(sr: float, pct_3x3: float, base_e: int, pools: str, bypass: str) -> dict[str, Any]:
    """A valid CIFAR-sized SqueezeSpec as a plain dict."""
    return {"base_e": base_e, "incr_e": base_e, "freq": 2, "pct_3x3": pct_3x3, "sr": sr,
            "n_fire": 8, "stem": "cifar", "stem_width": None,
            "pools": [int(p) for p in pools.split(",")], "bypass": bypass, "batchnorm": True,
            "dropout": 0.5, "num_classes": 10, "input_size": 32}


@lru_cache(maxsize=None)
def costs(sr: float, pct_3x3: float, base_e: int, pools: str, bypass: str) -> dict[str, float]:
    """params / MACs / activations / sizes from the project's analytic cost model."""
    from explorer.design.cost import estimate_cost
    from explorer.design.spec import SqueezeSpec

    c = estimate_cost(SqueezeSpec.from_dict(spec_dict(sr, pct_3x3, base_e, pools, bypass)))
    return {"params": c.params, "macs": c.macs, "activations": c.activations,
            "size_mb": c.size_mb, "size_mib": c.size_mib}


def trial(number: int, knobs: dict[str, Any], acc: float | None, *, lr: float = 0.01,
          infeasible: str = "", latency_ms: float | None = None) -> optuna.trial.FrozenTrial:
    """One stored trial with every attribute the dashboard reads; acc None = not trained."""
    cost = costs(**knobs)
    attrs: dict[str, Any] = {"spec": spec_dict(**knobs), "spec_id": f"{number:016x}", **cost,
                             "seed": number, "device": "cpu", "duplicate_of": None,
                             "pruned_reason": None, "infeasible": bool(infeasible),
                             "over_budget": infeasible}
    params = {**knobs, "lr": lr}
    if acc is None:
        attrs["end"] = "pruned"
        return optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=params,
                                         distributions=DISTRIBUTIONS, user_attrs=attrs)
    curve = [round(acc * (1 - 0.5 ** (e + 1)), 4) for e in range(4)] + [acc]
    attrs.update(val_acc=acc, best_val_acc=max(curve), curve=curve,
                 val_loss=[round(2.3 - 1.5 * c, 4) for c in curve],
                 train_seconds=30.0 + number % 7, images_per_s=1000.0, end="completed",
                 acc_std=0.01)
    if latency_ms is not None:
        attrs["latency_ms"] = latency_ms
    t = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE,
                                  values=[acc, float(cost["params"])], params=params,
                                  distributions=DISTRIBUTIONS, user_attrs=attrs)
    t.datetime_start = T0 + dt.timedelta(minutes=number)
    t.datetime_complete = t.datetime_start + dt.timedelta(seconds=attrs["train_seconds"])
    return t


def random_trials(n: int, seed: int = 0, *, infeasible_above: float | None = None,
                  with_latency: bool = False) -> list[optuna.trial.FrozenTrial]:
    """n random trials; accuracy grows with log(params) plus noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        knobs = {"sr": rng.choice(SR), "pct_3x3": rng.choice(PCT), "base_e": rng.choice(BASE_E),
                 "pools": rng.choice(POOLS), "bypass": rng.choice(BYPASS)}
        cost = costs(**knobs)
        if infeasible_above is not None and cost["params"] > infeasible_above:
            reason = f"params {cost['params']} > {infeasible_above:g}"
            out.append(trial(i, knobs, None, infeasible=reason))
            continue
        acc = round(min(0.95, max(0.1, 0.12 * math.log10(cost["params"]) + rng.gauss(0, 0.03))), 4)
        latency = cost["macs"] / 1e7 if with_latency else None
        out.append(trial(i, knobs, acc, lr=10 ** rng.uniform(-3, -1), latency_ms=latency))
    return out


def make_storage(path: str | Path, studies: dict[str, list[optuna.trial.FrozenTrial] | int],
                 seed: int = 0) -> Path:
    """Write a journal file holding the given studies (trial lists, or counts of random ones)."""
    backend = _BufferedBackend()
    storage = JournalStorage(backend)
    for k, (name, trials) in enumerate(studies.items()):
        if isinstance(trials, int):
            trials = random_trials(trials, seed + k)
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=["maximize", "minimize"])
        study.set_user_attr("objectives", ["val_acc", "params"])
        study.set_user_attr("config", {"name": name, "dataset": "cifar10", "seed": seed + k})
        study.add_trials(trials)
    backend.dump(Path(path))
    return Path(path)



def make_rdb(url: str, studies: dict[str, list[optuna.trial.FrozenTrial] | int], seed: int = 0, *,
             explorer_attrs: bool = True, directions: tuple[str, ...] = ("maximize", "minimize")) -> str:
    """The same studies in a database (sqlite:///PATH or postgresql://...): the schema, the study
    and its attrs through Optuna's RDBStorage, the trials by bulk INSERTs into Optuna's tables
    (its add_trials takes about 85 ms a trial here, 15 minutes for 10,000). tests/test_plain_optuna.py
    checks that Optuna reads them back as written. Returns `url`."""
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    from optuna.storages import RDBStorage

    storage = RDBStorage(url)
    for k, (name, trials) in enumerate(studies.items()):
        if isinstance(trials, int):
            trials = random_trials(trials, seed + k)
        study = optuna.create_study(storage=storage, study_name=name, directions=list(directions))
        if explorer_attrs:
            study.set_user_attr("objectives", ["val_acc", "params"])
            study.set_user_attr("config", {"name": name, "dataset": "cifar10", "seed": seed + k})
        study_id = storage.get_study_id_from_name(name)
        rows: dict[str, list[dict[str, Any]]] = {"trials": [], "values": [], "params": [], "attrs": []}
        with storage.engine.begin() as conn:
            base = conn.execute(sa.text("SELECT COALESCE(MAX(trial_id), 0) FROM trials")).scalar() + 1
            for i, t in enumerate(trials):
                tid = base + i
                rows["trials"].append({"i": tid, "n": i, "s": study_id, "st": t.state.name,
                                       "ds": _naive_utc(t.datetime_start), "dc": _naive_utc(t.datetime_complete)})
                rows["values"] += [{"i": tid, "o": o, "v": v} for o, v in enumerate(t.values or [])]
                rows["params"] += [{"i": tid, "k": p, "v": t.distributions[p].to_internal_repr(v),
                                    "d": distribution_to_json(t.distributions[p])} for p, v in t.params.items()]
                rows["attrs"] += [{"i": tid, "k": a, "v": json.dumps(v)} for a, v in t.user_attrs.items()]
            conn.execute(sa.text("INSERT INTO trials (trial_id, number, study_id, state, datetime_start, "
                                 "datetime_complete) VALUES (:i, :n, :s, :st, :ds, :dc)"), rows["trials"])
            if rows["values"]:
                conn.execute(sa.text("INSERT INTO trial_values (trial_id, objective, value, value_type) "
                                     "VALUES (:i, :o, :v, 'FINITE')"), rows["values"])
            if rows["params"]:
                conn.execute(sa.text("INSERT INTO trial_params (trial_id, param_name, param_value, "
                                     "distribution_json) VALUES (:i, :k, :v, :d)"), rows["params"])
            if rows["attrs"]:
                conn.execute(sa.text("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                                     "VALUES (:i, :k, :v)"), rows["attrs"])
            if conn.dialect.name == "postgresql":  # the ids above were given: move the counter past them,
                # or every trial Optuna creates later in this database fails on a duplicate trial_id
                conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('trials', 'trial_id'), "
                                     "(SELECT MAX(trial_id) FROM trials))"))
    storage.engine.dispose()
    return url


def _naive_utc(when: dt.datetime | None) -> dt.datetime | None:
    """Optuna's RDB stores naive UTC datetimes."""
    return None if when is None else when.astimezone(dt.timezone.utc).replace(tzinfo=None)

"""Size-aware early stopping, measured: training time saved and the front's hypervolume.

The same small study (a CIFAR-10 subset at 16 px, a few epochs, random sampler, same
seed, so both runs sample the same networks in the same order) runs twice: without early
stopping and with the size-aware rule. Reported: training seconds, trials stopped, and
the hypervolume of the val_acc-vs-parameters front (log10 parameters, reference =
chance accuracy and the largest network seen). Hypervolume counts only completed trials
(a stopped trial has no final accuracy).

    python bench/early_stop.py [--data PATH] [--trials N] [--epochs E]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.results.pareto import hypervolume  # noqa: E402
from explorer.store import open_storage, read_trials  # noqa: E402
from explorer.study.config import EarlyStopConfig, load_config  # noqa: E402
from explorer.study.loop import load_data_for, open_study, run_trials  # noqa: E402
from explorer.training.datasource import default_archive  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def study_config(trials: int, epochs: int, early: bool):
    """quickstart's space on a smaller subset, random sampler, early stopping on or off."""
    c = load_config(REPO / "studies/quickstart.yaml")
    rule = EarlyStopConfig(warmup_epochs=1, min_trials=3, quantile=0.5, size_factor=2.0, size_by="params")
    return dataclasses.replace(
        c, name="early" if early else "plain", n_trials=trials, timeout_s=None,
        data=dataclasses.replace(c.data, per_class=100, val_per_class=50, resolution=16),
        trainer=dataclasses.replace(c.trainer, epochs=epochs, time_budget_s=None),
        sampler=dataclasses.replace(c.sampler, name="random", seed=0),
        early_stop=rule if early else None, check_fvcore=False)


def run_one(config, url: str, data) -> tuple[float, object]:
    study = open_study(config, url)
    t = time.perf_counter()
    run_trials(study, config, data=data, device="cpu", progress=False, out=open(os.devnull, "w"))
    return time.perf_counter() - t, read_trials(open_storage(url), config.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(default_archive()))
    ap.add_argument("--trials", type=int, default=14)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    plain_cfg = study_config(args.trials, args.epochs, early=False)
    data = load_data_for(plain_cfg, args.data)
    result: dict = {"trials": args.trials, "epochs": args.epochs}
    frames = {}
    with tempfile.TemporaryDirectory() as tmp:
        for early in (False, True):
            cfg = study_config(args.trials, args.epochs, early)
            wall, df = run_one(cfg, f"{tmp}/{cfg.name}.journal", data)
            frames[cfg.name] = df
            trained = df[(~df["infeasible"]) & df["duplicate_of"].isna() & df["state"].isin(["COMPLETE", "PRUNED"])]
            result[cfg.name] = {"wall_s": round(wall, 1), "train_s": round(float(trained["train_seconds"].sum()), 1),
                                "epochs_run": int(trained["curve"].map(len).sum()),
                                "pruned": int((df["state"] == "PRUNED").sum())}
    ref_size = max(float(f["params"].max()) for f in frames.values()) * 1.1
    for name, df in frames.items():
        done = df[(df["state"] == "COMPLETE") & (~df["infeasible"])]
        hv = hypervolume(done["params"].to_numpy(float), done["val_acc"].to_numpy(float),
                         ref_size=ref_size, ref_acc=0.1, log_size=True)
        result[name]["hypervolume"] = round(hv, 4)
        print(f"{name:6s} train {result[name]['train_s']:7.1f}s  epochs {result[name]['epochs_run']:3d}  "
              f"pruned {result[name]['pruned']:2d}  hypervolume {hv:.4f}", flush=True)
    same = list(frames["plain"]["spec_id"]) == list(frames["early"]["spec_id"])
    p, e = result["plain"], result["early"]
    result.update({"same_networks_sampled": same,
                   "train_time_saved": round(1 - e["train_s"] / p["train_s"], 3) if p["train_s"] else None,
                   "epochs_saved": round(1 - e["epochs_run"] / p["epochs_run"], 3) if p["epochs_run"] else None,
                   "hypervolume_ratio": round(e["hypervolume"] / p["hypervolume"], 3) if p["hypervolume"] else None})
    print(json.dumps(result))


if __name__ == "__main__":
    main()

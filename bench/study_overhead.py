"""Time per trial spent outside training (sampling, cost, build, storage), journal vs SQLite.

A no-op trainer returns at once, so everything measured is the run loop's own cost:
Optuna's sampler, spec + analytic cost, the duplicate index, early stopping and every
storage write and read (building the network, needed to train it, is timed apart).
Studies of 100 and 1,000 trials over full_nsga2's space (NSGA-II,
size-aware early stopping on), for the embedded default (journal file) and SQLite, side
by side; the last 100 trials' mean is the figure "at N trials". Also: the fvcore check's
cost per trial (quickstart-sized networks), and N processes running one study at once.

    python bench/study_overhead.py [--quick]

Last line: one JSON object (`overhead_ms_per_trial_at_1000` is the default storage's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.study.config import load_config  # noqa: E402
from explorer.study.loop import run_study  # noqa: E402
from explorer.training.train import TrainResult  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = types.SimpleNamespace(num_classes=10)


class NoopTrainer:
    """Returns a plausible result immediately; records the time spent inside it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.stamps: list[float] = []

    def __call__(self, model, data, *, epochs, on_epoch_end=None, **kw) -> TrainResult:
        t = time.perf_counter()
        params = sum(p.numel() for p in model.parameters())
        res = TrainResult(train_seconds=0.0, images_per_s=0.0, seed=kw["seed"], device="cpu")
        for e in range(1, epochs + 1):
            acc = min(0.95, 0.2 + 0.1 * e + (params % 997) / 5000)
            res.val_acc.append(acc)
            res.val_loss.append(1 - acc)
            if on_epoch_end and on_epoch_end(e, {"val_acc": acc}) and e < epochs:
                res.end = "stopped"
                break
        res.final_acc, res.best_acc = res.val_acc[-1], max(res.val_acc)
        self.seconds += time.perf_counter() - t
        return res


def _config(n: int, fvcore: bool = False):
    c = load_config(REPO / "studies/full_nsga2.yaml")
    return dataclasses.replace(c, name=f"bench{n}", n_trials=n, check_fvcore=fvcore)


def overhead(url: str, n: int) -> dict:
    """Mean ms per trial outside the trainer, overall and over the last 100 trials."""
    import explorer.design.model as model_mod

    trainer, build = NoopTrainer(), model_mod.build_model
    built = [0.0]

    def timed_build(spec):  # building a network is part of training it, not of the loop
        t = time.perf_counter()
        try:
            return build(spec)
        finally:
            built[0] += time.perf_counter() - t

    model_mod.build_model = timed_build
    config = _config(n)
    done = []

    def out_write(line: str) -> None:
        done.append(time.perf_counter())

    sink = types.SimpleNamespace(write=lambda s: out_write(s) if s.strip() else None, flush=lambda: None)
    start = time.perf_counter()
    summary = run_study(config, storage_url=url, trainer=trainer, data=DATA, device="cpu",
                        progress=False, out=sink)
    total = time.perf_counter() - start
    model_mod.build_model = build
    trainer.seconds += built[0]
    marks = [start] + done  # one summary line per finished trial
    last = marks[-101:] if len(marks) > 101 else marks
    outside = 1e3 * (total - trainer.seconds) / summary.ran
    # The last 100 trials: their wall time minus their share of trainer + build time.
    span_ms = (last[-1] - last[0]) * 1e3
    share_ms = trainer.seconds * 1e3 / summary.ran * (len(last) - 1)
    return {"trials": summary.ran, "ms_per_trial": round(outside, 2),
            "ms_per_trial_last_100": round((span_ms - share_ms) / (len(last) - 1), 2),
            "build_and_noop_train_ms_per_trial": round(trainer.seconds * 1e3 / summary.ran, 2)}


def fvcore_ms(n: int = 20) -> float:
    """Mean ms to build a quickstart-sized network and count it with fvcore."""
    import random

    from explorer.design.cost import fvcore_cost
    from explorer.design.model import build_model
    from explorer.study.space import Space

    config = load_config(REPO / "studies/quickstart.yaml")
    space, rng = Space.from_config(config), random.Random(0)
    specs = [space.spec(space.sample(rng)) for _ in range(n)]
    from explorer.design.cost import estimate_cost
    from explorer.study.objective import check_fvcore

    fvcore_cost(build_model(specs[0]), specs[0].input_size)  # warm-up (jit tracing imports)
    t = time.perf_counter()
    for s in specs:
        check_fvcore(build_model(s), s, estimate_cost(s))  # as the run loop does it
    return (time.perf_counter() - t) * 1e3 / n


def _worker(url: str, n: int, q) -> None:
    try:
        from explorer.study.loop import open_study

        c = dataclasses.replace(_config(0), name="shared", n_trials=100_000)
        _run_n(open_study(c, url), c, n)
        q.put(("ok", ""))
    except Exception as exc:  # the point: does the storage raise under concurrent writers?
        q.put(("error", f"{type(exc).__name__}: {exc}"[:200]))


def _run_n(study, config, n: int) -> None:
    from explorer.study.objective import TrialRunner
    from explorer.study.space import Space

    runner = TrialRunner(study, config, data=DATA, device="cpu", trainer=NoopTrainer(),
                         space=Space.from_config(config))
    study.optimize(runner, n_trials=n)


def concurrent(url: str, procs: int, n: int) -> dict:
    """`procs` processes each run `n` trials of one study at once; errors and wall time."""
    from explorer.study.loop import open_study

    open_study(dataclasses.replace(_config(0), name="shared", n_trials=100_000), url)  # create first
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t = time.perf_counter()
    ps = [ctx.Process(target=_worker, args=(url, n, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    errors = [msg for kind, msg in results if kind == "error"]
    return {"processes": procs, "trials_each": n, "wall_s": round(time.perf_counter() - t, 1),
            "errors": len(errors), "first_error": errors[0] if errors else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 trials only, no concurrency run")
    ap.add_argument("--concurrency-only", action="store_true", help="only the N-processes run")
    args = ap.parse_args()
    if args.concurrency_only:
        with tempfile.TemporaryDirectory() as tmp:
            for name, url in (("journal", f"{tmp}/c.journal"), ("sqlite", f"sqlite:///{tmp}/c.db")):
                print(json.dumps({name: concurrent(url, 4, 50)}), flush=True)
        return
    sizes = [100] if args.quick else [100, 1000]
    result: dict = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for name, url in (("journal", f"{tmp}/j{n}.journal"), ("sqlite", f"sqlite:///{tmp}/s{n}.db")):
                r = overhead(url, n)
                result[f"{name}_{n}"] = r
                print(f"{name:8s} {n:5d} trials: {r['ms_per_trial']:7.2f} ms/trial overall, "
                      f"{r['ms_per_trial_last_100']:7.2f} ms/trial over the last 100", flush=True)
        if not args.quick:
            for name, url in (("journal", f"{tmp}/c.journal"), ("sqlite", f"sqlite:///{tmp}/c.db")):
                r = concurrent(url, 4, 50)
                result[f"concurrent_{name}"] = r
                print(f"{name:8s} 4 processes x 50 trials at once: {r['errors']} errors, {r['wall_s']} s "
                      f"{r['first_error'] or ''}", flush=True)
    fv = fvcore_ms()
    print(f"fvcore check (build + count), quickstart-sized networks: {fv:.1f} ms/trial")
    top = max(sizes)
    result.update({
        f"overhead_ms_per_trial_at_{top}": result[f"journal_{top}"]["ms_per_trial_last_100"],
        f"sqlite_overhead_ms_per_trial_at_{top}": result[f"sqlite_{top}"]["ms_per_trial_last_100"],
        "fvcore_check_ms_per_trial": round(fv, 1),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()

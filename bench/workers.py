"""Coordination cost of many workers: trials per second with 1, 2 and 4 worker processes.

The objective is trivial (one suggest_float, no training), so what is measured is the
worker loop alone: the claim lock, counting finished and running trials, Optuna's
stale-trial check, ask (sampler: random), the heartbeat thread and tell. Each worker is a
process running `explorer.commands.worker.work` exactly as `explorer worker` does; all
start together after their imports (a barrier), so start-up is not timed. Storages:
PostgreSQL (--pg-url, or EXPLORER_TEST_PG_URL; skipped without one) and the embedded
default, a journal file on local disk.

    python bench/workers.py [--trials 100] [--repeats 3] [--pg-url postgresql://...]

Last line: one JSON object with trials per second per storage and worker count,
`postgres_speedup_4_workers` (throughput with 4 workers / with 1) and the per-trial
storage overhead in ms (1 worker).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKERS = (1, 2, 4)


def open_storage(url: str):
    """The storage as `explorer worker` opens it (heartbeats on for PostgreSQL)."""
    from explorer import store

    if store.storage_kind(url) == "postgresql":
        return store.open_storage(store.pg.driver_url(url), stale_callback=store.retry_stale)
    return store.open_storage(url, create=True)


def load_quietly() -> None:
    """No Optuna info lines or ExperimentalWarnings in the output."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def load(url: str, name: str):
    import optuna

    load_quietly()
    return optuna.load_study(study_name=name, storage=open_storage(url),
                             sampler=optuna.samplers.RandomSampler(seed=os.getpid()))


def objective(trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def worker(url: str, name: str, n: int, barrier, results) -> None:
    """One worker process: import, open, wait for the others, run the loop, report."""
    from explorer.store import study_lock, work

    study = load(url, name)
    waited, held = [], []

    @contextlib.contextmanager
    def timed_lock():
        asked = time.perf_counter()
        with study_lock(study, url):
            got = time.perf_counter()
            waited.append(got - asked)
            yield
        held.append(time.perf_counter() - got)

    barrier.wait()
    start = time.perf_counter()
    ran = work(study, objective, target=n, lock=timed_lock, poll_s=0.02, out=io.StringIO())
    results.put((ran, time.perf_counter() - start, sum(waited), sum(held)))


def run_workers(url: str, n: int, k: int) -> dict:
    """k processes finish one fresh study of n trials; wall time from the common start."""
    import optuna

    name = f"bench-workers-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, name, n, barrier, results)) for _ in range(k)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    reports = [results.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    study = load(url, name)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=name, storage=open_storage(url))
    per = 1000 / max(finished, 1)
    return {"workers": k, "trials": finished, "wall_s": round(wall, 3),
            "trials_per_s": round(finished / wall, 1), "per_worker": [r[0] for r in reports],
            "lock_wait_ms": round(sum(r[2] for r in reports) * per, 2),
            "lock_held_ms": round(sum(r[3] for r in reports) * per, 2)}


def plain_optuna_ms(url: str, n: int) -> float:
    """ms per trial of Optuna's own optimize loop on the same storage (no claim lock)."""
    import optuna

    name = f"bench-plain-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    study = load(url, name)
    start = time.perf_counter()
    study.optimize(objective, n_trials=n)
    ms = (time.perf_counter() - start) / n * 1000
    optuna.delete_study(study_name=name, storage=open_storage(url))
    return ms


def bench(label: str, url: str, n: int, repeats: int) -> dict:
    """Each worker count `repeats` times (interleaved); mean and std of trials per second."""
    runs = {k: [] for k in WORKERS}
    for _ in range(repeats):
        for k in WORKERS:
            runs[k].append(run_workers(url, n, k))
    tps = {}
    for k, rows in runs.items():
        rates = [r["trials_per_s"] for r in rows]
        tps[k] = round(statistics.mean(rates), 1)
        std = statistics.stdev(rates) if len(rates) > 1 else 0.0
        held = statistics.mean(r["lock_held_ms"] for r in rows)
        waited = statistics.mean(r["lock_wait_ms"] for r in rows)
        print(f"{label:9s} {k} worker(s): {tps[k]:6.1f} +- {std:4.1f} trials/s over {len(rows)} runs of "
              f"{n} trials; per trial the claim lock was held {held:.1f} ms, waited for {waited:.1f} ms "
              f"(all workers together)", flush=True)
    plain = statistics.median(plain_optuna_ms(url, n) for _ in range(repeats))
    one = 1000 / tps[1]
    print(f"{label:9s} per trial, 1 worker: {one:.1f} ms of storage and coordination (Optuna's own "
          f"optimize loop, no claim lock: {plain:.1f} ms)", flush=True)
    return {"trials_per_s": tps, "ms_per_trial_1_worker": round(one, 2),
            "optuna_only_ms_per_trial": round(plain, 2),
            "speedup_4_workers": round(tps[4] / tps[1], 2),
            "exact": all(r["trials"] == n for rows in runs.values() for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="trials per study (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per worker count (default 3)")
    ap.add_argument("--pg-url", default=os.environ.get("EXPLORER_TEST_PG_URL"),
                    help="PostgreSQL URL (default: $EXPLORER_TEST_PG_URL)")
    args = ap.parse_args()
    load_quietly()
    cores = os.cpu_count()
    print(f"this machine has {cores} CPU cores: with more workers than cores the workers share "
          f"them, so read the speed-ups with that in mind; {args.trials} trials per study, "
          "trivial objective (no training). The PostgreSQL server runs on the same 2 cores, "
          "so here extra workers mostly compete for CPU; on a real server the curve differs", flush=True)
    out: dict = {"cpu_cores": cores, "trials_per_study": args.trials}
    if args.pg_url:
        from explorer.store import mask_url
        from explorer.store.pg import probe

        probe(args.pg_url)
        print(f"PostgreSQL: {mask_url(args.pg_url)}", flush=True)
        pg = bench("postgres", args.pg_url, args.trials, args.repeats)
        out.update(postgres=pg, postgres_speedup_4_workers=pg["speedup_4_workers"])
    else:
        print("PostgreSQL: skipped (pass --pg-url or set EXPLORER_TEST_PG_URL)", flush=True)
        out["postgres_speedup_4_workers"] = None
    with tempfile.TemporaryDirectory() as tmp:
        out["journal"] = bench("journal", str(Path(tmp) / "bench.journal"), args.trials, args.repeats)
    out["journal_speedup_4_workers"] = out["journal"]["speedup_4_workers"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Dashboard speed: page load and rerun at 1,000 and 10,000 trials; Pareto front scaling.

Goals: cold load of 10,000 trials <= 2 s, a rerun after a widget change <= 100 ms, the
front in O(n log n). Runs the real page in Streamlit's AppTest (in-process, no browser):
"cold" = first run with empty caches (modules already imported, as in a served app after
its first visitor); "fresh process" = the very first run in a new interpreter, imports
included. The front is timed against a naive O(n^2) reference (chunked numpy).

    python bench/dashboard_load.py            # last line: one JSON object
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from explorer.pareto import pareto_front  # noqa: E402

import _studyfactory as factory  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")


def naive_front(size: np.ndarray, acc: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """O(n^2) reference: compare every point with every other, in chunks to bound memory."""
    out = np.zeros(len(size), dtype=bool)
    for lo in range(0, len(size), chunk):
        s, a = size[lo:lo + chunk, None], acc[lo:lo + chunk, None]
        dominated = ((size <= s) & (acc >= a) & ((size < s) | (acc > a))).any(axis=1)
        out[lo:lo + chunk] = ~dominated
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def page_times(storage: Path, reruns: int = 9) -> tuple[float, float, float, float]:
    """Cold load and median rerun after a widget change: (wall s, wall s, CPU s, CPU s).

    CPU time (this process, all threads) is reported too: on a shared machine the wall
    clock also measures other people's jobs.
    """
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    st.cache_data.clear()
    os.environ["EXPLORER_STORAGE"] = str(storage)
    at = AppTest.from_file(APP, default_timeout=60)
    t, c = time.perf_counter(), time.process_time()
    at.run()
    cold, cold_cpu = time.perf_counter() - t, time.process_time() - c
    assert not at.exception, at.exception
    walls, cpus = [], []
    for i in range(reruns):
        at.selectbox(key="size_axis").select(["macs", "params"][i % 2])
        t, c = time.perf_counter(), time.process_time()
        at.run()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    assert not at.exception, at.exception
    return cold, statistics.median(walls), cold_cpu, statistics.median(cpus)


def fresh_process_first_run(storage: Path) -> float:
    """The first page run in a new interpreter (imports of the app's modules included)."""
    code = ("import os, time; from streamlit.testing.v1 import AppTest;"
            f"os.environ['EXPLORER_STORAGE'] = {str(storage)!r};"
            f"at = AppTest.from_file({APP!r}, default_timeout=60); t = time.perf_counter(); at.run();"
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    result: dict[str, float] = {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        warm = factory.make_storage(Path(tmp) / "warm.journal", {"warm": 20})
        page_times(warm, reruns=1)  # import the app's modules once, like a served app
        for n in (1_000, 10_000):
            t = time.perf_counter()
            storage = factory.make_storage(Path(tmp) / f"s{n}.journal", {f"study{n}": n})
            print(f"{n:>6} trials: wrote the journal in {time.perf_counter() - t:.2f} s "
                  f"({storage.stat().st_size / 1e6:.1f} MB)")
            from dashboards.loading import load_trials, open_storage

            t = time.perf_counter()
            opened = open_storage(str(storage))
            replay = time.perf_counter() - t
            t = time.perf_counter()
            load_trials(opened, f"study{n}")
            table = time.perf_counter() - t
            result[f"journal_replay_s_{n}"] = round(replay, 3)
            result[f"trial_table_s_{n}"] = round(table, 3)
            print(f"{n:>6} trials: Optuna journal replay {replay:.2f} s, trial table {table:.2f} s")
            cold, rerun, cold_cpu, rerun_cpu = page_times(storage)
            result[f"cold_load_s_{n}"] = round(cold, 3)
            result[f"rerun_s_{n}"] = round(rerun, 4)
            result[f"cold_load_cpu_s_{n}"] = round(cold_cpu, 3)
            result[f"rerun_cpu_s_{n}"] = round(rerun_cpu, 4)
            print(f"{n:>6} trials: cold load {cold:.2f} s (CPU {cold_cpu:.2f} s), rerun after a "
                  f"widget change {rerun * 1000:.0f} ms (CPU {rerun_cpu * 1000:.0f} ms; medians)")
        first = fresh_process_first_run(storage)
        result["first_run_fresh_process_s_10000"] = round(first, 3)
        print(f" 10000 trials: first run in a fresh process (imports included) {first:.2f} s")
    for n in (1_000, 10_000):
        size, acc = rng.random(n), rng.random(n)
        assert np.array_equal(pareto_front(size, acc), naive_front(size, acc))
        ours = best_of(lambda: pareto_front(size, acc), 5)
        naive = best_of(lambda: naive_front(size, acc), 1 if n > 1000 else 3)
        result[f"front_s_{n}"] = round(ours, 6)
        result[f"naive_front_s_{n}"] = round(naive, 5)
        print(f"front of {n:>6} points: ours {ours * 1e3:.2f} ms, naive O(n^2) {naive * 1e3:.1f} ms "
              f"({naive / ours:.0f}x)")
    big = 1_000_000
    size, acc = rng.random(big), rng.random(big)
    ours = best_of(lambda: pareto_front(size, acc), 3)
    result["front_s_1000000"] = round(ours, 4)
    print(f"front of {big} points: ours {ours:.3f} s "
          f"({ours / result['front_s_10000']:.0f}x the 10k time for 100x the points)")
    print(f"goals (wall clock): cold 10k <= 2 s: {'met' if result['cold_load_s_10000'] <= 2 else 'MISSED'}; "
          f"rerun 10k <= 0.1 s: {'met' if result['rerun_s_10000'] <= 0.1 else 'MISSED'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    result["loadavg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

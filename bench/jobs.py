"""Trials per hour of the quickstart study with `--jobs 1` and `--jobs auto` on this machine.

Each run is `explorer run STUDY --n-trials N --jobs J` (N = 6 by default: a shortened
quickstart) into a fresh storage, timed from start to exit (process start, data load from
the warm cache, trials, shutdown). STUDY is the quickstart with its time guard
(`trainer.time_budget_s`) removed: on a busy machine a guard cuts trials short, and a
cut trial is less work, so trials per hour would not compare equal work. The two are
interleaved over repeats; trials per hour = N / median wall time. Key `jobs_speedup`
(auto over 1; goal >= 1.6 on 2 cores); `identical_accuracy`: every trial number has the
same val_acc in both runs (each trial's point comes from its own sampler seed, its
training from the study's seed and thread count). On a GPU machine `--device cuda` measures k
processes per GPU the same way (`auto`'s per-GPU rule, explorer.study.jobs). The load average
is printed with the figures. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from explorer.training.datasource import default_archive

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = default_archive()
LINE = re.compile(r"^#(\d+)\s+\w+\s+val_acc\s+(\S+)", re.M)


def unguarded(study: str, folder: Path) -> Path:
    """A copy of the study file without its time guard (JSON is YAML)."""
    from explorer.study.config import load_config

    d = load_config(REPO / study).to_dict()
    d["trainer"]["time_budget_s"] = None
    path = folder / "study.yaml"
    path.write_text(json.dumps(d))
    return path


def one_run(study: str, jobs: str, n_trials: int, data: str, device: str | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "explorer", "run", str(unguarded(study, folder)), "--n-trials", str(n_trials),
           "--jobs", jobs, "--storage", str(folder / "s.journal"), "--data", data, "--no-progress"]
    if device:
        cmd += ["--device", device]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    lines = LINE.findall(out.stdout)
    return {"seconds": seconds, "load": load, "accs": dict(lines),
            "cut": out.stdout.count("time_budget"), "summary": out.stdout.strip().splitlines()[-2]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="studies/quickstart.yaml")
    p.add_argument("--n-trials", type=int, default=6)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--data", default=str(ARCHIVE))
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    from explorer.study.config import load_config
    from explorer.training.data import load_data

    d = load_config(REPO / a.study).data  # warm the decoded-image cache before timing
    load_data(a.data, per_class=d.per_class, val_per_class=d.val_per_class, resolution=d.resolution, seed=d.seed)
    times: dict[str, list[float]] = {"1": [], "auto": []}
    loads, cut, accs = [], {"1": 0, "auto": 0}, []
    for r in range(a.repeats):
        for jobs in ("1", "auto"):
            m = one_run(a.study, jobs, a.n_trials, a.data, a.device)
            times[jobs].append(m["seconds"])
            loads.append(m["load"])
            cut[jobs] += m["cut"]
            accs.append(m["accs"])
            per_hour = 3600 * a.n_trials / m["seconds"]
            print(f"repeat {r + 1}: --jobs {jobs:4s} {m['seconds']:7.1f} s  ({per_hour:.0f} "
                  f"trials/hour)  load at start {m['load']:.1f}  val_acc {' '.join(m['accs'].values())}  "
                  f"[{m['summary']}]",
                  flush=True)
    one, auto = statistics.median(times["1"]), statistics.median(times["auto"])
    speedup = one / auto
    print(f"medians over {a.repeats} repeat(s), {a.n_trials} trials of {a.study}: --jobs 1 {one:.0f} s "
          f"({3600 * a.n_trials / one:.0f} trials/hour), --jobs auto {auto:.0f} s ({3600 * a.n_trials / auto:.0f} "
          f"trials/hour): {speedup:.2f}x on {cores} cores, load average {min(loads):.1f}-{max(loads):.1f}")
    out = {"jobs_speedup": round(speedup, 3), "jobs1_s": round(one, 1), "jobs_auto_s": round(auto, 1),
           "trials_per_hour_1": round(3600 * a.n_trials / one), "trials_per_hour_auto": round(3600 * a.n_trials / auto),
           "n_trials": a.n_trials, "repeats": a.repeats, "cores": cores, "device": a.device or "default",
           "identical_accuracy": all(x == accs[0] for x in accs), "cut_by_time_budget": cut,
           "load_min": round(min(loads), 2), "load_max": round(max(loads), 2)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""`explorer run --jobs N`: N trial processes on this machine sharing one study.

The parent checks everything, loads the data once (which fills the decoded-image cache for
the children), creates or resumes the study, then starts N `explorer worker STUDY --child`
processes and watches the storage: it prints one line per finished trial and drives one
progress bar for the whole run. The children claim trials exactly as `explorer worker`
does (explorer.store.claim), so together they finish exactly n_trials; each trains on the
study's `trainer.threads` (one by default: on CPU the cores are used through processes,
not threads, see explorer.core.runtime). Ctrl-C (or SIGTERM) reaches the parent only (the
children run in their own sessions); it forwards one SIGINT to each child, which fails its
running trial and queues it again, waits for them, and fails and requeues what a child
that had to be killed left RUNNING. Latency measurements keep working: explorer.latency.quiet
pauses every training process of ours on this machine, whoever started it.

`auto`: on CPU, one process per core this process may use (its CPU affinity) divided by
`trainer.threads`; on CUDA, `per_gpu` processes per visible GPU, chosen from the largest
network in the space (small networks leave a big GPU mostly idle). The CUDA rule is a
documented guess, not measured here (no GPU on the machine this was written on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from explorer import store
from explorer.core.errors import SpecError, UserError
from explorer.core.runtime import cpu_count
from explorer.design.cost import estimate_cost
from explorer.store import attrs as A
from explorer.study.config import StudyConfig
from explorer.study.objective import format_outcome, outcome
from explorer.study.space import Space

STORAGE_ENV = "EXPLORER_JOBS_STORAGE"  # the storage URL for the children (kept out of `ps`)
POLL_S = 1.0
STOP_WAIT_S = 60.0  # how long a child may take to fail its trial after Ctrl-C before it is killed


def per_gpu(config: StudyConfig, space: Space | None = None) -> int:
    """Processes per GPU for `auto`: 4 below 1M parameters, 2 below 10M, else 1 (the space's largest network)."""
    space = space or Space.from_config(config)
    largest = 0
    for values in space.corners():
        try:
            largest = max(largest, estimate_cost(space.spec(values)).params)
        except SpecError:
            continue
    return 4 if largest < 1_000_000 else 2 if largest < 10_000_000 else 1


def resolve_jobs(jobs: int | str | None, config: StudyConfig, device: str, space: Space | None = None) -> int:
    """The number of trial processes: an integer >= 1, or `auto` (see the module docstring); `space`:
    the config's unless given."""
    if jobs is None:
        return 1
    if jobs != "auto":
        return int(jobs)
    if device.startswith("cuda"):
        import torch

        gpus = 1 if ":" in device else max(1, torch.cuda.device_count())
        return gpus * per_gpu(config, space)
    return max(1, cpu_count() // config.trainer.threads)


def parse_jobs(value: Any, where: str = "--jobs") -> int | str:
    """An integer >= 1 or 'auto'; UserError (one line) otherwise."""
    if value == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise UserError(f"{where}={value}: give a number of processes >= 1, or auto (one per core)")
    return n


def _devices(device: str, n: int) -> list[str]:
    """The device of each child: on CUDA without an index, the visible GPUs in turn."""
    if device != "cuda":
        return [device] * n
    import torch

    gpus = max(1, torch.cuda.device_count())
    return [f"cuda:{i % gpus}" for i in range(n)]


def _start(config: StudyConfig, url: str, device: str, n_trials: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "explorer", "worker", config.name, "--child", "--device", device,
           "--threads", str(config.trainer.threads), "--poll", "0.5"]
    if config.data.source:
        cmd += ["--data", config.data.source]
    if n_trials is not None:
        cmd += ["--n-trials", str(n_trials)]
    env = {**os.environ, STORAGE_ENV: url, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)  # Ctrl-C reaches the parent, which forwards it


def run_jobs(study, config: StudyConfig, *, url: str, jobs: int, device: str, n_trials: int | None,
             summary, progress: bool = True, out=None):
    """Start `jobs` child processes on the study, watch the storage until they are done; fills `summary`."""
    from tqdm import tqdm

    out = out or sys.stdout
    target = n_trials if n_trials is not None else config.n_trials
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    done, _ = store.claim_counts(study)
    bar = tqdm(total=target, initial=done, unit="trial", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc=f"{study.study_name} ({jobs} jobs)")
    tqdm.write(f"{study.study_name}: {jobs} trial processes on {device}, "
               f"{config.trainer.threads} thread(s) each", file=out)
    children: list[subprocess.Popen] = []
    started = time.perf_counter()

    def report() -> None:
        trials = study.get_trials(deepcopy=False)  # one read per poll: the lines and the bar
        for t in trials:
            if t.number in seen or not t.state.is_finished():
                continue
            seen.add(t.number)
            summary.ran += 1
            key = store.state_key(t)
            summary.states[key] = summary.states.get(key, 0) + 1
            a = t.user_attrs
            summary.trained += int(t.state.name in ("COMPLETE", "PRUNED") and not a.get(A.INFEASIBLE)
                                   and a.get(A.DUPLICATE_OF) is None)
            tqdm.write(format_outcome(outcome(t)), file=out)
        bar.n = store.trial_counts(trials)[0]
        bar.refresh()

    try:
        children = [_start(config, url, dev, n_trials) for dev in _devices(device, jobs)]
        while any(c.poll() is None for c in children):
            time.sleep(POLL_S)
            report()
    except KeyboardInterrupt:
        summary.interrupted = True
        _stop(children)
    finally:
        if summary.interrupted or any(c.poll() is None for c in children):
            _stop(children)
        with store.study_lock(study, url):  # a killed child's trial: failed and queued again
            store.fail_stale_trials(study)
        report()
        bar.close()
        summary.seconds = time.perf_counter() - started
    bad = [c.returncode for c in children if c.returncode not in (0, 130, -signal.SIGINT)]
    if bad and not summary.interrupted:
        summary.gave_up = (f"{len(bad)} of {jobs} trial processes exited with code {bad[0]} "
                           "(their error is printed above)")
    return summary


def _stop(children: list[subprocess.Popen]) -> None:
    """One SIGINT to each live child (it fails its trial and queues it again), then wait; kill the slow."""
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for c in children:
        try:
            c.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()

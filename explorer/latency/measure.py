"""Latency of a network: measured with hygiene, labelled with its setting, cached per machine.

`latency_ms` is the median wall time of one forward pass of a batch (`batch_size`, 1 by
default) on a device, in eval mode under torch.inference_mode, after warm-up runs, with a
fixed number of CPU threads, in the trainer's memory format (channels-last) and precision
(fp32; bf16 autocast on CUDA, as the trainer evaluates), while every training of ours on
this machine is paused (explorer.latency.quiet). Timed runs go on until the 95% confidence interval
of the median is within `target_spread` of it (or `max_seconds` pass); that relative
half-width is stored as the measurement's spread. Processes not ours cannot be paused:
`cpu_share`, the process's CPU time over wall time x threads during the timed runs, says how
much of the CPU the measurement got (about 1 on a quiet machine with one thread; well below
1 when other processes took turns on its cores), and `cpu_ms`, the median process CPU time
per forward pass, is the part of the latency such processes cannot stretch (with one CPU
thread it equals the latency on a quiet machine).

A latency belongs to its `Setting` (device and its name, host, threads, batch, input size,
memory format, precision, torch version): two latencies are comparable only when their
settings are equal, and every report says which setting a latency was measured on.
Measurements are cached on this machine (explorer.latency.cache) by spec_id and setting.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import platform
import re
import socket
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from explorer.core.util import is_int, is_number

DEVICE_FORM = re.compile(r"cpu|cuda(:\d+)?|mps")
MIN_RUNS, MAX_RUNS = 20, 2000  # timed runs: enough for a confidence interval; a cap for tiny nets
WARMUP_RUNS, WARMUP_S = 5, 0.2  # at least this many runs and this long (caches, cuDNN autotuning)


@dataclass(frozen=True)
class LatencyConfig:
    """A study's `latency:` section: where and how each trial's network is timed."""

    device: str | None = None  # None: the device the trial trains on
    threads: int = 1  # CPU threads while timing (torch.set_num_threads)
    batch_size: int = 1
    target_spread: float = 0.02  # stop once the median's 95% CI half-width is within 2% of it
    max_seconds: float = 5.0  # per network, warm-up excluded


# key -> (check, what it must be, null allowed): explorer.study.config validates the section with these.
LATENCY_LIMITS = {
    "device": (lambda v: isinstance(v, str) and DEVICE_FORM.fullmatch(v) is not None,
               "cpu, cuda or cuda:N (null: the trial's device)", True),
    "threads": (lambda v: is_int(v) and 1 <= v <= 1024, "an integer in [1, 1024]", False),
    "batch_size": (lambda v: is_int(v) and 1 <= v <= 4096, "an integer in [1, 4096]", False),
    "target_spread": (lambda v: is_number(v) and 0 < v < 1, "a fraction in (0, 1), such as 0.02", False),
    "max_seconds": (lambda v: is_number(v) and 0 < v <= 600, "a number of seconds in (0, 600]", False),
}


def wanted_section(data: dict[str, Any]) -> dict[str, Any] | None:
    """What explorer.study.config validates as a study file's `latency:` section: the mapping given, {}
    for `true` or when latency_ms is an objective or a budget, None when latency is not measured."""
    m = data.get("latency")
    named = set(data.get("objectives") or []) | set(data.get("budgets") or {})
    if (m is None or m is False) and "latency_ms" not in named:
        return None
    return {} if m is None or isinstance(m, bool) else m


@dataclass(frozen=True)
class Setting:
    """What a latency belongs to; latencies are comparable only under equal settings."""

    device: str
    device_name: str
    host: str
    threads: int
    batch_size: int
    input_size: int
    channels_last: bool
    precision: str
    torch: str

    def label(self) -> str:
        """'cpu (AMD EPYC 7B13) on host1, 1 thread, batch 1, 16x16 px, fp32 channels-last, torch 2.5.1'."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        layout = "channels-last" if self.channels_last else "contiguous"
        return (f"{self.device} ({self.device_name}) on {self.host}, {threads}, batch {self.batch_size}, "
                f"{self.input_size}x{self.input_size} px, {self.precision} {layout}, torch {self.torch}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Setting":
        """The setting stored in a trial's `latency` attr."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Latency:
    """One measurement: the median, its spread, how it was taken, and its setting."""

    ms: float  # median milliseconds per forward pass of the batch
    spread: float  # half-width of the median's 95% CI, relative to the median
    runs: int
    warmup_runs: int
    seconds: float  # timed runs only
    quiet: bool  # every training of ours on this machine was paused
    setting: Setting
    cpu_share: float = math.nan  # process CPU time / (wall time x threads) over the timed runs
    cpu_ms: float = math.nan  # median process CPU time per forward pass (all threads)
    measured_at: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the setting's fields and the measurement's."""
        d = asdict(self)
        return {**d.pop("setting"), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Latency":
        """Read back `to_dict()` (a cache entry or a trial's `latency` attr)."""
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k != "setting" and k in d}
        return cls(setting=Setting.from_dict(d), **fields)


@functools.lru_cache(maxsize=None)
def describe_device(device: str) -> str:
    """The device's own name: the CPU model, or the GPU's name."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def setting_for(config: LatencyConfig, device: str, input_size: int) -> Setting:
    """The setting a trial on `device` measures under (the config's device when it names one)."""
    import torch

    dev = config.device or device
    if dev == "cuda":
        dev = f"cuda:{torch.cuda.current_device()}"  # one name per GPU, so settings compare
    return Setting(device=dev, device_name=describe_device(dev), host=socket.gethostname(),
                   threads=config.threads, batch_size=config.batch_size, input_size=input_size,
                   channels_last=True, precision="bf16 autocast" if dev.startswith("cuda") else "fp32",
                   torch=torch.__version__.split("+")[0])


def median_ci(samples: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """(median, low, high): the median and its distribution-free ~95% confidence interval.

    The interval runs between the order statistics of ranks n/2 - z*sqrt(n)/2 and
    1 + n/2 + z*sqrt(n)/2, rounded (Conover, Practical Nonparametric Statistics, 3rd ed.,
    sec. 3.2): no assumption on the shape of the timing distribution, which is skewed.
    """
    x = sorted(samples)
    n = len(x)
    half = z * math.sqrt(n) / 2
    lo = min(max(round(n / 2 - half), 1), n)
    hi = min(max(round(1 + n / 2 + half), 1), n)
    return statistics.median(x), x[lo - 1], x[hi - 1]


def relative_spread(samples: list[float]) -> float:
    """Half-width of the median's CI over the median (inf for fewer than 2 samples)."""
    if len(samples) < 2:
        return math.inf
    med, lo, hi = median_ci(samples)
    return (hi - lo) / 2 / med if med > 0 else math.inf


def measure(model, setting: Setting, *, target_spread: float = 0.02, max_seconds: float = 5.0,
            quiet: bool = False) -> Latency:
    """Time `model` under `setting` (the model is copied: its mode, device and weights stay as they are)."""
    import copy

    import torch

    dev = torch.device(setting.device)
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if setting.channels_last else torch.contiguous_format
    threads = torch.get_num_threads()
    torch.set_num_threads(setting.threads)
    try:
        net = copy.deepcopy(model).to(dev, memory_format=fmt).eval()
        s = setting.input_size
        x = torch.randn(setting.batch_size, 3, s, s, device=dev).contiguous(memory_format=fmt)
        if cuda:
            torch.backends.cudnn.benchmark = True  # as the trainer runs
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
        sync = (lambda: torch.cuda.synchronize(dev)) if cuda else None
        with torch.inference_mode(), autocast:
            return time_calls(lambda: net(x), setting, target_spread=target_spread, max_seconds=max_seconds,
                              quiet=quiet, sync=sync)
    finally:
        torch.set_num_threads(threads)


def time_calls(run: Callable[[], object], setting: Setting, *, target_spread: float = 0.02,
               max_seconds: float = 5.0, quiet: bool = False, sync: Callable[[], object] | None = None) -> Latency:
    """Warm-up, then timed calls of `run()` until the median is known to `target_spread`: the hygiene of
    `measure` for any runtime (an onnxruntime session too). The caller fixes the threads and the
    input; `sync` waits for asynchronous work (CUDA)."""
    warm = _warm_up(run, sync)
    times, cpu = _timed_runs(run, sync, target_spread, max_seconds)
    seconds = sum(times)
    return Latency(ms=1e3 * statistics.median(times), spread=relative_spread(times), runs=len(times),
                   warmup_runs=warm, seconds=round(seconds, 3), quiet=quiet,
                   cpu_share=round(sum(cpu) / (seconds * setting.threads), 3) if seconds > 0 else math.nan,
                   cpu_ms=1e3 * statistics.median(cpu), setting=setting,
                   measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def _once(run: Callable[[], object], sync: Callable[[], object] | None) -> tuple[float, float]:
    """(wall, process CPU) seconds for one call (asynchronous work waited for)."""
    start, cpu = time.perf_counter(), time.process_time()
    run()
    if sync is not None:
        sync()
    return time.perf_counter() - start, time.process_time() - cpu


def _warm_up(run: Callable[[], object], sync: Callable[[], object] | None) -> int:
    """WARMUP_RUNS runs and WARMUP_S seconds, whichever ends later, but at most 10 x WARMUP_S
    (a slow network: one run at least); the runs made."""
    start, runs = time.perf_counter(), 0
    while True:
        _once(run, sync)
        runs += 1
        spent = time.perf_counter() - start
        if (runs >= WARMUP_RUNS and spent >= WARMUP_S) or spent >= 10 * WARMUP_S:
            return runs


def _timed_runs(run: Callable[[], object], sync: Callable[[], object] | None, target: float,
                max_seconds: float) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds per run, until the median's relative CI half-width is within `target`,
    or the time or run cap."""
    times: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while True:
        wall, used = _once(run, sync)
        times.append(wall)
        cpu.append(used)
        n = len(times)
        if n >= MIN_RUNS and n % 5 == 0 and relative_spread(times) <= target:
            break
        if n >= MAX_RUNS or (n >= 3 and time.perf_counter() - start >= max_seconds):
            break
    return times, cpu


def latency_of(model, spec_id: str, setting: Setting, config: LatencyConfig, *,
               use_cache: bool = True) -> Latency:
    """The cached latency of `spec_id` under `setting`, else measured in quiet (and cached)."""
    from explorer.latency import cache as latency_cache
    from explorer.latency import quiet

    key = latency_cache.key(spec_id, asdict(setting))
    if use_cache:
        hit = latency_cache.lookup(key)
        if hit is not None:
            return replace(Latency.from_dict(hit), cached=True)
    with quiet.measuring() as calm:
        lat = measure(model, setting, target_spread=config.target_spread, max_seconds=config.max_seconds,
                      quiet=calm)
    if calm:  # a measurement beside our own training is kept with its trial, not reused
        latency_cache.store(key, lat.to_dict())
    return lat

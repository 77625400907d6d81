"""The machine and code a result comes from: the device to train on, its threads, package versions, git revision.

Threads are chosen, not inherited (`use_threads`): torch's default intra-op pool has one
thread per core, and on a machine other programs also use those threads wait on each other
(measured on a 2-core machine beside a 2-process CPU hog: one thread trained 457-535 img/s,
two threads 100-187). The thread count also changes a trial's floating-point result, so it
is a setting of the study (`trainer.threads`, default 1), never a function of the load. The
`explorer` command sets OMP_WAIT_POLICY=PASSIVE before torch loads, so an idle pool thread
sleeps instead of spinning against other processes.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from explorer.core.errors import UserError


def default_device() -> str:
    """cuda when available, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str | None) -> str:
    """The device to train on (default_device() for None); UserError for one that is not here."""
    import torch

    if name is None:
        return default_device()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "mps"):
        raise UserError(f"--device {name}: unsupported device type {dev.type!r}; use cpu or cuda")
    return name


_interop_set = False


def use_threads(n: int | None) -> None:
    """Run torch on `n` intra-op threads (None: leave as is) and one inter-op thread.

    torch accepts the inter-op setting only before any parallel work has started, so it is
    tried once and skipped quietly where torch refuses it (it shapes no result).
    """
    global _interop_set
    import torch

    if not _interop_set:
        _interop_set = True
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    if n is not None and torch.get_num_threads() != n:
        torch.set_num_threads(int(n))


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("explorer", "torch", "torchvision", "optuna", "fvcore", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_revision() -> str:
    """The project's git revision (with +dirty), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]  # the repository (explorer/core/ -> its root)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"

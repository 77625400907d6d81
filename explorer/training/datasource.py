"""Where the images come from: one rule for `explorer run`, `worker`, `train` and `calibrate`.

--data > $EXPLORER_DATA > the stored source (a study's data.source, an export's
provenance) when it is a dataset name or exists on this machine (a stored path may be
another machine's) > the CIFAR-10 archive beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from explorer.core.errors import UserError

ARCHIVE_NAME = "shared/datasets/cifar10-jpeg.tar.gz"
DATASET_NAMES = ("cifar10", "cifar100", "synthetic")  # also NAME:ROOT, e.g. cifar10:/data/cifar
ENV = "EXPLORER_DATA"


def default_archive() -> Path:
    """../shared/datasets/cifar10-jpeg.tar.gz beside the repository."""
    return Path(__file__).resolve().parents[3] / ARCHIVE_NAME  # explorer/training/ -> beside the repo


def is_dataset_name(source: str) -> bool:
    """cifar10, cifar100, synthetic, or NAME:ROOT (torchvision's datasets)."""
    return source.split(":", 1)[0] in DATASET_NAMES


def available(source: str) -> bool:
    """A dataset name, or a path that exists on this machine."""
    return is_dataset_name(source) or Path(source).exists()


def dataset_name(source: object) -> str:
    """'cifar10' for cifar10 / cifar10:ROOT, the file or folder name for a path; '' if unknown."""
    if not isinstance(source, str) or not source:
        return ""
    return source.split(":")[0] if is_dataset_name(source) else Path(source.rstrip("/")).name


def given_source(cli: str | os.PathLike | None) -> str | None:
    """The source the user named: `cli` (--data, or a caller's argument), else $EXPLORER_DATA; None if neither."""
    if cli not in (None, ""):
        return os.fspath(cli)
    return os.environ.get(ENV) or None


def resolve_source(cli: str | None, stored: str | None, *, missing: str) -> str:
    """The data source to load (see the module docstring); UserError `missing` when there is none.

    A --data or $EXPLORER_DATA value is taken as given (require() checks it where that must
    happen before other checks).
    """
    named = given_source(cli)
    if named:
        return named
    if stored and available(stored):
        return stored
    if default_archive().exists():
        return str(default_archive())
    raise UserError(missing)


def require(source: str) -> str:
    """`source`, or a one-line UserError when it is a path that does not exist here."""
    if not available(source):
        raise UserError(f"data not found at {source}; pass --data PATH or set {ENV}")
    return source

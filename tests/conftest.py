"""Shared fixtures: the CIFAR-10 JPEG archive beside the repository (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

CIFAR_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    """Path to ../shared/datasets/cifar10-jpeg.tar.gz; the test is skipped when it is absent."""
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR_ARCHIVE} (see ../shared/datasets/README.md)")
    return CIFAR_ARCHIVE

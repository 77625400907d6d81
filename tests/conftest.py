"""Shared fixtures: the CIFAR-10 JPEG archive beside the repository (skipped when absent).

The tests run on one torch thread, as trials do (`trainer.threads`, default 1): tests that
call the trainer directly would otherwise take torch's default of one thread per core, which
on a busy 2-core machine trains several times slower (see docs/studies.md, "Threads").
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (children inherit it)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A runner that starts the tests in the background (`cmd &` without job control) hands them
# SIGINT ignored, and Python then never raises KeyboardInterrupt, nor do the processes the
# tests start (an ignored signal stays ignored across exec). The Ctrl-C tests need SIGINT as
# a terminal delivers it: restore Python's handler (children then start with the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest

from explorer.training.datasource import default_archive

CIFAR_ARCHIVE = default_archive()


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    """Path to ../shared/datasets/cifar10-jpeg.tar.gz; the test is skipped when it is absent."""
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR_ARCHIVE} (see ../shared/datasets/README.md)")
    return CIFAR_ARCHIVE

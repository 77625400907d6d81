"""The trainer's numbers are pinned: a study under way must stay reproducible by later code.

tests/data/trainer_bits.json holds what tests/_trainer_bits.py computed with the trainer of commit
64ee44f (the one the quickstart space's tabular benchmark is trained with): two networks trained
directly and a two-trial study, every val_acc, curve, val_loss and train_loss. Any change to the
random draws, the order of operations or the arithmetic of training or evaluation changes them.
They depend on torch's version and the CPU kernels it picks, so elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trainer_bits import compute, environment  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "trainer_bits.json"


@pytest.mark.slow
def test_trainer_numbers_are_bit_identical_to_the_pinned_ones(cifar_archive):
    want = json.loads(GOLDEN.read_text())
    if want["environment"] != environment():
        pytest.skip(f"pinned on {want['environment']}, this is {environment()}: rerun "
                    "`python tests/_trainer_bits.py OUT.json` with the pinned commit here to compare")
    got = compute(cifar_archive)
    assert got["train"] == want["train"]
    assert got["study"] == want["study"]

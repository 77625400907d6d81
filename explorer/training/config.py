"""The trainer's settings and their defaults, in one place; no torch.

`TrainerConfig` is a study's recipe: what a study file's `trainer:` section sets (checked
against explorer.study.configcheck.TRAINER_LIMITS), stored with the study and with every
export, and given back to the trainer by trials, retraining, calibration and fidelity runs.
`TrainSettings` adds the trainer's own choices, which no study file sets.
`explorer.training.train.train(model, data, **settings)` takes any field of `TrainSettings`;
a field left out has its default here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainerConfig:
    """A study's trainer settings (its recipe): keyword arguments of explorer.training.train.train."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate: linear warm-up to it, then linear decay to 0 per step
    momentum: float = 0.9  # SGD's, Nesterov when > 0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    time_budget_s: float | None = None  # a guard against runaway runs: wall time, evaluation included
    seed: int = 0  # dropout, shuffles and augmentation (the initial weights: explorer.design.model.seeded_model)
    threads: int | None = 1  # torch intra-op threads; None: as they are (explorer.core.runtime.use_threads)


@dataclass(frozen=True)
class TrainSettings(TrainerConfig):
    """Every setting of explorer.training.train.train: a study's recipe and the trainer's own choices."""

    warmup: float = 0.1  # fraction of the steps spent ramping the learning rate up
    crop_pad: int | None = None  # reflect padding of the random crop; None: 4 pixels per 32 of resolution
    flip: bool = True  # random horizontal flips
    ema: float | None = None  # per-step decay of a weight average used for evaluation; None: off
    tta: bool = False  # evaluation averages each image with its mirror
    compile: bool = False  # torch.compile the model
    channels_last: bool = True
    eval_batch_size: int = 1024

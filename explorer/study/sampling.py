"""The study's sampler, seeded per trial: trial N is proposed with the seed (study seed, N).

One seed per process made every `explorer run` start its sampler afresh: a resumed run
proposed the first points again, and two processes on one study proposed the same ones.
Here each trial's proposal draws from a sampler made for that trial, seeded from the
study's sampler seed and the trial's number (`trial_seed`), so a resumed run, a second
process, `--jobs` and workers all propose new points, and the same study file and seed
propose the same trial N whichever process asks (given the same finished trials before
it). The seed used is recorded with the trial (user attr `sampler_seed`). A grid keeps the
study's seed (see `make_sampler`).

Optuna's samplers keep their state in the study (TPE reads the finished trials, NSGA-II
its generations from trial system attrs, the grid which points are taken), so a fresh
sampler per trial loses nothing but the random state. NSGA-II under parallel processes:
a trial's generation is fixed when it starts (Optuna: the newest generation with
`population_size` finished trials, plus one), so trials started while a generation is
still running join the current generation (it may hold more than `population_size`
trials) and parents always come from finished generations.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.samplers import BaseSampler

from explorer.study.config import StudyConfig
from explorer.study.space import Space


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` in a study whose sampler seed is `seed` (32 bits)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def base_sampler(config: StudyConfig, space: Space, seed: int) -> BaseSampler:
    """The configured Optuna sampler with this seed."""
    s = config.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "nsga2":
        kw = {"population_size": s.population_size} if s.population_size else {}
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)
    if s.name == "gp":  # Gaussian-process Bayesian optimisation (logEHVI for several objectives)
        kw = {"n_startup_trials": s.n_startup_trials} if s.n_startup_trials else {}
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=False, **kw)
    kw = {"n_startup_trials": s.n_startup_trials} if s.n_startup_trials else {}
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, **kw)


def make_sampler(config: StudyConfig, space: Space) -> BaseSampler:
    """The study's sampler, each trial's proposal seeded from (sampler seed, trial number).

    A grid keeps one seed: it numbers its points in an order shuffled by the seed, so every
    process must share that order; it never proposes a point that is finished or running
    (asked under the study's lock, explorer.store.claim), so a resumed or parallel grid
    proposes new points without per-trial seeds.
    """
    if config.sampler.name == "grid":
        return base_sampler(config, space, config.sampler.seed)
    return TrialSeeded(lambda seed: base_sampler(config, space, seed), config.sampler.seed)


def proposal_seed(config: StudyConfig, number: int) -> int:
    """The seed trial `number` was proposed with (what `make_sampler`'s sampler used)."""
    return config.sampler.seed if config.sampler.name == "grid" else trial_seed(config.sampler.seed, number)


class TrialSeeded(BaseSampler):
    """A sampler that asks, for trial N, a fresh sampler made with `trial_seed(seed, N)`."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self.seed = make, seed
        self._number: int | None = None
        self.inner = make(seed)

    def for_trial(self, number: int) -> BaseSampler:
        """The sampler proposing trial `number` (made on first use)."""
        if number != self._number:
            self.inner, self._number = self._make(trial_seed(self.seed, number)), number
        return self.inner

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return self.for_trial(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return self.for_trial(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self.for_trial(trial.number).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.for_trial(trial.number).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.for_trial(trial.number).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's seed comes from its number."""

    def is_exhausted(self, study) -> bool:
        """A grid study has visited every point (other samplers: never)."""
        exhausted = getattr(self.inner, "is_exhausted", None)
        return bool(exhausted(study)) if exhausted else False

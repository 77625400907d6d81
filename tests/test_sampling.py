"""Sampler seeds per trial: a resumed or second process proposes new points, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.study.sampling import trial_seed

from test_study import BASE, FakeTrainer, config, run, trials

SPACE = dict(BASE["space"], base_e={"choices": [16, 24, 32, 40, 48, 56, 64]}, sr={"choices": [0.25, 0.5]})


def test_trial_seed_is_numpys_seed_sequence_of_study_seed_and_number():
    assert trial_seed(0, 5) == int(np.random.SeedSequence([0, 5]).generate_state(1)[0])
    assert len({trial_seed(s, n) for s in range(3) for n in range(50)}) == 150


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_a_resumed_run_proposes_new_points(tmp_path, sampler):
    # issue 13.2: `run --n-trials 3` then `--n-trials 6` on an NSGA-II study gave 6 trials and
    # 3 networks (the second run's sampler started again from the same seed).
    kw = {"population_size": 4} if sampler == "nsga2" else {}
    cfg = config(space=SPACE, sampler={"name": sampler, "seed": 0, **kw})
    url = str(tmp_path / "s.journal")
    run(cfg, url, FakeTrainer(), n_trials=3)
    second = FakeTrainer()
    run(cfg, url, second, n_trials=6)
    done = trials(url)
    trained = [t for t in done if t.user_attrs.get("duplicate_of") is None]
    assert len(second.calls) == 3 and len(trained) == 6
    assert len({t.user_attrs["spec_id"] for t in trained}) == 6
    assert [t.user_attrs["sampler_seed"] for t in done] == [trial_seed(0, t.number) for t in done]


def test_proposals_are_reproducible_across_runs_and_interruptions(tmp_path):
    cfg = config(space=SPACE, sampler={"name": "tpe", "seed": 3, "n_startup_trials": 2})
    one, two = str(tmp_path / "one.journal"), str(tmp_path / "two.journal")
    run(cfg, one, FakeTrainer(), n_trials=5)
    for n in (2, 4, 5):  # the same study in three runs: the same points in the same order
        run(cfg, two, FakeTrainer(), n_trials=n)
    assert [t.params for t in trials(one)] == [t.params for t in trials(two)]


def test_a_grid_proposes_each_point_once_across_runs(tmp_path):
    cfg = config(space=SPACE, sampler={"name": "grid", "seed": 0})
    url = str(tmp_path / "s.journal")
    for n in (3, 7, 14):
        run(cfg, url, FakeTrainer(), n_trials=n)
    done = trials(url)
    assert len(done) == 14 and len({tuple(sorted(t.params.items())) for t in done}) == 14
    assert all(t.user_attrs["sampler_seed"] == 0 for t in done)

"""The search space: the only caller of trial.suggest_*; grids, encodings, random draws."""

from __future__ import annotations

import random

import optuna
import pytest

from explorer.design.spec import SqueezeSpec, spec_id
from explorer.study.config import StudyConfig
from explorer.study.space import Space, decode_pools, encode_pools

CONFIG = {
    "name": "s", "n_trials": 1,
    "space": {"stem": "cifar", "base_e": {"low": 16, "high": 64, "step": 16},
              "sr": {"low": 0.125, "high": 0.375, "step": 0.125},
              "pct_3x3": {"choices": [0.25, 0.5]},
              "pools": {"choices": [[3, 1], [2]]}, "n_fire": 4, "batchnorm": True},
}


def space() -> Space:
    return Space.from_config(StudyConfig.from_dict(CONFIG), num_classes=10)


def test_pools_round_trip_through_text():
    for pools in [(0, 3, 7), (), (5,)]:
        assert decode_pools(encode_pools(pools)) == pools
    assert encode_pools((1, 3)) == "1,3" and encode_pools(()) == "none"


def test_grid_lists_every_value_in_file_terms():
    s = space()
    grid = s.grid()
    assert grid["base_e"] == [16, 32, 48, 64]
    assert grid["sr"] == [0.125, 0.25, 0.375]  # not 0.37500000000000006
    assert grid["pools"] == ["1,3", "2"]  # lists are sorted, as the spec sorts them
    assert s.grid_size() == 4 * 3 * 2 * 2


def test_suggest_builds_the_spec_with_fixed_knobs_and_dataset_fields():
    s = space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    values = s.suggest(trial)
    assert set(values) == {"base_e", "sr", "pct_3x3", "pools"}
    spec = s.spec(values)
    assert (spec.stem, spec.n_fire, spec.batchnorm, spec.num_classes, spec.input_size) == ("cifar", 4, True, 10, 32)
    assert spec.pools in ((1, 3), (2,))
    assert trial.params["pools"] in ("1,3", "2")  # Optuna stores the text form


def _run_grid(s: Space) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(s.grid(), seed=0))
    chosen = []

    def objective(trial):
        chosen.append(s.suggest(trial))
        return 0.0

    study.optimize(objective, n_trials=s.grid_size() + 5)  # GridSampler stops when exhausted
    return chosen


def test_grid_sampler_visits_every_point_once():
    s = space()
    chosen = _run_grid(s)
    assert len(chosen) == s.grid_size()
    assert len({spec_id(s.spec(v)) for v in chosen}) == s.grid_size()


def test_stepped_floats_keep_their_decimal_spelling():
    assert {v["sr"] for v in _run_grid(space())} == {0.125, 0.25, 0.375}


def test_random_draws_stay_inside_the_space():
    s = space()
    rng = random.Random(0)
    for _ in range(200):
        v = s.sample(rng)
        assert v["base_e"] in (16, 32, 48, 64) and v["sr"] in (0.125, 0.25, 0.375)
        assert isinstance(s.spec(v), SqueezeSpec)


def test_log_int_range_draws_integers():
    cfg = dict(CONFIG, space={"base_e": {"low": 8, "high": 256, "log": True}, "stem": "cifar"})
    s = Space.from_config(StudyConfig.from_dict(cfg))
    rng = random.Random(0)
    draws = [s.sample(rng)["base_e"] for _ in range(300)]
    assert all(isinstance(d, int) and 8 <= d <= 256 for d in draws)
    assert sum(d < 45 for d in draws) > 100  # log-uniform: half the draws below sqrt(8*256)=45


@pytest.mark.parametrize("bad", [{"pools": {"choices": [[1, 1]]}}, {"stem": "v2"}])
def test_bad_values_are_refused(bad):
    from explorer.core.errors import UserError

    with pytest.raises(UserError):
        StudyConfig.from_dict(dict(CONFIG, space=dict(CONFIG["space"], **bad)))

"""Parameter importances from trials already read (explorer.results.importance over explorer.store.memory)."""

from __future__ import annotations

import warnings

import optuna
import pytest

from explorer import store
from explorer.results.importance import importances
from explorer.store.memory import study_of

import _studyfactory as factory


def test_importances_equal_optunas_over_the_stored_study(tmp_path):
    journal = factory.make_storage(tmp_path / "r.journal", {"r": 80})
    storage = store.open_storage(str(journal), read_only=True)
    rec = store.read_study(storage, "r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = optuna.importance.get_param_importances(
            optuna.load_study(study_name="r", storage=storage), target=lambda t: 1 - t.user_attrs["val_acc"])
    got = importances(rec.frozen_trials, "val_acc", rec.directions)
    assert got == pytest.approx(expected) and list(got) == list(expected)


def test_the_study_holds_the_given_trials_and_takes_no_new_ones(tmp_path):
    trials = factory.random_trials(5, seed=1)
    study = study_of(trials, ["maximize", "minimize"])
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    got = study.get_trials(deepcopy=False)
    assert len(got) == 5 and all(a is b for a, b in zip(got, trials))  # not copied
    with pytest.raises(store.StorageError, match="only reads"):
        study.ask()


def test_too_few_distinct_trials_is_a_clear_error():
    same = [factory.trial(i, {"sr": 0.25, "pct_3x3": 0.5, "base_e": 16, "pools": "1,4", "bypass": "none"}, 0.5)
            for i in range(3)]
    with pytest.raises(ValueError, match="at least two completed trials with different params"):
        importances(same, "val_acc", ["maximize", "minimize"])

"""An Optuna Study over trials already read, so Optuna's analyses (parameter importances) need no second read.

Reading a study again through Optuna took about 29 s at 10,000 SQLite trials (docs/dashboard.md), and
copying read trials into an in-memory study another 6 to 11 s (Optuna deep-copies each trial it
adds). This study answers trial reads from the given FrozenTrials as they are; it is for reading:
adding a trial to it is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence

from optuna.storages import InMemoryStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from explorer.store.journal import StorageError


class _GivenTrials(InMemoryStorage):
    """An in-memory storage whose one study holds the given trials (trial reads only)."""

    def __init__(self, trials: Sequence[FrozenTrial]) -> None:
        super().__init__()
        self._given = list(trials)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self._given if states is None else [t for t in self._given if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        raise StorageError("this study only reads the trials it was given; open the storage to add trials")


def study_of(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> Study:
    """A Study holding `trials` (not copied) with the given directions ('maximize' / 'minimize')."""
    storage = _GivenTrials(trials)
    name = "explorer-read-trials"
    storage.create_new_study([StudyDirection[d.upper()] for d in directions], name)
    return Study(study_name=name, storage=storage)

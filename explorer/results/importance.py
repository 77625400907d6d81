"""Which knobs matter for accuracy: Optuna's parameter importances over trials already read."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from optuna.trial import FrozenTrial

from explorer.store.memory import study_of


def importances(trials: Sequence[FrozenTrial], acc_key: str, directions: Sequence[str]) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA) for reaching a high `acc_key`
    (a user attr, e.g. val_acc), over the COMPLETE trials that stored it as a number; largest first.

    The target is the error, 1 - accuracy: PED-ANOVA ranks params by how they lead to low target values
    (and warns that it does; the warning is silenced). ValueError when fewer than two such trials
    differ in their params.
    """
    import optuna

    done = [t for t in trials if t.state.name == "COMPLETE" and isinstance(t.user_attrs.get(acc_key), (int, float))
            and not isinstance(t.user_attrs.get(acc_key), bool)]
    if len({tuple(sorted(t.params.items())) for t in done}) < 2:
        raise ValueError("it needs at least two completed trials with different params")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(
            study_of(done, directions or ["minimize"]), target=lambda t: 1.0 - float(t.user_attrs[acc_key]))

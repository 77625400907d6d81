"""How trials count and which may be on a front (explorer.store.outcome), through status, export and the table.

The study is built by hand (Optuna create_trial into a journal, nothing trains): params grow with the
trial number, so the fronts are worked out in the comments.
"""

from __future__ import annotations

import numpy as np
from optuna.trial import TrialState

from explorer import store
from explorer.commands import main
from explorer.results.selection import select_trials
from explorer.store.table import comparable, outcome_counts

from test_export import CIFAR8, attrs, make_study

C, P = TrialState.COMPLETE, TrialState.PRUNED


def rows() -> list[tuple]:
    """#0 (100 params) died at chance and #1 (150) diverged: the smallest, so without the rule they would
    be front points. #2 (200, 0.50), #3 (300, 0.60) trained; #4 repeats #3 (a duplicate); #5 was over the
    study's budget (never trained). The front of the trainable networks is #2, #3."""
    return [(C, attrs(CIFAR8, params=100, macs=10, acc=0.10, end="dead")),
            (C, attrs(CIFAR8, params=150, macs=15, acc=0.0, end="diverged")),
            (C, attrs(CIFAR8, params=200, macs=20, acc=0.50)),
            (C, attrs(CIFAR8, params=300, macs=30, acc=0.60)),
            (C, attrs(CIFAR8, params=300, macs=30, acc=0.60, duplicate_of=3)),
            (P, attrs(CIFAR8, params=900, macs=90, acc=None, infeasible=True, over_budget="params > 500"))]


def test_outcome_keys_and_words():
    assert store.counts_text({"COMPLETE": 16, store.DUPLICATE_STATE: 2}) == "16 networks trained, 2 duplicates (reused)"
    assert store.counts_text({store.CUT_STATE: 1, "COMPLETE": 1, store.OVER_BUDGET_STATE: 3, "FAIL": 2}) == (
        "1 network trained, 3 over budget (not trained), 1 cut by the time budget, 2 failed")
    assert store.counts_text({}) == "no trials"
    assert store.outcome_key("COMPLETE", {"duplicate_of": 3}) == store.DUPLICATE_STATE
    assert store.outcome_key("COMPLETE", {"duplicate_of": float("nan")}) == "COMPLETE"  # the table's missing
    assert store.outcome_key("PRUNED", {"infeasible": True, "end": "pruned"}) == store.OVER_BUDGET_STATE
    assert store.outcome_key("PRUNED", {"end": "time_budget"}) == store.CUT_STATE
    assert store.outcome_key("PRUNED", {"end": "rung", "rung": 2}) == store.RUNG_STATE + "2"  # a schedule's rung 2
    assert store.counts_text({"RUNG2": 3, "COMPLETE": 4, "RUNG1": 9, store.DUPLICATE_STATE: 1}) == (
        "4 networks trained, 1 duplicate (reused), 9 stopped at rung 1, 3 stopped at rung 2")


def test_dead_and_diverged_trials_are_off_every_front_unless_asked(tmp_path, capsys):
    journal = make_study(tmp_path / "o.journal", "o", rows())
    rec = store.read_study(store.open_storage(str(journal)), "o", url=str(journal))
    table = store.trial_table(rec)
    assert comparable(table).tolist() == [False, False, True, True, False, False]
    assert comparable(table, untrainable=True).tolist() == [True, True, True, True, False, False]
    assert [t.number for t in select_trials(rec, pareto=True)] == [2, 3]  # export's front
    assert main(["status", "o", "--storage", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "trials: 4 networks trained, 1 duplicate (reused), 1 over budget (not trained)" in out
    assert "2 dead or diverged (could not train; not on the front)" in out
    assert "Pareto front (max val_acc, min params): 2 of 2 trained trials" in out
    assert "   #0 " not in out and "   #1 " not in out


def test_the_table_counts_as_the_run_summary_does(tmp_path):
    journal = make_study(tmp_path / "o.journal", "o", rows())
    storage = store.open_storage(str(journal))
    table = store.trial_table(store.read_study(storage, "o"))
    frozen = storage.get_all_trials(storage.get_study_id_from_name("o"))
    summary: dict[str, int] = {}
    for t in frozen:  # what `explorer run` does with each trial it ran
        summary[store.state_key(t)] = summary.get(store.state_key(t), 0) + 1
    assert outcome_counts(table) == summary == {"COMPLETE": 4, store.DUPLICATE_STATE: 1, store.OVER_BUDGET_STATE: 1}
    assert np.array_equal(comparable(table), [t.trained for t in store.read_study(storage, "o").trials])

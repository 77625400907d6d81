"""Multi-fidelity schedules: the rank rule (hand-computed cases), the study file's `schedule:`,
trials stopped at a rung (stored, counted apart, off the front, reused by duplicates, one decision
per network and rung), and replays on the table: fewer epochs, the same front."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from explorer import store
from explorer.core.errors import UserError
from explorer.study.config import StudyConfig, load_config
from explorer.study.schedule import Schedule, crowding, decide, nondominated_ranks, parse_keep, rung_order

sys.path.insert(0, str(Path(__file__).parent))
from test_tabular import QUICKSTART, fake_table  # noqa: E402

from test_study import BASE, FakeTrainer, run, trials  # noqa: E402

# --- the rule, by hand ---------------------------------------------------------------------------


def test_nondominated_ranks_by_hand():
    # every column minimised: three on the first front; (2,3) is dominated by (1,3) and (2,2) only;
    # (3,3) by (2,3) too, so one more; (4,4) by everything
    v = [(1, 3), (2, 2), (3, 1), (2, 3), (3, 3), (4, 4)]
    assert nondominated_ranks(np.array(v)).tolist() == [0, 0, 0, 1, 2, 3]
    assert nondominated_ranks(np.array([(1, 1), (1, 1)])).tolist() == [0, 0]  # equal rows dominate neither


def test_crowding_distance_by_hand():
    assert crowding(np.array([(1, 3), (2, 2), (3, 1)])).tolist() == [math.inf, 2.0, math.inf]
    # (1,2): 3/4 + 3/4; (3,1): 3/4 + 2/4 (each objective's neighbour gap over its span of 4)
    d = crowding(np.array([(0, 4), (1, 2), (3, 1), (4, 0)]))
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.25) and math.isinf(d[0]) and math.isinf(d[3])


# Six networks at one rung (params as powers of ten: log10 sizes 3, 4, 5). a, b, c are the first
# front (b in its middle: crowding 1 + 1); d is dominated by b and c, e by a and b: rank 1 (both
# crowding inf, e the smaller); f by d and e: rank 2. Order: a, c (inf, a smaller), b, e, d, f.
RUNG = {"a": (0.50, 1e3), "b": (0.60, 1e4), "c": (0.70, 1e5), "d": (0.55, 1e5), "e": (0.45, 1e4),
        "f": (0.40, 1e5)}


def _rung(keep: float, me: str):
    names = list(RUNG)
    acc = [RUNG[n][0] for n in names]
    costs = np.array([[RUNG[n][1]] for n in names])
    return names, decide(acc, costs, list(range(len(names))), names.index(me), keep)


def test_the_order_at_a_rung_by_hand():
    names = list(RUNG)
    order, ranks = rung_order([RUNG[n][0] for n in names], np.array([[RUNG[n][1]] for n in names]),
                              list(range(6)))
    assert [names[i] for i in order] == ["a", "c", "b", "e", "d", "f"]
    assert ranks.tolist() == [0, 0, 0, 1, 1, 2]


def test_who_goes_on_by_hand():
    # keep 1/3 of 6: the top 2 (a, c) go on, and b as a member of the rung's first front
    for me, go_on, place in (("a", True, 1), ("c", True, 2), ("b", True, 3), ("e", False, 4), ("d", False, 5),
                             ("f", False, 6)):
        _, d = _rung(1 / 3, me)
        assert (d.go_on, d.place, d.peers, d.kept) == (go_on, place, 6, 2), me
    _, d = _rung(2 / 3, "e")  # keep 2/3: the top 4
    assert d.go_on and d.kept == 4
    _, d = _rung(2 / 3, "d")
    assert not d.go_on and d.place == 5


def test_few_results_keep_the_front_and_small_networks_are_not_starved():
    # two results: floor(2/3) = 0 places, so only the rung's first front goes on
    assert not decide([0.5, 0.4], np.array([[1e3], [1e4]]), [0, 1], 1, 1 / 3).go_on  # dominated
    assert decide([0.5, 0.6], np.array([[1e3], [1e4]]), [0, 1], 1, 1 / 3).go_on  # better, bigger
    assert decide([0.5], np.array([[1e3]]), [0], 0, 1 / 3).go_on  # the first result of a rung
    # ten large accurate networks and one tiny poor one: by accuracy alone it would stop
    acc = [0.8 + 0.01 * i for i in range(10)] + [0.2]
    costs = np.array([[1e5 * (1 + i)] for i in range(10)] + [[1e3]])
    d = decide(acc, costs, list(range(11)), 10, 1 / 3)
    assert d.go_on and d.rank == 0


def test_a_third_of_three_is_one():
    d = decide([0.9, 0.5, 0.4], np.array([[1e3], [1e3], [1e3]]), [0, 1, 2], 1, 1 / 3)
    assert d.kept == 1 and not d.go_on  # 3 x (1/3 as a float) must not floor to 0


# --- the study file ------------------------------------------------------------------------------

def _cfg(**changes) -> StudyConfig:
    return StudyConfig.from_dict({**BASE, "check_fvcore": False, **changes})


def test_the_schedule_section_parses_and_round_trips():
    cfg = _cfg(schedule={"rungs": [1, 2], "keep": "1/3"})
    assert cfg.schedule == Schedule((1, 2), 1 / 3, "asha")
    assert StudyConfig.from_dict(cfg.to_dict()).schedule == cfg.schedule  # a worker reads it from storage
    assert _cfg(schedule=None).schedule is None and "schedule" not in _cfg().to_dict()
    assert parse_keep("1 / 4") == 0.25 and parse_keep(0.5) == 0.5 and parse_keep(True) is None
    assert cfg.schedule.rung_at(2) == 2 and cfg.schedule.rung_at(3) is None


@pytest.mark.parametrize("schedule, words", [
    ({"rungs": [2, 1]}, "schedule.rungs: must be a list of increasing epochs"),
    ({"rungs": []}, "schedule.rungs: must be a list"),
    ({"keep": 0.5}, "schedule.rungs: must be a list"),
    ({"rungs": [1, 3]}, "rung epoch 3 is not below trainer.epochs (3)"),
    ({"rungs": [1], "keep": 1}, "schedule.keep: must be a share in (0, 1)"),
    ({"rungs": [1], "keep": "a/b"}, "schedule.keep: must be a share"),
    ({"rungs": [1], "kind": "hyperband"}, "schedule.kind: unknown kind 'hyperband'"),
    ({"rungs": [1], "eta": 3}, "schedule.eta: unknown key"),
])
def test_a_bad_schedule_is_one_line(schedule, words):
    with pytest.raises(UserError) as err:
        _cfg(schedule=schedule)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_schedule_and_early_stopping_exclude_each_other():
    with pytest.raises(UserError, match="schedule: and early_stop both stop trials early"):
        _cfg(schedule={"rungs": [1]}, early_stop=True)


# --- trials stopped at a rung, for real through explorer run's loop -------------------------------------

def _acc(params, epoch):
    """Below 8,000 parameters a larger network is more accurate (a trade-off: none dominates another);
    above, all are worse than every small one, so they are dominated at every epoch."""
    return (0.6 + params / 1e6 if params < 8000 else 0.3) * (epoch + 1) / 3


def test_stopped_trials_are_stored_counted_apart_and_off_the_front(tmp_path):
    from explorer.commands.status import report
    from explorer.store.table import comparable, read_trials

    url = str(tmp_path / "s.journal")
    cfg = _cfg(sampler={"name": "grid", "seed": 0}, n_trials=6, schedule={"rungs": [1], "keep": "1/3"})
    trainer = FakeTrainer(acc=_acc)
    summary = run(cfg, url, trainer)
    got = trials(url)
    stopped = [t for t in got if t.state == TrialState.PRUNED]
    complete = [t for t in got if t.state == TrialState.COMPLETE]
    assert stopped and complete and len(got) == 6 == store.count_done(optuna.load_study(
        study_name="t", storage=store.open_storage(url)))  # a stopped trial counts toward n_trials
    for t in stopped:
        a = t.user_attrs
        assert (a["end"], a["rung"], len(a["curve"])) == ("rung", 1, 1)
        assert a["pruned_reason"].startswith("stopped at rung 1 (epoch 1): val_acc")
        assert [e["go_on"] for e in a["rungs"]] == [False] and a["rungs"][0]["rank"] >= 1
    for t in complete:
        assert len(t.user_attrs["curve"]) == 3 and [e["go_on"] for e in t.user_attrs["rungs"]] == [True]
    small = [t for t in got if t.user_attrs["params"] < 8000]
    assert all(t.state == TrialState.COMPLETE for t in small)  # never dominated: always on the rung's front
    assert summary.states == {"COMPLETE": len(complete), "RUNG1": len(stopped)}
    assert f"{len(stopped)} stopped at rung 1" in summary.counts_text()
    table = read_trials(store.open_storage(url), "t")
    assert set(table.loc[comparable(table), "number"]) == {t.number for t in complete}
    assert table["rung"].notna().sum() == len(stopped)
    text = report(table, "t", url, ["val_acc", "params"])
    assert f"{len(stopped)} stopped at rung 1" in text
    assert f"rung 1 (epoch 1): 6 networks judged, {len(complete)} went on" in text
    sys.path.insert(0, str(Path(__file__).parents[1]))  # dashboards/ is not an installed package
    from dashboards import figures

    caption = figures.rung_caption(table)
    assert caption.startswith(f"Multi-fidelity schedule: {len(complete)} trained the whole recipe; "
                              f"{len(stopped)} stopped at a rung ({len(stopped)} at rung 1)")
    ends = figures.ending(table)
    assert set(ends[table["rung"].notna().to_numpy()]) == {"ended: stopped at rung 1"}
    assert set(ends[table["rung"].isna().to_numpy()]) == {"ended: completed"}


def test_a_duplicate_of_a_stopped_trial_is_not_trained_again(tmp_path):
    url = str(tmp_path / "s.journal")
    cfg = _cfg(n_trials=6, schedule={"rungs": [1], "keep": "1/3"}, sampler={"name": "random", "seed": 1})
    trainer = FakeTrainer(acc=_acc)
    run(cfg, url, trainer)
    got = trials(url)
    dups = [t for t in got if t.user_attrs.get("duplicate_of") is not None]
    by_number = {t.number: t for t in got}
    stopped_dups = [t for t in dups if by_number[t.user_attrs["duplicate_of"]].state == TrialState.PRUNED]
    assert stopped_dups, "the random sampler proposes the 6 networks more than once (seed 1)"
    for t in stopped_dups:
        assert t.state == TrialState.PRUNED and t.user_attrs["end"] == "rung"
        assert t.user_attrs["pruned_reason"].startswith(f"duplicate of #{t.user_attrs['duplicate_of']}")
    assert len(trainer.calls) == 6  # each network trained once


def test_a_network_is_judged_once_per_rung():
    """A retry (its first run killed after the rung) or a second run of the same network follows
    the first decision instead of being judged again."""
    from explorer.study.rungs import RungGate

    cfg = _cfg(schedule={"rungs": [1], "keep": "1/3"})
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=cfg.directions)
    gate = RungGate(study, cfg)

    def started(spec_id: str, params: int):
        t = study.ask()
        store.set_trial_attrs(store.study_storage(study), store.trial_id(t), {"spec_id": spec_id, "params": params})
        return t

    first = started("aaaa", 1000)
    assert gate.judge(first, 1, 0.5) is None  # alone at the rung: goes on
    study.tell(first, state=TrialState.FAIL)  # killed after the rung
    better = started("bbbb", 1000)
    assert gate.judge(better, 1, 0.9) is None
    retry = started("aaaa", 1000)
    assert gate.judge(retry, 1, 0.5) is None  # dominated by bbbb now, yet it follows its first decision
    entry = study.trials[retry.number].user_attrs["rungs"][0]
    assert entry["follows"] == first.number and entry["go_on"]
    late = started("cccc", 1000)
    stop = gate.judge(late, 1, 0.1)
    assert stop is not None and stop.rung == 1 and "places 3 of 3 networks" in stop.reason
    assert gate.judge(late, 2, 0.1) is None  # not a rung: nothing recorded
    assert len(study.trials[late.number].user_attrs["rungs"]) == 1


# --- replays on the table ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quickstart_table():
    cfg = load_config(QUICKSTART)
    cfg = replace(cfg, trainer=replace(cfg.trainer, epochs=4))
    return cfg, fake_table(cfg)


@pytest.mark.parametrize("sampler, population", [("random", None), ("nsga2", 8)])
def test_a_replay_uses_fewer_epochs_and_keeps_the_front(quickstart_table, sampler, population):
    """On a table whose epochs rank networks as the last one does, a network on the front of the
    proposals is on the first front of every rung it reaches, so it always trains to the end (recall 1);
    the random sampler proposes the same networks either way, so the front is the full search's."""
    from explorer.tabular import multifidelity as M

    cfg, table = quickstart_table
    r = M.compare_one((cfg, table, sampler, population, 2, 48, 200_000, Schedule((1, 2), 1 / 3)))
    assert r["recall"] == 1.0
    assert r["epochs_mf"] < 0.8 * r["epochs_full"] == 0.8 * 48 * 4
    assert sum(r["stopped"].values()) + r["completed_mf"] == 48
    if sampler == "random":
        assert r["hv_ratio"] == pytest.approx(1.0)


def test_the_bench_runs_on_a_written_table(tmp_path, quickstart_table):
    import json
    import subprocess

    from explorer.tabular.tablefile import write_table

    cfg, table = quickstart_table
    path = tmp_path / "t.csv.gz"
    write_table(table.df, path, {"study": "fake"})
    out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "bench/multifidelity.py"), "--table",
                          str(path), "--seeds", "2", "--n-trials", "24", "--jobs", "1"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    row = figures["replay"]["24"]
    assert row["seeds"] == 2 and 0 < row["epochs_ratio"]["median"] < 1


def test_the_selection_bound_by_hand(quickstart_table):
    """Rung 1 of 4 epochs at 0.4x the epochs leaves 0.25 + 0.75 x share = 0.4, share 0.2 (hand
    computation). On the fake table epoch 1 ranks networks exactly as epoch 4 does, so ranking by it
    keeps the whole front (recall 1, HV ratio 1), as the final accuracy itself does; with epoch 1's
    accuracies turned upside down it keeps little of the front, while the oracle still keeps all."""
    from explorer.tabular import multifidelity as M
    from explorer.tabular.tablefile import Table

    _, table = quickstart_table
    out = M.selection_bound(table, sizes=(64,), draws=20)
    assert out["share_kept"] == pytest.approx(0.2) and out["64"]["kept"] == 12
    for name in ("val_acc", "oracle"):
        assert out["64"][name] == {"recall": 1.0, "hv_ratio": 1.0}
    flipped = table.df.copy()
    flipped["val_acc_1"] = 1 - flipped["val_acc_1"]
    bad = M.selection_bound(Table(flipped, {}), sizes=(64,), draws=20)["64"]
    assert bad["val_acc"]["recall"] < 0.5 and bad["oracle"]["recall"] == 1.0
    with pytest.raises(ValueError, match="spent by the rung"):
        M.selection_bound(table, rung=2, epochs_ratio=0.5)
    with pytest.raises(ValueError, match="below the table's 4 epochs"):
        M.selection_bound(table, rung=4)

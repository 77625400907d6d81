"""`explorer fidelity`: the long recipe, the sample, storage round trips and resuming, the report, the CLI."""

from __future__ import annotations

import json
import math
import os
import sys
import types
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer.commands import main  # noqa: E402
from explorer.core.errors import UserError  # noqa: E402
from explorer.results import fidelity as fd  # noqa: E402
from explorer.store import open_storage, read_study  # noqa: E402

import _studyfactory as factory  # noqa: E402

PG_URL = os.environ.get("EXPLORER_TEST_PG_URL")
CONFIG = {"name": "f", "trainer": {"epochs": 2, "batch_size": 16, "seed": 3, "time_budget_s": 60},
          "data": {"source": "synthetic", "per_class": 10, "val_per_class": 4, "resolution": 16, "seed": 0}}


class FakeTrainer:
    """Long accuracy from the network's parameter count (a known order); counts calls; may be interrupted."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls, self.kwargs, self.stop_at = 0, [], stop_at

    def __call__(self, model, data, **kw):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.kwargs.append(kw)
        params = sum(p.numel() for p in model.parameters())
        acc = round(0.2 + 0.1 * math.log10(params), 4)
        return types.SimpleNamespace(final_acc=acc, best_acc=acc, val_acc=[acc / 2, acc], train_loss_sum=3.0 - acc,
                                     end="completed", epochs=float(kw["epochs"]), train_seconds=1.0)


def make_study(url: str, name: str = "f", n: int = 12):
    """A study of n random trained trials (tests/_studyfactory) stored at `url` with CONFIG."""
    storage = open_storage(url, create=True)
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["val_acc", "params"])
    study.set_user_attr("config", {**CONFIG, "name": name})
    study.add_trials(factory.random_trials(n, seed=1))
    return storage


# --- the recipe ------------------------------------------------------------------------------------

def test_long_recipe_defaults_to_four_times_the_epochs_without_a_time_budget():
    r = fd.long_recipe(CONFIG)
    assert (r.key, r.factor, r.trainer["epochs"], r.trainer["time_budget_s"]) == ("epochs8", 4, 8, None)
    assert r.trainer["seed"] == 3 and r.data["per_class"] == 10
    more = fd.long_recipe(CONFIG, per_class=40)
    assert (more.key, more.factor, more.data["per_class"]) == ("per_class40", 4, 40)
    res = fd.long_recipe(CONFIG, resolution=32)
    assert (res.key, res.factor, res.data["resolution"]) == ("res32", 4, 32)
    for bad in ({"epochs": 2}, {"per_class": 10}, {"resolution": 8}, {"epochs": 9, "resolution": 32}):
        with pytest.raises(UserError):
            fd.long_recipe(CONFIG, **bad)


# --- the sample --------------------------------------------------------------------------------------

def test_sample_takes_half_from_the_front_and_spreads_the_rest():
    # sizes 1..10 (log-spaced), front = 0, 3, 6, 9 (accuracy rises only there)
    size = [10 ** (i / 3) for i in range(10)]
    acc = [0.30, 0.25, 0.26, 0.40, 0.33, 0.35, 0.50, 0.45, 0.41, 0.60]
    front = [i in (0, 3, 6, 9) for i in range(10)]
    picks = fd.choose_sample(size, acc, front, [False] * 10, 4)
    # In unit coordinates (x = i / 9, y = (acc - 0.25) / 0.35): the most accurate front point #9, then
    # the front point farthest from it, #0; then among the others the farthest from {#9, #0} is #5
    # (0.574 from #0; #8 is 0.554 from #9, #7 0.483, #4 0.452), then #8 (0.375 from #5; #7 0.362).
    assert picks == [9, 0, 5, 8]
    measured = [i in picks for i in range(10)]
    more = fd.choose_sample(size, acc, front, measured, 7)
    assert len(more) == 3 and not set(more) & set(picks)
    assert {3, 6} <= set(more)  # ceil(7 / 2) = 4 front members wanted: the front grows first
    assert fd.choose_sample(size, acc, front, measured, 3) == []
    assert sorted(fd.choose_sample(size, acc, front, [False] * 10, 50)) == list(range(10))


# --- storage round trip and resuming -------------------------------------------------------------------

URLS = [pytest.param("journal", id="journal"), pytest.param("sqlite", id="sqlite"),
        pytest.param("pg", id="postgresql", marks=pytest.mark.skipif(not PG_URL, reason="EXPLORER_TEST_PG_URL "
                                                                     "is not set: no PostgreSQL server"))]


@pytest.mark.parametrize("kind", URLS)
def test_results_round_trip_and_a_killed_run_resumes(tmp_path, kind):
    url = {"journal": str(tmp_path / "f.journal"), "sqlite": f"sqlite:///{tmp_path / 'f.db'}", "pg": PG_URL}[kind]
    name = f"fid-{uuid.uuid4().hex[:8]}"
    storage = make_study(url, name)
    try:
        rec = read_study(storage, name, url=url)
        recipe = fd.long_recipe(rec.config)
        done, todo = fd.plan(rec, recipe, 5)
        assert done == [] and len(todo) == 5
        killed = FakeTrainer(stop_at=3)
        with pytest.raises(KeyboardInterrupt):
            fd.run_fidelity(storage, rec, recipe, todo, types.SimpleNamespace(source="synthetic"), device="cpu",
                            trainer=killed)
        rec = read_study(open_storage(url), name, url=url)  # a fresh reader, as after a restart
        kept = rec.fidelity[recipe.key]
        assert sorted(kept) == sorted(t.number for t in todo[:2])
        first = kept[todo[0].number]
        assert first["recipe"]["trainer"]["epochs"] == 8 and first["end"] == "completed"
        assert first["val_acc"] == pytest.approx(killed.kwargs[0] and first["val_acc"])
        done, rest = fd.plan(rec, recipe, 5)
        assert sorted(t.number for t in done) == sorted(kept) and len(rest) == 3
        assert not {t.number for t in rest} & set(kept)
        again = FakeTrainer()
        fd.run_fidelity(storage, rec, recipe, rest, types.SimpleNamespace(source="synthetic"), device="cpu",
                        trainer=again)
        assert again.calls == 3 and again.kwargs[0]["epochs"] == 8 and again.kwargs[0]["time_budget_s"] is None
        rec = read_study(open_storage(url), name, url=url)
        assert len(rec.fidelity[recipe.key]) == 5 and fd.plan(rec, recipe, 5)[1] == []
        assert rec.fidelity[recipe.key][todo[0].number] == first  # not retrained, not rewritten
    finally:
        if kind == "pg":
            optuna.delete_study(study_name=name, storage=storage)


# --- the report ---------------------------------------------------------------------------------------

def hand_record(long: dict[int, float], losses: dict[int, float] | None = None):
    """Five trials with params rising with the number; stored long results as given."""
    knobs = [dict(sr=0.125, pct_3x3=0.5, base_e=16, pools="1,4", bypass="none"),
             dict(sr=0.25, pct_3x3=0.5, base_e=16, pools="1,4", bypass="none"),
             dict(sr=0.5, pct_3x3=0.5, base_e=16, pools="1,4", bypass="none"),
             dict(sr=0.5, pct_3x3=0.5, base_e=32, pools="1,4", bypass="none"),
             dict(sr=0.5, pct_3x3=0.5, base_e=64, pools="1,4", bypass="none")]
    short = [0.40, 0.45, 0.43, 0.50, 0.55]
    trials = [factory.trial(i, k, a) for i, (k, a) in enumerate(zip(knobs, short))]
    for i, t in enumerate(trials):
        t.user_attrs.pop("acc_std")
        if losses:
            t.user_attrs["train_loss_sum"] = losses[i]
    frozen = [optuna.trial.create_trial(state=t.state, values=t.values, params=t.params,
                                        distributions=t.distributions, user_attrs=t.user_attrs) for t in trials]
    for i, f in enumerate(frozen):
        f.number = i
    from explorer.store.trials import StudyRecord

    return StudyRecord("hand", "", CONFIG, ["val_acc", "params"], frozen, {},
                       {"epochs8": {n: {"val_acc": a, "end": "completed", "recipe": {"change": "epochs 8 instead of 2"}}
                                    for n, a in long.items()}})


def test_report_figures_by_hand():
    stats = pytest.importorskip("scipy.stats")
    long = {0: 0.60, 1: 0.58, 2: 0.66, 3: 0.70, 4: 0.72}  # #1 and #2 swap against the short run
    losses = {0: 9.0, 1: 8.0, 2: 7.5, 3: 7.0, 4: 6.0}  # ranks exactly as long does, but #0 and #1
    rec = hand_record(long, losses)
    rep = fd.report(rec, "epochs8", n_boot=200)
    short, lg = [0.40, 0.45, 0.43, 0.50, 0.55], [long[i] for i in range(5)]
    va = rep["signals"]["val_acc"]
    assert va["spearman"] == pytest.approx(stats.spearmanr(short, lg).statistic, abs=1e-4)
    assert va["kendall"] == pytest.approx(stats.kendalltau(short, lg).statistic, abs=1e-4)
    assert va["spearman_ci"][0] <= va["spearman"] <= va["spearman_ci"][1]
    # short front (params rise with the number): 0, 1, 3, 4; long front: 0, 2, 3, 4
    assert va["short_front"] == [0, 1, 3, 4] and rep["long_front"] == [0, 2, 3, 4]
    assert va["front_precision"] == pytest.approx(3 / 4) and va["front_recall"] == pytest.approx(3 / 4)
    tl = rep["signals"]["train_loss_sum"]
    assert tl["spearman"] == pytest.approx(stats.spearmanr([-v for v in losses.values()], lg).statistic, abs=1e-4)
    assert tl["short_front"] == [0, 1, 2, 3, 4]
    # hypervolume ratio by hand (log10 params, reference 2x the largest and chance 0.1)
    p = np.log10([t.num("params") for t in rec.trials])
    ref = math.log10(2 * 10 ** p[4])

    def hv(idx):
        pts = sorted((p[i], lg[i]) for i in idx)
        best, area = 0.1, 0.0
        for k, (s, a) in enumerate(pts):
            best = max(best, a)
            nxt = pts[k + 1][0] if k + 1 < len(pts) else ref
            area += (nxt - s) * (best - 0.1)
        return area

    assert va["hv_ratio"] == pytest.approx(hv([0, 1, 3, 4]) / hv([0, 2, 3, 4]), abs=1e-4)
    assert va["spearman"] == pytest.approx(0.7)  # ranks 1 3 2 4 5 vs 2 1 3 4 5: 1 - 6 * 6 / 120
    assert rep["tie_points"] == 5.0  # swapped pairs: #0/#1 (40 vs 45 %) and #1/#2 (45 vs 43 %)
    assert rep["export"]["pareto_dropped"] == [1] and rep["export"]["pareto_missed"] == [2]
    assert rep["export"]["pick_short"] is None  # no seed-noise estimate in the study
    with_noise = fd.report(rec, "epochs8", noise_std=0.03, n_boot=50)["export"]
    # within 2 * sqrt(2) * 3 = 8.5 points of the best: short 55 -> #3 (50); long 72 -> #2 (66)
    assert (with_noise["pick_short"], with_noise["pick_long"], with_noise["pick_changes"]) == (3, 2, True)
    assert "rank its networks roughly" in rep["verdict"] and "under 5.0 points" in rep["verdict"]
    assert "training-loss sum ranks better" in rep["verdict"]
    text = fd.format_report(rep)
    assert "Spearman 0.700" in text and "#1" in text and rep["verdict"] in text


def test_verdict_says_too_few_and_poorly():
    few = fd.report(hand_record({0: 0.6, 1: 0.5, 2: 0.7}), "epochs8", n_boot=50)
    assert few["n"] == 3 and "too few" in few["verdict"]
    bad = fd.report(hand_record({0: 0.70, 1: 0.66, 2: 0.68, 3: 0.62, 4: 0.60}), "epochs8", n_boot=50)
    assert bad["signals"]["val_acc"]["spearman"] < 0 and "poorly" in bad["verdict"]
    assert bad["signals"]["train_loss_sum"]["spearman"] is None  # not recorded in these trials (JSON null)
    assert "train_loss_sum: not enough trials with this signal (0)" in fd.format_report(bad)


# --- the command ----------------------------------------------------------------------------------------

def test_cli_measures_reports_and_resumes(tmp_path, monkeypatch, capsys):
    import explorer.training.train

    path = tmp_path / "f.journal"
    make_study(str(path), "f", n=10)
    fake = FakeTrainer()
    monkeypatch.setattr(explorer.training.train, "train", fake)
    assert main(["fidelity", "f", "--storage", str(path), "--sample", "4", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert fake.calls == 4 and rep["n"] == 4 and rep["recipe"] == "epochs8"
    assert set(rep["signals"]["val_acc"]) >= {"spearman", "spearman_ci", "kendall", "front_recall", "hv_ratio"}
    assert main(["fidelity", "f", "--storage", str(path), "--sample", "0"]) == 0  # report only
    out = capsys.readouterr().out
    assert fake.calls == 4 and "4 trial(s) retrained with epochs 8 instead of 2" in out
    assert main(["fidelity", "f", "--storage", str(path), "--sample", "6"]) == 0
    assert fake.calls == 6 and "6 trial(s)" in capsys.readouterr().out
    assert main(["fidelity", "f", "--storage", str(path), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 2 is not more than the study's 2" in err
    assert main(["fidelity", "nope", "--storage", str(path)]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_only_full_short_runs_are_sampled(tmp_path):
    storage = open_storage(str(tmp_path / "e.journal"), create=True)
    study = optuna.create_study(storage=storage, study_name="e", directions=["maximize", "minimize"])
    study.set_user_attr("config", CONFIG)
    trials = factory.random_trials(6, seed=2)
    for t, end in zip(trials, ("time_budget", "dead", "diverged")):
        t.user_attrs["end"] = end
    study.add_trials(trials)
    rec = read_study(storage, "e")
    done, todo = fd.plan(rec, fd.long_recipe(rec.config), 8)
    assert done == [] and sorted(t.number for t in todo) == [3, 4, 5]
    for t in read_study(storage, "e").trials:
        fd.store_result(storage, rec, fd.long_recipe(rec.config), t.number, {"val_acc": 0.5 + t.number / 100})
    rep = fd.report(read_study(storage, "e"), "epochs8", include_cut=True, n_boot=50)
    assert (rep["n"], rep["cut"]) == (4, 1) and "1 of these trials were cut" in rep["verdict"]
    assert fd.report(read_study(storage, "e"), "epochs8", n_boot=50)["cut"] == 0
    _, with_cut = fd.plan(rec, fd.long_recipe(rec.config), 8, include_cut=True)
    assert sorted(t.number for t in with_cut) == [0, 3, 4, 5]  # the time-budget cut one; never dead ones
    cut = optuna.create_study(storage=storage, study_name="c", directions=["maximize", "minimize"])
    trials = factory.random_trials(3, seed=2)
    for t in trials:
        t.user_attrs["end"] = "time_budget"
    cut.add_trials(trials)
    with pytest.raises(UserError, match="3 were cut by the time budget: pass --include-cut"):
        fd.plan(read_study(storage, "c"), fd.long_recipe(rec.config), 8)


"""The space table: its file (round trip, damage said in one line), replays through `explorer run`'s
loop, the zero-cost scores (hand-computed), and a whole small table built twice, bit-identical."""

from __future__ import annotations

import gzip
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from explorer.core.errors import UserError
from explorer.design.cost import estimate_cost
from explorer.design.spec import spec_id
from explorer.study.config import load_config
from explorer.study.space import Space
from explorer.tabular import proxies as P
from explorer.tabular import replay as R
from explorer.tabular.build import Plan, sample, stage_config
from explorer.tabular.tablefile import Table, frame, read_table, sidecar, write_table

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "studies/quickstart.yaml"
TABLE_STUDY = ROOT / "studies/quickstart-table.yaml"


def fake_table(config, epochs: int = 4, seed: int = 0) -> Table:
    """Every network of the study's space with a made-up accuracy that grows with log params."""
    space = Space.from_config(config)
    rng = np.random.default_rng(seed)
    rows = []
    for v in space.grid_points():
        spec = space.spec(v)
        c = estimate_cost(spec)
        acc = 0.2 + 0.05 * math.log10(c.params) + float(rng.normal(0, 0.02))
        r = {"stage": "bench", "epochs": epochs, "seed": 0, "study": "fake", "trial": len(rows),
             **{k: (",".join(map(str, x)) if k == "pools" else x) for k, x in v.items()}, "spec_id": spec_id(spec),
             "params": c.params, "macs": c.macs, "activations": c.activations, "size_mb": c.size_mb, "val_acc": acc,
             "best_val_acc": acc, "train_loss_sum": 8 - acc, "train_seconds": 5.0, "images_per_s": 1e3,
             "end": "completed", "points": 1}
        for e in range(1, epochs + 1):
            r[f"val_acc_{e}"] = acc * e / epochs
            r[f"val_loss_{e}"] = r[f"train_loss_{e}"] = 2.0
        rows.append(r)
    return Table(frame(rows), {})


@pytest.fixture(scope="module")
def quickstart():
    cfg = load_config(QUICKSTART)
    return replace(cfg, trainer=replace(cfg.trainer, epochs=4))


@pytest.fixture(scope="module")
def table(quickstart):
    return fake_table(quickstart)


# --- the file ---------------------------------------------------------------------------------

def test_the_table_study_is_the_quickstart_space():
    assert load_config(TABLE_STUDY).to_dict()["space"] == load_config(QUICKSTART).to_dict()["space"]
    space = Space.from_config(load_config(TABLE_STUDY))
    assert space.grid_size() == 2 * 4 * 3 * 3 * 3 * 2 * 2 * 2  # 1,728: the knobs' choices multiplied


def test_round_trip_and_damage_in_one_line(tmp_path, table):
    path = tmp_path / "t.csv.gz"
    meta = write_table(table.df, path, {"study": "fake"})
    back = read_table(path)
    assert meta["rows"] == len(back.df) == 1728
    assert back.df["spec_id"].tolist() == table.df["spec_id"].tolist()
    assert np.array_equal(back.df["val_acc"].to_numpy(), table.df["val_acc"].to_numpy())  # exact round trip
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "flipped": data[:100] + bytes([data[100] ^ 1]) + data[101:],
               "garbage": b"not a table at all"}
    for name, bad in damaged.items():
        path.write_bytes(bad)
        with pytest.raises(UserError) as err:
            read_table(path)
        assert "damaged table" in str(err.value) and "\n" not in str(err.value), name
    sidecar(path).unlink()  # without the checksum, the gzip and CSV checks still see it
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged table"):
        read_table(path)
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with pytest.raises(UserError, match="missing columns"):
        read_table(path)


def test_the_bench_script_says_a_damaged_table_in_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "t.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    out = subprocess.run([sys.executable, str(ROOT / "bench/space_table.py"), "--table", str(bad), "--skip-search"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "damaged table" in out.stderr


# --- replays ----------------------------------------------------------------------------------

def test_a_replay_counts_as_explorer_run_counts(quickstart, table):
    trainer = R.TableTrainer(table)
    found = R.replay(quickstart, trainer, sampler="nsga2", seed=3, n_trials=24)
    assert len(found.spec_ids) == 24 == len(set(found.spec_ids))  # 24 distinct networks trained
    assert found.trials >= 24  # duplicates and over-budget points are recorded, not counted
    budget = dict(quickstart.budgets)["params"]
    params = table.bench.loc[found.spec_ids, "params"]
    assert (params <= budget).all()  # the study's budget holds: over-budget networks are never trained
    again = R.replay(quickstart, trainer, sampler="nsga2", seed=3, n_trials=24)
    assert again.spec_ids == found.spec_ids  # a pure function of table, config, sampler and seed
    other = R.replay(quickstart, trainer, sampler="nsga2", seed=4, n_trials=24)
    assert other.spec_ids != found.spec_ids


def test_a_replay_proposes_what_a_stored_run_proposes(tmp_path, quickstart, table):
    """The in-memory replay and a run on a journal file (the CLI's storage) train the same networks."""
    from explorer.study.loop import open_study, run_trials

    trainer = R.TableTrainer(table)
    found = R.replay(quickstart, trainer, sampler="tpe", seed=1, n_trials=12)
    cfg = R.replay_config(quickstart, "tpe", 1, 12)
    url = str(tmp_path / "r.journal")
    study = open_study(cfg, url)
    run_trials(study, cfg, data=R._TableData(), device="cpu", trainer=trainer, progress=False,
               out=open("/dev/null", "w"), storage_url=url, build=lambda spec: spec)
    stored = [t.user_attrs["spec_id"] for t in study.get_trials() if t.state.name == "COMPLETE"
              and t.user_attrs.get("duplicate_of") is None and not t.user_attrs.get("infeasible")]
    assert stored == found.spec_ids


def test_the_table_trainer_stops_where_the_rule_says(table):
    trainer = R.TableTrainer(table)
    space = Space.from_config(load_config(TABLE_STUDY))
    spec = space.spec(space.grid_points()[0])
    full = trainer(spec, None, epochs=4)
    assert full.end == "completed" and len(full.val_acc) == 4
    assert full.final_acc == table.bench.loc[spec_id(spec), "val_acc"]
    cut = trainer(spec, None, epochs=4, on_epoch_end=lambda e, m: e == 2)
    assert cut.end == "stopped" and cut.val_acc == full.val_acc[:2]


def test_hypervolume_fraction_of_the_exact_front_is_one(table):
    ref = R.reference(table, 200_000)
    assert R.hv_fraction(table, ref, sorted(ref.front)) == pytest.approx(1.0)
    assert R.front_recall(ref, sorted(ref.front)) == 1.0
    some = table.bench.index[:50].tolist()
    assert 0 < R.hv_fraction(table, ref, some) <= 1.0


# --- the stages -------------------------------------------------------------------------------

def test_stage_recipes(quickstart):
    cfg = load_config(TABLE_STUDY)
    plan = Plan(long_factor=4, long_sample=200, seed_sample=100)
    long, seed = stage_config(cfg, "long", plan), stage_config(cfg, "seed", plan)
    assert long.trainer.epochs == 16 and long.trainer.time_budget_s == 4 * cfg.trainer.time_budget_s
    assert long.data == cfg.data and long.space == cfg.space
    assert seed.trainer.seed == 1 and seed.trainer.epochs == 4 and seed.name == "quickstart-table-seed1"
    with pytest.raises(UserError):
        Plan(long_factor=1).check()


def test_the_sample_takes_the_front_and_spreads(table):
    from explorer.store.trials import TrialRecord

    recs = [TrialRecord(i, "COMPLETE", {"params": float(r.params), "val_acc": float(r.val_acc)}, {}, None, None, None)
            for i, r in enumerate(table.bench.itertuples())]
    chosen = sample(recs, 40)
    assert len({t.number for t in chosen}) == 40
    params = np.array([t.num("params") for t in recs])
    from explorer.results.pareto import pareto_front

    front = set(np.flatnonzero(pareto_front(params, [t.num("val_acc") for t in recs])))
    assert front <= {t.number for t in chosen} or len(front) > 20
    spread = np.log10([t.num("params") for t in chosen])
    assert spread.max() - spread.min() > 0.8 * (np.log10(params).max() - np.log10(params).min())


# --- zero-cost scores, by hand ------------------------------------------------------------------

def _conv(cin: int, cout: int, weights) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights, dtype=torch.float32).view(cout, cin, 1, 1))
    return conv


def test_synflow_by_hand():
    # R = sum over a 2x2 map of |w1||w2| = 4 * 6; dR/dw1 = 4|w2|, dR/dw2 = 4|w1|: score 2 * 4 * |w1 w2| = 48
    net = nn.Sequential(_conv(1, 1, [2.0]), _conv(1, 1, [-3.0]))
    assert P.synflow(net, (1, 1, 2, 2)) == pytest.approx(48.0)
    assert net[1].weight.item() == -3.0  # the network itself is untouched


def test_naswot_by_hand():
    # codes [1,0], [0,1], [1,1]: agreements K = [[2,0,1],[0,2,1],[1,1,2]], det 4
    net = nn.Sequential(_conv(1, 1, [1.0]), nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]).view(3, 1, 1, 2)
    assert P.naswot(net, x) == pytest.approx(math.log(4.0))


def test_grad_norm_and_snip_by_hand():
    # logits (w0, w1) = (1, 0) for x = 1, label 0: dL/dlogits = softmax - onehot = (-(1 - p), 1 - p), p = e/(e+1)
    net = nn.Sequential(_conv(1, 2, [1.0, 0.0]), nn.Flatten())
    g = 1 - math.e / (math.e + 1)
    s = P.gradient_scores(net, torch.ones(1, 1, 1, 1), torch.tensor([0]))
    assert s["grad_norm"] == pytest.approx(math.sqrt(2) * g, rel=1e-6)
    assert s["snip"] == pytest.approx(1.0 * g, rel=1e-6)


# --- a whole small table, twice ---------------------------------------------------------------

SMALL = """
name: tiny-table
data: {per_class: 6, val_per_class: 4, resolution: 16}
trainer: {epochs: 2, batch_size: 16, lr: 0.05, seed: 0}
space:
  stem: cifar
  stem_width: 16
  base_e: {choices: [16, 32]}
  incr_e: 0
  pct_3x3: {choices: [0.25, 0.75]}
  sr: 0.25
  n_fire: 2
  pools: [1]
  batchnorm: true
  head_bn: true
  head_relu: false
  dropout: 0.0
objectives: [val_acc, params]
sampler: {name: grid, seed: 0}
"""


def test_a_small_table_is_built_resumed_and_bit_identical(tmp_path):
    from explorer.commands import main

    study = tmp_path / "tiny.yaml"
    study.write_text(SMALL)
    args = ["--data", "synthetic", "--long-factor", "2", "--long-sample", "3", "--seed-sample", "2", "--jobs", "1"]
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    assert main(["table", str(study), "--storage", str(tmp_path / "a.journal"), "--out", str(a), *args]) == 0
    t = read_table(a)
    assert t.meta["counts"] == {"bench": 4, "long": 3, "seed": 2}
    assert list(t.stage("long")["epochs"].unique()) == [4] and list(t.stage("seed")["seed"].unique()) == [1]
    assert t.bench[["synflow", "naswot", "grad_norm", "snip"]].notna().all().all()
    assert main(["table", str(study), "--storage", str(tmp_path / "a.journal"), "--out", str(b), *args]) == 0
    assert t.df.drop(columns=["train_seconds", "images_per_s"]).equals(
        read_table(b).df.drop(columns=["train_seconds", "images_per_s"]))  # resumed: nothing retrained
    c = tmp_path / "c.csv.gz"
    assert main(["table", str(study), "--storage", str(tmp_path / "c.journal"), "--out", str(c), *args]) == 0
    fresh = read_table(c).df
    cols = [x for x in fresh.columns if x.startswith(("val_acc", "val_loss", "train_loss"))] + ["spec_id", "stage"]
    assert fresh[cols].equals(t.df[cols])  # trained again from nothing: every accuracy and loss identical


def test_a_table_needs_a_grid(tmp_path):
    from explorer.commands import main

    study = tmp_path / "tiny.yaml"
    study.write_text(SMALL.replace("sampler: {name: grid, seed: 0}", "sampler: {name: random, seed: 0}\nn_trials: 2"))
    assert main(["table", str(study), "--data", "synthetic"]) == 2

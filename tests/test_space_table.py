"""The shipped table, tables/quickstart.csv.gz: whole, its sizes as torch counts them, its front exact,
a row trained again equal to the stored one bit for bit, and the default search replayed on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from explorer import build_model
from explorer.design.spec import spec_id
from explorer.study.config import load_config
from explorer.study.space import Space
from explorer.tabular import replay as R
from explorer.tabular.tablefile import read_table

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tables/quickstart.csv.gz"
TABLE_STUDY = ROOT / "studies/quickstart-table.yaml"
QUICKSTART = ROOT / "studies/quickstart.yaml"


@pytest.fixture(scope="module")
def table():
    return read_table(TABLE)


@pytest.fixture(scope="module")
def space():
    return Space.from_config(load_config(TABLE_STUDY))


def test_the_table_holds_every_network_of_the_space_once(table, space):
    bench = table.stage("bench")
    expected = {spec_id(space.spec(v)) for v in space.grid_points()}
    assert len(expected) == 1728  # 2 * 4 * 3 * 3 * 3 * 2 * 2 * 2 grid points, all distinct networks
    assert len(bench) == 1728 and set(bench["spec_id"]) == expected
    assert (bench["end"] == "completed").all() and bench["val_acc"].between(0, 1).all()
    long, seed = table.stage("long"), table.stage("seed")
    assert set(long["spec_id"]) <= expected and set(seed["spec_id"]) <= set(long["spec_id"])
    assert (long["epochs"] == 4 * bench["epochs"].iloc[0]).all() and (seed["seed"] == 1).all()


def test_the_table_sizes_are_torchs_counts(table, space):
    """Parameters as torch counts them on the built network, for a spread of rows."""
    points = space.grid_points()
    for v in points[:: len(points) // 24]:
        spec = space.spec(v)
        torch_params = sum(p.numel() for p in build_model(spec).parameters())
        assert table.bench.loc[spec_id(spec), "params"] == torch_params


def test_the_reference_front_is_every_undominated_network(table):
    """The exact front against a dominance check written here (O(n^2) on 1,720 rows)."""
    bench = table.bench[table.bench["params"] <= 200_000]
    p, a = bench["params"].to_numpy(), bench["val_acc"].to_numpy()
    dominated = ((p[None, :] <= p[:, None]) & (a[None, :] >= a[:, None])
                 & ((p[None, :] < p[:, None]) | (a[None, :] > a[:, None]))).any(axis=1)
    ref = R.reference(table, 200_000)
    assert ref.front == frozenset(bench.index[~dominated])
    assert R.hv_fraction(table, ref, sorted(ref.front)) == pytest.approx(1.0)


def test_a_bench_row_trained_again_is_bit_identical(tmp_path, table, cifar_archive):
    """The smallest network of the table, trained again by `explorer run` with the bench recipe."""
    from explorer.commands import main
    from explorer.store import open_storage, read_study

    row = table.stage("bench").sort_values("macs").iloc[0]
    doc = yaml.safe_load(TABLE_STUDY.read_text())
    for knob, spec in doc["space"].items():
        if isinstance(spec, dict):
            value = row[knob]
            if knob == "pools":
                value = [int(x) for x in str(value).split(",")]
            doc["space"][knob] = {"choices": [value.item() if hasattr(value, "item") else value]}
    study = tmp_path / "one.yaml"
    study.write_text(yaml.safe_dump(doc))
    url = str(tmp_path / "one.journal")
    assert main(["run", str(study), "--storage", url, "--data", str(cifar_archive), "--no-progress"]) == 0
    (trial,) = [t for t in read_study(open_storage(url, read_only=True), "quickstart-table").trials if t.trained]
    assert trial.attrs["spec_id"] == row["spec_id"]
    curve = [float(x) for x in trial.attrs["curve"]]
    stored = [float(row[f"val_acc_{e}"]) for e in range(1, len(curve) + 1)]
    assert curve == stored  # every epoch's accuracy, bit for bit


def test_the_default_search_finds_most_of_the_front_in_64_trials(table):
    """docs/space_table.md's claim for the study files' default sampler, replayed on the real table."""
    config = load_config(QUICKSTART)
    cfg = replace(config, trainer=replace(config.trainer, epochs=int(table.stage("bench")["epochs"].iloc[0])))
    ref = R.reference(table, dict(cfg.budgets)["params"])
    found = R.replay(cfg, R.TableTrainer(table), sampler=cfg.sampler.name, seed=0, n_trials=64,
                     population_size=cfg.sampler.population_size)
    assert len(set(found.spec_ids)) == 64
    frac = R.hv_fraction(table, ref, found.spec_ids)
    assert np.isfinite(frac) and frac >= 0.9

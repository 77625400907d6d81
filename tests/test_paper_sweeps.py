"""bench/paper_sweeps.py's report: seeds merged from the trial and its calibration, means and
sample stds, the noise band, the knob's order, the chart (values computed by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from explorer.store import open_storage

from _studyfactory import make_storage, trial

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("paper_sweeps", ROOT / "bench" / "paper_sweeps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


KNOBS = {"sr": 0.125, "pct_3x3": 0.5, "base_e": 16, "pools": "3,7"}
# trial number -> (bypass, its own val_acc, the calibration's accs at seeds 100 and 101)
RUNS = {0: ("complex", 0.42, [0.41, 0.40]), 1: ("none", 0.40, [0.38, 0.42]), 2: ("simple", 0.44, [0.46, 0.45])}


@pytest.fixture
def runs(tmp_path):
    name = "paper_bypass_cpu"
    make_storage(tmp_path / f"{name}.journal",
                 {name: [trial(n, {**KNOBS, "bypass": b}, acc) for n, (b, acc, _) in RUNS.items()]})
    storage = open_storage(str(tmp_path / f"{name}.journal"))
    sid = storage.get_study_id_from_name(name)
    for n, (_, _, accs) in RUNS.items():
        if n != 0:  # trial 0 stays uncalibrated: one seed, no std
            storage.set_study_user_attr(sid, f"calibration/{n}", {
                "acc_mean": sum(accs) / 2, "acc_std": 0.0, "acc_seeds": accs,
                "noise": {"seeds": [100, 101], "accs": accs}})
    return tmp_path


def test_points_merge_the_trial_and_its_calibration_in_knob_order(runs):
    rows = _bench().points("bypass", runs)
    assert [r["value"] for r in rows] == ["none", "simple", "complex"]
    none, simple, complex_ = rows
    # factory trials carry seed = their number: none is trial 1, simple trial 2
    assert none["seeds"] == [1, 100, 101] and none["accs"] == [0.40, 0.38, 0.42]
    assert none["mean"] == pytest.approx(0.40) and none["std"] == pytest.approx(0.02)  # by hand, ddof 1
    assert simple["mean"] == pytest.approx(0.45) and simple["std"] == pytest.approx(0.01)
    assert complex_["accs"] == [0.42] and complex_["std"] != complex_["std"]  # one seed: NaN


def test_table_marks_differences_beyond_the_noise_band(runs):
    bench = _bench()
    text = bench.table("bypass", bench.points("bypass", runs))
    lines = text.splitlines()
    assert lines[2].startswith("| none |") and lines[2].endswith("| 40.0 ± 2.0 | - |")
    # simple - none = +5.0 points; band 2 * sqrt(2.0^2 + 1.0^2) = 4.47: beyond, in bold
    assert lines[3].endswith("| 45.0 ± 1.0 | **+5.0** (band 4.5) |")
    assert "38.0, 42.0" in lines[2]


def test_chart_is_a_png(runs, tmp_path):
    pytest.importorskip("matplotlib")
    bench = _bench()
    out = tmp_path / "img" / "paper_bypass.png"
    bench.chart("bypass", bench.points("bypass", runs), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

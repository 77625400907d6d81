"""Latency: the median's confidence interval, measurement hygiene, the cache, the quiet zone, the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types

import pytest
import torch

from explorer.core.errors import UserError
from explorer.design.budgets import over_budget, parse_budget
from explorer.design.model import seeded_model
from explorer.design.presets import preset
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.latency import cache as latency_cache
from explorer.latency import quiet
from explorer.latency.measure import (
    LatencyConfig,
    Setting,
    latency_of,
    measure,
    median_ci,
    relative_spread,
    setting_for,
)
from explorer.study.config import StudyConfig

SMALL = SqueezeSpec(base_e=16, incr_e=16, n_fire=4, stem="cifar", stem_width=16, pools=(1, 3),
                    batchnorm=True, num_classes=10, input_size=16)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test its own cache folder: its own latency file and its own quiet zone."""
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))


# --- the median and its spread ---------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 15, 20, 37, 100, 250])
def test_median_ci_matches_scipys_exact_interval(n):
    stats = pytest.importorskip("scipy.stats")
    x = [float(v) for v in torch.randperm(n, generator=torch.Generator().manual_seed(n)).tolist()]
    ci = stats.quantile_test(x, q=sorted(x)[n // 2], p=0.5).confidence_interval(0.95)
    med, lo, hi = median_ci(x)
    assert med == pytest.approx(sorted(x)[(n - 1) // 2] if n % 2 else (sorted(x)[n // 2 - 1] + sorted(x)[n // 2]) / 2)
    assert (lo, hi) == (ci.low, ci.high)


def test_relative_spread_by_hand():
    # n = 10: the interval runs from the 2nd to the 9th smallest (Conover's ranks 1.9 -> 2, 9.1 -> 9)
    x = [10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert median_ci(x) == (5.5, 2.0, 9.0)
    assert relative_spread(x) == pytest.approx((9.0 - 2.0) / 2 / 5.5)
    assert relative_spread([1.0]) == float("inf")


# --- measuring ---------------------------------------------------------------------------------

def test_measure_keeps_the_model_and_threads_as_they_were():
    model = seeded_model(SMALL, 0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    setting = setting_for(LatencyConfig(threads=1, batch_size=2), "cpu", SMALL.input_size)
    lat = measure(model, setting, target_spread=0.5, max_seconds=2.0)
    assert model.training and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.get_num_threads() == threads
    assert lat.ms > 0 and lat.runs >= 20 and lat.warmup_runs >= 5
    assert 0 <= lat.spread <= 0.5 or lat.seconds >= 2.0  # it stops at the spread asked for, or at its time limit
    assert 0 < lat.cpu_ms and 0 < lat.cpu_share <= 1.5  # one thread: CPU time cannot much exceed wall time
    assert (lat.setting.threads, lat.setting.batch_size, lat.setting.input_size) == (1, 2, 16)
    assert lat.setting.channels_last and lat.setting.precision == "fp32"


def test_measure_uses_the_named_threads(monkeypatch):
    seen = []
    real = torch.nn.Module.__call__

    def spy(self, *a, **kw):
        if self.__class__.__name__ == "SqueezeNet":
            seen.append((torch.get_num_threads(), torch.is_inference_mode_enabled(), self.training,
                         a[0].is_contiguous(memory_format=torch.channels_last), a[0].shape[0]))
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    setting = setting_for(LatencyConfig(threads=2, batch_size=3), "cpu", SMALL.input_size)
    measure(seeded_model(SMALL, 0), setting, target_spread=0.9, max_seconds=0.5)
    assert seen and set(seen) == {(2, True, False, True, 3)}


def test_a_larger_network_is_slower():
    """An assertion that can fail: squeezenet_cifar at 32 px does ~40x the MACs of the small net."""
    cfg = LatencyConfig(target_spread=0.05, max_seconds=2.0)
    big = preset("squeezenet_cifar")
    small_ms = latency_of(seeded_model(SMALL, 0), spec_id(SMALL), setting_for(cfg, "cpu", 16), cfg).ms
    big_ms = latency_of(seeded_model(big, 0), spec_id(big), setting_for(cfg, "cpu", 32), cfg).ms
    assert big_ms > 3 * small_ms


def test_setting_label_names_everything_a_latency_depends_on():
    s = Setting("cpu", "Some CPU", "host1", 4, 8, 32, True, "fp32", "2.5.1")
    assert s.label() == "cpu (Some CPU) on host1, 4 threads, batch 8, 32x32 px, fp32 channels-last, torch 2.5.1"
    assert Setting.from_dict({**s.__dict__, "extra": 1}) == s


# --- the cache ---------------------------------------------------------------------------------

def test_cache_hits_only_the_same_network_and_setting(monkeypatch):
    cfg = LatencyConfig(target_spread=0.5, max_seconds=0.5)
    setting = setting_for(cfg, "cpu", 16)
    calls = []
    real = measure

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr("explorer.latency.measure.measure", counting)
    model = seeded_model(SMALL, 0)
    first = latency_of(model, "a" * 16, setting, cfg)
    again = latency_of(model, "a" * 16, setting, cfg)
    assert len(calls) == 1 and again.cached and not first.cached and again.ms == first.ms
    latency_of(model, "b" * 16, setting, cfg)  # another network
    latency_of(model, "a" * 16, Setting(**{**setting.__dict__, "threads": 2}), cfg)  # another setting
    latency_of(model, "a" * 16, setting, cfg, use_cache=False)
    assert len(calls) == 4


def test_cache_skips_torn_lines_and_reads_only_new_ones(tmp_path):
    path = tmp_path / "latency.jsonl"
    assert latency_cache.store("k1", {"ms": 1.0}, path)
    with open(path, "a") as f:
        f.write('{"key": "k2", "laten')  # a writer killed mid-line
    assert latency_cache.lookup("k1", path) == {"ms": 1.0}
    assert latency_cache.lookup("k2", path) is None
    latency_cache.store("k3", {"ms": 3.0}, path)  # the torn line and k3 share one line now
    assert latency_cache.lookup("k3", path) is None and latency_cache.lookup("k1", path) == {"ms": 1.0}
    latency_cache.store("k1", {"ms": 1.5}, path)
    assert latency_cache.lookup("k1", path) == {"ms": 1.5}  # the last entry wins


def test_an_unwritable_cache_still_measures(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EXPLORER_CACHE", str(blocker))
    cfg = LatencyConfig(target_spread=0.5, max_seconds=0.3)
    lat = latency_of(seeded_model(SMALL, 0), "c" * 16, setting_for(cfg, "cpu", 16), cfg)
    assert lat.ms > 0 and not lat.quiet and not lat.cached


# --- the quiet zone ------------------------------------------------------------------------------

TRAINER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from explorer.latency import quiet
    folder, stop, step_s = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    stamps, waited = [], 0.0
    with quiet.training(folder) as pause:
        print("ready", flush=True)
        end = time.time() + 60
        while not stop.exists() and time.time() < end:
            waited += pause()
            t0 = time.time()
            time.sleep(step_s)  # one training step
            stamps.append((t0, time.time()))
    print(json.dumps({"stamps": stamps, "waited": waited}), flush=True)
""")


def start_trainer(folder, step_s: float = 0.01) -> subprocess.Popen:
    """A trainer stepping until `folder/stop` exists; returns once it holds its lock."""
    p = subprocess.Popen([sys.executable, "-c", TRAINER, str(folder), str(folder / "stop"), str(step_s)],
                         stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert p.stdout.readline().strip() == "ready"
    return p


def finish(folder, *trainers: subprocess.Popen) -> list[dict]:
    (folder / "stop").touch()
    return [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in trainers]


def test_trainers_pause_while_a_measurement_runs(tmp_path):
    trainers = [start_trainer(tmp_path) for _ in range(2)]
    time.sleep(0.3)
    with quiet.measuring(tmp_path) as calm:
        inside = (time.time(), None)
        time.sleep(0.6)
        inside = (inside[0], time.time())
    assert calm
    time.sleep(0.3)
    for result in finish(tmp_path, *trainers):
        overlapping = [s for s in result["stamps"] if s[1] > inside[0] and s[0] < inside[1]]
        assert overlapping == []  # no step ran while the measurement did
        assert 0.5 <= result["waited"] <= 5.0
        assert any(s[0] >= inside[1] for s in result["stamps"])  # and they went on afterwards
        assert any(s[1] <= inside[0] for s in result["stamps"])  # they were stepping before
    assert not (tmp_path / "pause").exists()


def test_a_measurement_waits_for_a_step_to_end(tmp_path):
    p = start_trainer(tmp_path, step_s=0.5)  # long steps: pause() is seen only between them
    time.sleep(0.1)
    start = time.time()
    with quiet.measuring(tmp_path) as calm:
        got = time.time()
    (result,) = finish(tmp_path, p)
    assert calm and got - start >= 0.2
    assert all(s[1] <= got + 0.05 or s[0] >= got for s in result["stamps"])


def test_a_trainer_that_never_pauses_makes_the_measurement_say_so(tmp_path):
    with quiet.training(tmp_path):  # held, never calling pause()
        start = time.time()
        with quiet.measuring(tmp_path, wait_s=0.3) as calm:
            assert not calm
        assert 0.3 <= time.time() - start < 5


def test_a_killed_measurer_never_leaves_the_machine_paused(tmp_path):
    code = ("import os, sys; from pathlib import Path; from explorer.latency import quiet\n"
            "with quiet.measuring(Path(sys.argv[1])):\n    os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 9
    assert (tmp_path / "pause").exists()  # the flag is left behind ...
    with quiet.training(tmp_path) as pause:
        start = time.perf_counter()
        pause()
        assert time.perf_counter() - start < 0.5  # ... but its lock died with it
    with quiet.measuring(tmp_path, wait_s=2) as calm:
        assert calm
    assert not (tmp_path / "pause").exists()


def test_train_keeps_pauses_out_of_its_time_budget_and_train_seconds():
    from explorer.training.data import load_data
    from explorer.training.train import train

    data = load_data("synthetic", per_class=8, val_per_class=4, resolution=16)
    calls = []

    def pause():
        calls.append(1)
        if len(calls) == 2:
            time.sleep(3.0)
            return 3.0
        return 0.0

    start = time.perf_counter()
    res = train(seeded_model(SMALL, 0), data, epochs=2, batch_size=16, lr=0.2, label_smoothing=0.1, threads=None,
                time_budget_s=2.5, pause=pause)
    wall = time.perf_counter() - start
    # without the correction the 3 s pause would end it at 2.5 s (the training itself takes well
    # under 2.5 s even on a busy 2-core machine)
    assert res.end == "completed"
    assert len(calls) >= 2 * (len(data.train.y) // 16)
    assert res.train_seconds < wall - 2.5


# --- the study file and budgets ----------------------------------------------------------------

BASE = {"name": "t", "space": {"base_e": 16}, "n_trials": 1}


def test_latency_section_is_implied_by_an_objective_or_a_budget():
    assert StudyConfig.from_dict(BASE).latency is None
    assert StudyConfig.from_dict({**BASE, "objectives": ["val_acc", "latency_ms"]}).latency == LatencyConfig()
    assert StudyConfig.from_dict({**BASE, "budgets": {"latency_ms": 2.5}}).latency == LatencyConfig()
    assert StudyConfig.from_dict({**BASE, "latency": True}).latency == LatencyConfig()
    cfg = StudyConfig.from_dict({**BASE, "latency": {"device": "cpu", "threads": 2, "batch_size": 8}})
    assert cfg.latency == LatencyConfig(device="cpu", threads=2, batch_size=8)
    again = StudyConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.identity()["latency"] == cfg.identity()["latency"]
    assert "latency" not in StudyConfig.from_dict(BASE).to_dict()  # old stored configs still match


@pytest.mark.parametrize("section, message", [
    ({"threads": 0}, "latency.threads: must be an integer in [1, 1024]"),
    ({"device": "gpu"}, "latency.device: must be cpu, cuda or cuda:N"),
    ({"target_spread": 1.5}, "latency.target_spread: must be a fraction in (0, 1)"),
    ({"warmup": 3}, "latency.warmup: unknown key"),
    (5, "latency: must be a mapping"),
])
def test_bad_latency_sections_are_one_line_errors(section, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        StudyConfig.from_dict({**BASE, "latency": section})


def test_latency_budgets_are_checked_only_once_measured():
    cost = types.SimpleNamespace(params=10, macs=20, size_mb=1.0)
    assert over_budget(cost, {"params": 5, "latency_ms": 1.0}) == "params 10 > 5"
    assert over_budget(cost, {"latency_ms": 1.0}) is None  # not measured yet
    assert over_budget({"latency_ms": 2.5}, {"latency_ms": 2.0}) == "latency_ms 2.5 > 2"
    assert parse_budget("latency_ms<=3.5") == {"latency_ms": 3.5}
    with pytest.raises(UserError, match="early_stop.size_by"):
        StudyConfig.from_dict({**BASE, "objectives": ["val_acc", "latency_ms"],
                               "early_stop": {"size_by": "latency_ms"}})

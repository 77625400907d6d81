"""int8: `explorer train --int8` and `explorer export --int8` with the real onnxruntime quantizer,
on a tiny real run (CIFAR-10 JPEG archive, 8 px). Skipped, saying why, without the [onnx] extra
or the archive.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from optuna.trial import TrialState

from explorer.commands import main

from test_export import CIFAR8, attrs, make_study

onnx = pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime) is not installed")


# The shipped studies' head (BatchNorm before conv10, no ReLU after it): it learns in 2 epochs.
SPEC = dataclasses.replace(CIFAR8, head_bn=True, head_relu=False)


def _study(tmp_path: Path, n: int = 2) -> Path:
    """A study of `n` completed trials of SPEC (trial 0 on the front)."""
    rows = [(TrialState.COMPLETE, attrs(SPEC, params=100 * (i + 1), macs=1, acc=0.2 + 0.1 * i)) for i in range(n)]
    return make_study(tmp_path / "s.journal", "s", rows)


def _train(journal: Path, out: Path, archive: Path, *extra: str) -> int:
    return main(["train", "s", "--storage", str(journal), "--trial", "0", "--epochs", "2", "--data", str(archive),
                 "--per-class", "100", "--out", str(out), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_archive):
    """A study and `explorer train --trial 0 --int8` of it (trained and quantized once for the module)."""
    tmp = tmp_path_factory.mktemp("int8")
    journal = _study(tmp)
    assert _train(journal, tmp / "models/s-0", cifar_archive, "--int8") == 0
    return tmp, journal, tmp / "models/s-0"


def _ort_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, mean, std) -> float:
    """Top-1 accuracy through onnxruntime, with the preprocessing the model card documents."""
    m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in (mean, std))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"images": ((x.float() / 255 - m) / s).numpy()})[0]
    return float((logits.argmax(1) == y.numpy()).mean())


def test_train_int8_writes_an_int8_file_and_measures_it_beside_fp32(trained, cifar_archive):
    from explorer.training.data import load_data

    _, _, out = trained
    rec = json.loads((out / "int8.json").read_text())
    int8_path, fp32_path = out / "model.int8.onnx", out / "model.onnx"
    assert rec["int8_bytes"] == os.path.getsize(int8_path) and rec["fp32_bytes"] == os.path.getsize(fp32_path)
    # every weight matrix in the int8 file is 8-bit, read by onnx itself
    q = onnx.load(str(int8_path))
    mats = [t for t in q.graph.initializer if len(t.dims) >= 2]
    assert mats and all(t.data_type == onnx.TensorProto.INT8 for t in mats)
    assert any(n.op_type == "QLinearConv" for n in q.graph.node)
    assert rec["fp32_ops"] == {"BatchNormalization": 1}  # the head's BatchNorm before conv10 has no int8 form
    # the fp32 ONNX file scores what PyTorch scored on the 10,000 test images (a few argmax ties may flip)
    train_json = json.loads((out / "train.json").read_text())
    assert rec["fp32_test_acc"] == pytest.approx(train_json["metrics"]["test_acc"], abs=0.002)
    assert rec["test_images"] == 10_000
    # the stored accuracies are what onnxruntime gives on the same images, recomputed here
    data = load_data(cifar_archive, per_class=None, val_per_class=3, resolution=8, seed=0)
    pre = train_json["preprocess"]
    assert rec["int8_val_acc"] == pytest.approx(_ort_accuracy(int8_path, data.val.x, data.val.y, pre["mean"],
                                                              pre["std"]))
    assert rec["fp32_test_acc"] > 0.15  # learnt something: chance is 0.10
    assert abs(rec["test_acc_drop"]) <= 0.05  # a 2-epoch network: loose, but int8 noise is far below it
    assert rec["test_acc_drop"] == pytest.approx(rec["fp32_test_acc"] - rec["int8_test_acc"])
    # latency: both files timed with the same setting but precision, quietly, with a spread
    assert rec["int8_latency_ms"] > 0 and rec["fp32_latency_ms"] > 0
    low, high = rec["latency_ratio_range"]
    assert rec["latency_rounds"] == 5 and 0 < low <= rec["latency_ratio"] <= high
    assert rec["int8_latency"]["threads"] == 1 and rec["int8_latency"]["batch_size"] == 1
    assert "int8 onnxruntime" in rec["latency_setting"] and rec["int8_latency"]["runs"] >= 3
    assert rec["calibration"] == {"images": 500, "seed": 0, "split": "train"}
    card = (out / "model_card.md").read_text()
    assert card.count("## int8") == 1 and "model.int8.onnx" in card and "test accuracy" in card
    assert train_json["int8"]["int8_bytes"] == rec["int8_bytes"]


def test_train_int8_stores_the_result_in_the_study(trained):
    from explorer.store import open_storage, read_study

    _, journal, out = trained
    rec = read_study(open_storage(str(journal)), "s")
    assert set(rec.int8) == {0}
    assert rec.int8[0]["int8_bytes"] == os.path.getsize(out / "model.int8.onnx")


def test_the_same_seed_calibrates_on_the_same_images():
    from explorer.results.int8 import calibration_sample

    x = torch.arange(200).view(200, 1, 1, 1).expand(200, 3, 2, 2).to(torch.uint8)  # image i is all i
    a, b, c = (calibration_sample(x, 50, s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c) and len(a) == 50
    assert len({tuple(v.flatten().tolist()) for v in a}) == 50  # without replacement


@pytest.fixture
def transposed_head(monkeypatch):
    """Networks built with a ConvTranspose before the pool: onnxruntime's QOperator quantizer has no int8 form."""
    from torch import nn

    from explorer.design import model as M

    head = M._head

    def with_transpose(channels, final_conv, net):
        layers = head(channels, final_conv, net)
        return layers[:-1] + [nn.ConvTranspose2d(net.num_classes, net.num_classes, 1)] + layers[-1:]

    monkeypatch.setattr(M, "_head", with_transpose)


def test_an_op_without_int8_form_is_one_line_and_the_fp32_export_completes(tmp_path, cifar_archive, capsys,
                                                                         transposed_head):
    journal = _study(tmp_path, 1)
    out = tmp_path / "m"
    assert _train(journal, out, cifar_archive, "--int8") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "cannot be quantized" in line]
    assert len(lines) == 1 and "ConvTranspose" in lines[0], err
    assert (out / "model.pt").exists() and (out / "model.onnx").exists() and (out / "model_card.md").exists()
    assert not (out / "model.int8.onnx").exists() and not (out / "int8.json").exists()
    assert "## int8" not in (out / "model_card.md").read_text()
    # the fp32 ONNX file is a working network
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"images": np.zeros((2, 3, 8, 8), np.float32)})[0].shape == (2, 10)
    # export --int8 of the same model: the same one line, and every export file and summary.csv
    assert main(["export", "s", "--storage", str(journal), "--trial", "0", "--out", str(tmp_path / "x"), "--int8",
                 "--models", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert sum("cannot be quantized" in line and "ConvTranspose" in line for line in err.splitlines()) == 1, err
    row = next(csv.DictReader(open(tmp_path / "x/summary.csv")))
    assert row["trial"] == "0" and row["int8_test_acc"] == "" and (tmp_path / "x/s_trial00000.yaml").exists()


def test_export_int8_fills_files_and_summary_from_trained_models(trained, capsys):
    tmp, journal, models = trained
    out = tmp / "x"
    assert main(["export", "s", "--storage", str(journal), "--trial", "0", "1", "--out", str(out), "--int8",
                 "--models", str(tmp / "models")]) == 0
    err = capsys.readouterr().err
    assert "reusing" in err  # int8.json belongs to this model.pt: not quantized twice
    missing = [line for line in err.splitlines() if "trial #1 has no trained model" in line]
    assert len(missing) == 1 and f"explorer train s --storage {journal} --trial 1" in missing[0]
    rows = {int(r["trial"]): r for r in csv.DictReader(open(out / "summary.csv"))}
    rec = json.loads((models / "int8.json").read_text())
    assert int(rows[0]["int8_onnx_bytes"]) == os.path.getsize(models / "model.int8.onnx")
    assert float(rows[0]["int8_test_acc"]) == pytest.approx(rec["int8_test_acc"])
    assert float(rows[0]["fp32_onnx_ms"]) == pytest.approx(rec["fp32_latency_ms"])
    assert rows[0]["int8_file"] == str(models.resolve() / "model.int8.onnx")
    assert rows[1]["int8_test_acc"] == ""  # no trained model: empty, not invented
    doc = yaml.safe_load((out / "s_trial00000.yaml").read_text())
    assert doc["int8"]["int8_bytes"] == rec["int8_bytes"]
    assert "int8" not in yaml.safe_load((out / "s_trial00001.yaml").read_text())


def test_export_int8_without_any_trained_model_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    _, journal, _ = trained
    out = tmp_path / "x"
    assert main(["export", "s", "--storage", str(journal), "--trial", "1", "--out", str(out), "--int8",
                 "--models", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs trained weights" in err[0] and "explorer train s --trial 1" in err[0]
    assert not out.exists()


def test_a_card_keeps_one_int8_section():
    from explorer.results.int8_files import CARD_HEADING, with_card_section

    r = {"method": {"library": "onnxruntime", "version": "1", "format": "QOperator", "weights": "int8",
                    "activations": "uint8", "calibration": "MinMax"}, "calibration": {"images": 5, "seed": 0},
         "fp32_file": "model.onnx", "int8_file": "model.int8.onnx", "fp32_bytes": 400, "int8_bytes": 100,
         "size_ratio": 0.25, "val_images": 10, "test_images": 20, "fp32_val_acc": 0.5, "int8_val_acc": 0.4,
         "val_acc_drop": 0.1, "fp32_test_acc": 0.5, "int8_test_acc": 0.5, "test_acc_drop": 0.0}
    card = "# Model card\n\n## Result\n\n- x\n\n## Network\n\ntable\n"
    once = with_card_section(card, r)
    twice = with_card_section(once, {**r, "int8_bytes": 99})
    assert once.count(CARD_HEADING) == 1 and twice.count(CARD_HEADING) == 1
    assert once.index(CARD_HEADING) < once.index("## Network") and "99 bytes" in twice and "table" in twice
    assert "\n\n\n" not in once and "\n\n\n" not in twice
    assert "| validation accuracy (10 images) | 50.00% | 40.00% | -10.00 points |" in once


def test_train_int8_without_the_extra_stops_before_training(tmp_path, monkeypatch, capsys):
    from explorer.results import int8

    monkeypatch.setattr(int8, "missing", lambda: "int8 needs onnxruntime: pip install -e '.[onnx]'")
    journal = _study(tmp_path, 1)
    assert _train(journal, tmp_path / "m", tmp_path / "no-data-needed", "--int8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["explorer: error: --int8: int8 needs onnxruntime: pip install -e '.[onnx]'"]
    assert not (tmp_path / "m").exists()


def test_timing_again_changes_only_the_latencies(trained):
    from explorer.results import int8_files
    from explorer.store import open_storage, read_study

    _, journal, out = trained
    before = json.loads((out / "int8.json").read_text())
    rec = read_study(open_storage(str(journal)), "s", url=str(journal))
    lines: list[str] = []
    again = int8_files.quantize_models(rec, {0: out}, remeasure=True, say=lines.append)[0]
    assert any("timing" in line for line in lines)
    changed = {k for k in before if before[k] != again[k]}
    assert changed <= {"fp32_latency_ms", "int8_latency_ms", "latency_ratio", "latency_ratio_range", "cpu_ratio",
                       "fp32_latency", "int8_latency", "load_1min"}
    assert "fp32_latency" in changed  # measured_at at least differs
    assert json.loads((out / "int8.json").read_text()) == again


def test_models_and_data_without_int8_are_one_line(trained, tmp_path, capsys):
    _, journal, _ = trained
    for flag in ("--models", "--data"):
        assert main(["export", "s", "--storage", str(journal), "--trial", "0", "--out", str(tmp_path / "x"),
                     flag, "somewhere"]) == 2
        assert capsys.readouterr().err.strip() == f"explorer: error: {flag} is for --int8: add --int8, or drop it"
    assert not (tmp_path / "x").exists()

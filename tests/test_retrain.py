"""`explorer train` and `explorer calibrate` on a tiny real run (CIFAR-10 JPEG archive, 8 px).

Skipped, with the reason shown, when ../shared/datasets/cifar10-jpeg.tar.gz is absent.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from optuna.trial import TrialState

from explorer.commands import main
from explorer.design.spec import SqueezeSpec
from explorer.training.datasource import default_archive

from test_export import CIFAR8, TRAINER, attrs, make_study

ARCHIVE = default_archive()
CIFAR10_TEST_IMAGES = 10_000
VAL_PER_CLASS = 3  # the stored study's data settings (test_export.DATA): 30 val images


@pytest.fixture
def archive() -> Path:
    if not ARCHIVE.exists():
        pytest.skip(f"CIFAR-10 archive not found at {ARCHIVE} (see ../shared/datasets/README.md)")
    return ARCHIVE


@pytest.fixture
def exported(tmp_path, archive) -> Path:
    """An export file of a one-trial study whose spec is CIFAR8 (8 px, 10 classes)."""
    journal = make_study(tmp_path / "s.journal", "s",
                         [(TrialState.COMPLETE, attrs(CIFAR8, params=1, macs=1, acc=0.2))])
    assert main(["export", "s", "--storage", str(journal), "--out", str(tmp_path / "x"), "--trial", "0"]) == 0
    return tmp_path / "x/s_trial00000.yaml"


def test_train_writes_a_checkpoint_that_reloads_with_weights_only(exported, archive, tmp_path, capsys):
    from explorer.design.model import build_model, seeded_model
    from explorer.results.retrain import load_checkpoint
    from explorer.training.data import load_data

    out = tmp_path / "run"
    assert main(["train", str(exported), "--epochs", "1", "--data", str(archive), "--per-class", "10",
                 "--lr", "0.02", "--out", str(out), "--device", "cpu"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    model = build_model(SqueezeSpec.from_dict(ckpt["spec"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    again, _ = load_checkpoint(out / "model.pt")
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # Training changed the weights drawn from the seed.
    init = seeded_model(CIFAR8, 0).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in ckpt["state_dict"].items())
    # The stored test accuracy is this model's on CIFAR-10's 10,000 test images, counted here by hand.
    m = ckpt["metrics"]
    assert m["test_images"] == CIFAR10_TEST_IMAGES
    test = load_data(archive, per_class=10, val_per_class=VAL_PER_CLASS, resolution=8).test()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ckpt["preprocess"]["mean"], ckpt["preprocess"]["std"]))
    with torch.no_grad():
        pred = model((test.x.float() / 255 - mean) / std).argmax(1)
    assert abs((pred == test.y).float().mean().item() - m["test_acc"]) <= 3 / CIFAR10_TEST_IMAGES
    # The study's trainer settings are the defaults; --lr and --epochs override; no time budget.
    assert ckpt["trainer"] == {**TRAINER, "epochs": 1, "lr": 0.02, "time_budget_s": None, "threads": 1}
    assert m["train_images"] == 100 and m["val_images"] == 10 * VAL_PER_CLASS
    card = (out / "model_card.md").read_text()
    assert f"test accuracy {100 * m['test_acc']:.2f}%" in card
    assert "| lr | 0.02 |" in card and "fire2" in card and "s #0" in card
    assert json.loads((out / "train.json").read_text())["metrics"]["test_acc"] == m["test_acc"]
    assert json.loads((out / "train.json").read_text())["trainer"]["threads"] == 1  # what changes results


def test_calibrate_stores_mean_and_std_in_file_and_study(exported, archive, tmp_path, capsys):
    assert main(["calibrate", str(exported), "--seeds", "2", "--data", str(archive), "--device", "cpu"]) == 0
    noise = yaml.safe_load(exported.read_text())["noise"]
    a, b = noise["accs"]
    assert noise["k"] == 2 and noise["seeds"] == [0, 1]
    for acc in (a, b):  # 30 val images: accuracies are multiples of 1/30
        assert round(acc * 30, 6) == round(acc * 30)
    assert noise["mean"] == pytest.approx((a + b) / 2)
    assert noise["std"] == pytest.approx(abs(a - b) / math.sqrt(2))  # sample std of two values
    assert noise["data"]["train_images"] == 60 and noise["trainer"]["epochs"] == 1
    # The study now knows it: a new export reads the calibration back (the dashboard's acc_std).
    study = tmp_path / "s.journal"
    assert main(["export", "s", "--storage", str(study), "--out", str(tmp_path / "y"), "--pareto"]) == 0
    with open(tmp_path / "y/summary.csv") as f:
        row = next(csv.DictReader(f))
    assert row["acc_std_source"] == "trial"
    assert float(row["acc_std"]) == pytest.approx(noise["std"])
    assert float(row["acc_mean"]) == pytest.approx(noise["mean"])
    assert yaml.safe_load((tmp_path / "y/s_trial00000.yaml").read_text())["noise"] == noise


def test_onnx_export_matches_pytorch_or_skips_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    from explorer.design.model import seeded_model
    from explorer.results.onnx_export import export_onnx
    from explorer.results.retrain import save_checkpoint

    model = seeded_model(CIFAR8, 0)
    save_checkpoint(tmp_path / "m.pt", CIFAR8, model, {"test_acc": 0.0}, {})
    if importlib.util.find_spec("onnx") is None:
        report = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
        assert report.startswith("ONNX export skipped") and "\n" not in report
        assert not (tmp_path / "m.onnx").exists()
        pytest.skip("onnx not installed (the [onnx] extra): only the skip message was checked")
    report = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").exists()
    if importlib.util.find_spec("onnxruntime") is not None:
        assert "agrees with" in report, report


# --- review fixes: a changed recipe, the order of study and file, time budgets, timestamps ---

def _study_attrs(tmp_path: Path) -> dict:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    return storage.get_study_user_attrs(storage.get_study_id_from_name("s"))


def test_calibrate_with_a_changed_recipe_writes_the_file_only(exported, archive, tmp_path, capsys):
    # The study's recipe: 6 images per class, 1 epoch. 20 per class is another recipe: its
    # spread is not the trial's seed noise, so the study must not receive it.
    assert main(["calibrate", str(exported), "--seeds", "2", "--per-class", "20", "--epochs", "1",
                 "--data", str(archive), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "not stored in the study" in captured.out and "data.per_class 20 instead of 6" in captured.out
    assert captured.out.count("\n") == 1
    assert "not stored in the study" in captured.err  # said before the training, too
    assert not any(k.startswith("calibration/") for k in _study_attrs(tmp_path))
    noise = yaml.safe_load(exported.read_text())["noise"]
    assert noise["data"]["per_class"] == 20 and noise["data"]["train_images"] == 200  # 20 x 10 classes
    assert noise["recipe"].startswith("changed:")
    # A new export does not see it: the trial has no noise estimate.
    assert main(["export", "s", "--storage", str(tmp_path / "s.journal"), "--out", str(tmp_path / "y"),
                 "--pareto"]) == 0
    with open(tmp_path / "y/summary.csv") as f:
        assert next(csv.DictReader(f))["acc_std_source"] == "none"


def test_calibrate_stores_in_the_study_before_rewriting_the_file(exported, archive, tmp_path, capsys,
                                                                monkeypatch):
    from explorer.results import exportfile

    before = exported.read_text()

    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exportfile, "write_atomic", disk_full)
    assert main(["calibrate", str(exported), "--seeds", "2", "--data", str(archive), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "No space left on device" in captured.err and captured.err.count("explorer: error:") == 1
    stored = _study_attrs(tmp_path)["calibration/0"]
    # The result is printed, and the study holds it: nothing of the two runs is lost.
    assert f"{100 * stored['acc_mean']:.2f}%" in captured.out and "stored in" in captured.out
    assert len(stored["acc_seeds"]) == 2 and stored["noise"]["recipe"] == "the study's short-trial recipe"
    assert exported.read_text() == before


def test_calibrate_warns_when_a_seed_ends_on_the_time_budget(tmp_path, archive, capsys):
    # A 1 ns budget stops every run after its first step (3 steps per epoch: 60 images, batch 16).
    journal = make_study(tmp_path / "s.journal", "s", [(TrialState.COMPLETE, attrs(CIFAR8, params=1, macs=1, acc=0.2))],
                         trainer={**TRAINER, "time_budget_s": 1e-9})
    assert main(["export", "s", "--storage", str(journal), "--out", str(tmp_path / "x"), "--trial", "0"]) == 0
    path = tmp_path / "x/s_trial00000.yaml"
    capsys.readouterr()
    assert main(["calibrate", str(path), "--seeds", "2", "--data", str(archive), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: seed(s) 0, 1 stopped at the time budget" in err
    assert yaml.safe_load(path.read_text())["noise"]["ends"] == ["time_budget", "time_budget"]


def test_unquoted_timestamp_still_gives_a_weights_only_checkpoint(exported, archive, tmp_path, capsys):
    # YAML reads an unquoted exported_at as a datetime, which torch's weights_only loader refuses.
    text = exported.read_text()
    stamp = yaml.safe_load(text)["provenance"]["exported_at"]
    exported.write_text(text.replace(f"exported_at: '{stamp}'", f"exported_at: {stamp}"))
    assert "datetime" in type(yaml.safe_load(exported.read_text())["provenance"]["exported_at"]).__name__
    out = tmp_path / "run"
    assert main(["train", str(exported), "--epochs", "1", "--data", str(archive), "--per-class", "10",
                 "--out", str(out), "--device", "cpu"]) == 0
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["provenance"]["exported_at"] == stamp
    assert json.loads((out / "train.json").read_text())["provenance"]["exported_at"] == stamp


def test_train_keeps_the_model_when_the_folder_fails_after_training(exported, archive, tmp_path, capsys,
                                                                   monkeypatch):
    from explorer.results import retrain as ex

    real = ex.save_checkpoint
    out = tmp_path / "run"

    def fail_in_out(path, *a, **kw):
        if path.parent == out:
            raise OSError(30, "Read-only file system")
        return real(path, *a, **kw)

    monkeypatch.setattr(ex, "save_checkpoint", fail_in_out)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the rescue folder lands here
    assert main(["train", str(exported), "--epochs", "1", "--data", str(archive), "--per-class", "10",
                 "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("explorer: error: cannot write into") and "Read-only file system" in err
    rescue = Path(err.split(" into ")[2].split(" instead")[0])
    assert rescue.parent == tmp_path and rescue != out
    assert (rescue / "model.pt").exists() and (rescue / "train.json").exists()
    torch.load(rescue / "model.pt", weights_only=True)

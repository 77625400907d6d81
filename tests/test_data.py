"""The data layer: every source on small inputs, the cache, the split, resizing."""

from __future__ import annotations

import pickle
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core.errors import UserError
from explorer.training import data as D
from explorer.training import datasource

ARCHIVE = datasource.default_archive()
CLASSES = ("cat", "dog", "emu")  # sorted: labels 0, 1, 2
N_TRAIN, N_TEST = 6, 2  # per class


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Cache in tmp_path, no data source from the environment."""
    monkeypatch.setenv(D.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(datasource.ENV, raising=False)


def make_tree(root: Path, fmt: str = "PNG", size: int = 8) -> Path:
    """train/ and test/ of 8x8 images: R = a unique id, G = 50 * label, B = 0 train / 255 test."""
    ident = 0
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for k in range(n):
                px = np.zeros((size, size, 3), np.uint8)
                px[..., 0], px[..., 1], px[..., 2] = ident, 50 * label, 0 if split == "train" else 255
                Image.fromarray(px).save(root / split / cls / f"{k:03d}.{fmt.lower()}", fmt)
                ident += 1
    return root


def make_tar(tree: Path, out: Path) -> Path:
    """A .tar.gz of the tree under a leading folder, as archives usually come."""
    with tarfile.open(out, "w:gz") as tf:
        tf.add(tree, arcname="mydata")
    return out


def ids(x: torch.Tensor) -> set[int]:
    """The unique ids (R channel) of tree images."""
    return set(x[:, 0, 0, 0].tolist())


def test_synthetic_is_labelled_and_balanced():
    d = D.load_data("synthetic", val_per_class=4)
    assert d.source == "synthetic" and all(c.startswith("synthetic") for c in d.classes)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape[1:] == (3, 32, 32)
    assert torch.bincount(d.val.y).tolist() == [4] * 10
    assert len(d.train.y) == 10 * (128 - 4)  # 128 synthetic train images per class


def test_image_folder_tree_labels_and_splits(tmp_path):
    d = D.load_data(make_tree(tmp_path / "tree"), val_per_class=2)
    assert d.classes == CLASSES
    assert len(d.train.y) == 3 * (N_TRAIN - 2) and len(d.val.y) == 3 * 2
    for split in (d.train, d.val):  # labels follow the sorted class folders: G = 50 * label
        assert torch.equal(split.x[:, 1, 0, 0].long(), 50 * split.y)
        assert (split.x[:, 2] == 0).all()
    test = d.test()
    assert len(test.y) == 3 * N_TEST and (test.x[:, 2] == 255).all()
    assert ids(d.train.x) | ids(d.val.x) == set(range(3 * N_TRAIN))  # val is carved from train
    assert not ids(d.val.x) & ids(test.x) and not ids(d.train.x) & ids(test.x)


def test_tar_gz_matches_the_tree(tmp_path):
    tree = make_tree(tmp_path / "tree")
    a = D.load_data(tree, val_per_class=1)
    b = D.load_data(make_tar(tree, tmp_path / "tree.tar.gz"), val_per_class=1)
    assert a.classes == b.classes
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test(), b.test())):
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)


def test_jpeg_decodes_like_pil_and_odd_sizes_are_resized(tmp_path):
    root = make_tree(tmp_path / "tree", fmt="JPEG")
    big = np.full((16, 16, 3), 77, np.uint8)  # a uniform 16x16 image resizes to uniform 8x8
    Image.fromarray(big).save(root / "train" / "dog" / "zzz.jpeg", "JPEG")
    d = D.load_data(root, val_per_class=1)
    first = root / "train" / "cat" / "000.jpeg"
    ref = torch.from_numpy(np.array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    everything = torch.cat([d.train.x, d.val.x])
    assert d.train.x.shape[1:] == (3, 8, 8)
    assert any(torch.equal(x, ref) for x in everything)
    uniform = [x for x in everything if (x.int() - x[:, :1, :1].int()).abs().max() <= 2]
    assert any(abs(int(x[0, 0, 0]) - 77) <= 2 for x in uniform)


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    first = D.load_data(tree, val_per_class=1)
    cached = list((tmp_path / "cache" / "decoded" / "v2").glob("*/*.pt"))
    assert sorted(p.name for p in cached) == ["test.pt", "train.pt"]
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temporaries

    def no_decoding(*args):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(D, "_decode_tree", no_decoding)
    second = D.load_data(tree, val_per_class=1)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test().x, second.test().x)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tree / "train" / "cat" / "new.png")
    with pytest.raises(AssertionError, match="decoded again"):  # changed content, new key
        D.load_data(tree, val_per_class=1)


def test_cache_dir_argument_beats_the_environment(tmp_path):
    D.load_data(make_tree(tmp_path / "tree"), val_per_class=1, cache_dir=tmp_path / "mine")
    assert list((tmp_path / "mine" / "decoded" / "v2").glob("*/train.pt"))
    assert not (tmp_path / "cache").exists()


def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    """A tiny cifar-10-batches-py in torchvision's pickle format; pixel (c,0,0) = id, label = id % 10."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    ident = 0
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = np.zeros((per_batch, 3072), np.uint8)
        rows[:, 0] = rows[:, 1024] = rows[:, 2048] = np.arange(ident, ident + per_batch)
        rows[:, 1] = 9  # pixel (0, 0, 1) of the red channel: rows are channel-major
        labels = [(ident + k) % 10 for k in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": labels}, f)
        ident += per_batch
    return root


@pytest.mark.parametrize("spelling", ["root", "inline"])
def test_cifar10_from_a_local_root(tmp_path, spelling):
    root = write_cifar10(tmp_path / "tv")
    d = (D.load_data("cifar10", root=root, val_per_class=1) if spelling == "root"
         else D.load_data(f"cifar10:{root}", val_per_class=1))
    assert d.classes[0] == "airplane" and len(d.train.y) + len(d.val.y) == 20
    x = torch.cat([d.train.x, d.val.x])
    y = torch.cat([d.train.y, d.val.y])
    assert torch.equal(y, x[:, 0, 0, 0].long() % 10) and (x[:, :, 0, 0] == x[:, :1, 0, 0]).all()
    assert (x[:, 0, 0, 1] == 9).all() and (x[:, 1, 0, 1] == 0).all()
    assert d.test().x[:, 0, 0, 0].tolist() == [20, 21, 22, 23]


def test_missing_cifar_offline_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(UserError) as err:
        D.load_data("cifar10")
    assert "\n" not in str(err.value) and "--data" in str(err.value) and "download" in str(err.value)
    with pytest.raises(UserError, match="not found"):
        D.load_data("cifar100", download=False)


def test_no_source_names_the_fix(tmp_path, monkeypatch):
    with pytest.raises(UserError) as err:
        D.load_data()
    assert "\n" not in str(err.value) and datasource.ENV in str(err.value) and "--data" in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        D.load_data(tmp_path / "nowhere")
    monkeypatch.setenv(datasource.ENV, "synthetic")
    assert D.load_data().source == "synthetic"


def test_split_is_seeded_balanced_and_disjoint():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 5)
    tr, va = D.split_indices(y, 3, 2, None, seed=3)
    assert torch.bincount(y[va]).tolist() == [2, 2, 2] and len(tr) == 22 - 6
    assert not set(tr.tolist()) & set(va.tolist()) and len(set(tr.tolist()) | set(va.tolist())) == 22
    assert all(torch.equal(a, b) for a, b in zip((tr, va), D.split_indices(y, 3, 2, None, seed=3)))
    others = [D.split_indices(y, 3, 2, None, seed=s)[1] for s in range(4, 9)]
    assert any(not torch.equal(va, o) for o in others)
    tr3, va3 = D.split_indices(y, 3, 2, 3, seed=3)  # subset: 3 train images per class
    assert torch.bincount(y[tr3]).tolist() == [3, 3, 3] and torch.equal(va3, va)
    with pytest.raises(UserError, match="too few"):
        D.split_indices(y, 3, 5, None, seed=0)


def test_default_val_is_ten_percent_of_the_smallest_class():
    d = D.load_data("synthetic")
    assert torch.bincount(d.val.y).tolist() == [13] * 10  # round(0.1 * 128)


def test_resize_by_hand():
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    x[..., 1::2] = 200  # columns alternate 0, 200
    small = D.resize(x, 16)
    # Antialiased 2x bilinear downscale weighs 4 columns 1/8, 3/8, 3/8, 1/8: 0+75+0+25 = 100.
    assert small.shape == (1, 3, 16, 16) and (small[..., 1:-1] == 100).all()
    assert D.resize(x, 32) is x


def test_stats_by_hand():
    x = torch.zeros(2, 3, 1, 2, dtype=torch.uint8)
    x[:, 0] = 255  # red all 1.0; green half 0, half 1.0
    x[:, 1, 0, 1] = 255
    rec = D._with_stats(x, torch.tensor([0, 0]), ["a"])
    assert rec["mean"] == pytest.approx([1.0, 0.5, 0.0]) and rec["std"] == pytest.approx([0.0, 0.5, 0.0])


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.exists(), reason=f"CIFAR-10 archive not found at {ARCHIVE}")
def test_cifar10_archive_counts_stats_and_cached_speed(tmp_path):
    d = D.load_data(ARCHIVE, cache_dir=tmp_path / "c")
    assert len(d.train.y) == 45_000 and torch.bincount(d.val.y).tolist() == [500] * 10
    # shared/datasets/README.md: train mean (0.4913, 0.4821, 0.4465), std (0.2452, 0.2428, 0.2606).
    assert d.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=1e-4)
    assert d.std == pytest.approx((0.2452, 0.2428, 0.2606), abs=1e-4)
    t = time.perf_counter()
    again = D.load_data(ARCHIVE, cache_dir=tmp_path / "c", per_class=100, resolution=16)
    assert time.perf_counter() - t < 3.0  # about 0.2 s measured; slack for a busy CI machine
    assert again.train.x.shape == (1000, 3, 16, 16) and torch.bincount(again.test().y).tolist() == [1000] * 10


def test_the_default_archive_is_the_one_beside_the_repository():
    """The README's main job reads ../shared/datasets/cifar10-jpeg.tar.gz beside the checkout, wherever
    the module sits in the package tree."""
    from explorer.core.runtime import git_revision
    from explorer.training.datasource import default_archive

    repo = Path(__file__).resolve().parents[1]
    assert default_archive() == repo.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
    assert git_revision() != "unknown"  # run from the repository: its revision is found

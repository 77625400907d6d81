"""Bad data and a damaged cache (issue 13, items 8, 9, 10, 12 and the cache half of 13).

Each test builds its own small ImageFolder tree or archive in tmp_path and reproduces one
defect of the data layer as it was: a traceback, a silent wrong value, or a leftover.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core.errors import UserError
from explorer.training import data as D
from explorer.training import data_cache as C
from explorer.training import datasource

CLASSES = ("cat", "dog")
N_TRAIN, N_TEST = 4, 2  # per class


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Cache in tmp_path, no data source or cache cap from the environment."""
    monkeypatch.setenv(D.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(datasource.ENV, raising=False)
    monkeypatch.delenv(C.ENV_MAX_MB, raising=False)


def make_tree(root: Path, classes=CLASSES, shade: int = 0, noise: bool = False) -> Path:
    """train/ and test/ of 8x8 PNGs; pixel (0, 0) of R is a unique id, G = shade."""
    ident, rng = 0, np.random.default_rng(shade)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for k in range(n):
                px = rng.integers(0, 256, (8, 8, 3), np.uint8) if noise else np.zeros((8, 8, 3), np.uint8)
                px[0, 0, 0], px[..., 1] = ident, shade
                Image.fromarray(px).save(root / split / cls / f"{k:03d}.png")
                ident += 1
    return root


def make_tar(tree: Path, out: Path, mode: str = "w:gz") -> Path:
    """An archive of the tree under a leading folder, as archives usually come."""
    with tarfile.open(out, mode) as tf:
        tf.add(tree, arcname="mydata")
    return out


def one_line_error(fn, *args, **kwargs) -> str:
    """The message of the UserError `fn` raises; it must be one line."""
    with pytest.raises(UserError) as err:
        fn(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def n_images(d: D.Data) -> int:
    return len(d.train.y) + len(d.val.y)


# --- item 8 and 12a: empty, non-image and corrupt files -----------------------------------

@pytest.mark.parametrize("packed", [False, True])
def test_empty_and_non_image_files_are_skipped_and_counted(tmp_path, packed):
    tree = make_tree(tmp_path / "tree")
    (tree / "train" / "cat" / "empty.png").write_bytes(b"")
    (tree / "train" / "dog" / "README.txt").write_text("where these came from")
    (tree / "test" / "cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    source = make_tar(tree, tmp_path / "t.tar.gz") if packed else tree
    d = D.load_data(source, val_per_class=1)
    assert n_images(d) == len(CLASSES) * N_TRAIN and len(d.test().y) == len(CLASSES) * N_TEST
    prefix = "mydata/" if packed else ""
    assert d.skipped == tuple(sorted(prefix + p for p in
                                     ("train/cat/empty.png", "train/dog/README.txt", "test/cat/Thumbs.db")))
    (note,) = d.notes
    assert "2 files that are not images" in note and "1 empty file" in note and "README.txt" in note
    again = D.load_data(source, val_per_class=1)  # from the cache: still reported
    assert again.skipped == d.skipped and again.notes == d.notes


def test_image_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert D.IMAGE_EXTENSIONS == IMG_EXTENSIONS


@pytest.mark.parametrize("packed", [False, True])
def test_a_corrupt_image_is_one_line_naming_the_file(tmp_path, packed):
    tree = make_tree(tmp_path / "tree")
    (tree / "train" / "dog" / "bad.jpg").write_bytes(b"this is not a JPEG" * 10)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tree / "test" / "cat" / "cut.png")
    cut = tree / "test" / "cat" / "cut.png"
    cut.write_bytes(cut.read_bytes()[:40])  # a truncated PNG
    source = make_tar(tree, tmp_path / "t.tar.gz") if packed else tree
    msg = one_line_error(D.load_data, source, val_per_class=1)
    prefix = "mydata/" if packed else ""
    assert f"{prefix}train/dog/bad.jpg" in msg and f"{prefix}test/cat/cut.png" in msg
    assert str(source) in msg and "cannot decode 2 of" in msg and "BytesIO" not in msg


def test_a_damaged_png_is_an_error_not_a_crash(tmp_path):
    # torchvision 0.29.1's PNG decoder segfaults on this (zlib's check of IDAT fails).
    tree = make_tree(tmp_path / "tree", noise=True)
    png = tree / "train" / "cat" / "001.png"
    raw = bytearray(png.read_bytes())
    at = raw.index(b"IDAT") + 40
    raw[at:at + 8] = bytes(b ^ 0x5A for b in raw[at:at + 8])
    png.write_bytes(bytes(raw))
    code = f"from explorer.training.data import load_data; load_data({str(tree)!r}, val_per_class=1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "UserError" in proc.stderr  # raised, not killed by a signal
    assert "train/cat/001.png" in proc.stderr.splitlines()[-1]


# --- item 10: bit depth and class count --------------------------------------------------

def png16_rgb(rgb: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (PIL cannot write one): signature, IHDR, IDAT, IEND."""
    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(h))  # filter 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("kind", ["grey.png", "grey.tiff", "rgb.png"])
def test_16_bit_images_are_scaled_to_8_bits(tmp_path, kind):
    grad = np.linspace(0, 62000, 64).round().astype(np.uint16).reshape(8, 8)
    rgb = np.stack([grad, 65535 - grad, grad // 2], axis=-1) if kind == "rgb.png" else np.stack([grad] * 3, -1)
    for split, n in (("train", 3), ("test", 1)):
        for cls in CLASSES:
            (tmp_path / "t" / split / cls).mkdir(parents=True)
            for k in range(n):
                path = tmp_path / "t" / split / cls / f"{k}-{kind}"
                if kind == "rgb.png":
                    path.write_bytes(png16_rgb(rgb))
                else:
                    Image.fromarray(grad).save(path)
    d = D.load_data(tmp_path / "t", val_per_class=1)
    want = torch.from_numpy(np.round(rgb / 65535 * 255)).permute(2, 0, 1)  # 62000 -> 241
    for x in torch.cat([d.train.x, d.val.x, d.test().x]):
        assert (x.int() - want.int()).abs().max() <= 1  # a low byte (or a clip at 255) is far off


def test_one_class_is_refused(tmp_path):
    msg = one_line_error(D.load_data, make_tree(tmp_path / "t", classes=("cat",)), val_per_class=1)
    assert "one class (cat)" in msg and "at least two" in msg


# --- item 12b: damaged archives ----------------------------------------------------------

def test_a_tar_gz_that_is_not_gzip_is_one_line(tmp_path):
    fake = tmp_path / "data.tar.gz"
    fake.write_bytes(b"PK\x03\x04 a zip file, renamed" * 20)
    msg = one_line_error(D.load_data, fake)
    assert str(fake) in msg and "not gzip" in msg


def test_gzip_without_a_tar_inside_is_one_line(tmp_path):
    import gzip

    fake = tmp_path / "data.tgz"
    fake.write_bytes(gzip.compress(b"just some text\n" * 100))
    msg = one_line_error(D.load_data, fake)
    assert str(fake) in msg and "no tar archive inside" in msg


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7, 0.9])
def test_gzip_damaged_mid_stream_names_the_archive(tmp_path, where):
    good = make_tar(make_tree(tmp_path / "tree", noise=True), tmp_path / "good.tar.gz")
    raw = bytearray(good.read_bytes())
    at = int(len(raw) * where)
    raw[at:at + 8] = bytes(b ^ 0xA5 for b in raw[at:at + 8])
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(raw))
    msg = one_line_error(D.load_data, bad, val_per_class=1)
    assert f"cannot read archive {bad}: it is damaged" in msg and "copy or download it again" in msg


def test_a_truncated_archive_names_the_archive(tmp_path):
    good = make_tar(make_tree(tmp_path / "tree", noise=True), tmp_path / "good.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert f"cannot read archive {cut}: it is damaged" in one_line_error(D.load_data, cut, val_per_class=1)


def test_a_damaged_tar_header_is_not_a_shorter_dataset(tmp_path):
    tar = make_tar(make_tree(tmp_path / "tree"), tmp_path / "t.tar", mode="w")
    raw = bytearray(tar.read_bytes())
    with tarfile.open(tar) as tf:
        member = [m for m in tf.getmembers() if m.isfile()][5]
    raw[member.offset + 148:member.offset + 156] = b"9999999\0"  # its header checksum
    tar.write_bytes(bytes(raw))
    # tarfile stops quietly at a bad header after the first member: 5 of 12 images, no error.
    msg = one_line_error(D.load_data, tar, val_per_class=1)
    assert f"cannot read archive {tar}: it is damaged" in msg


# --- item 9: a damaged cache, content keys, fsync, the size cap -----------------------------

def entry_files(cache: Path, name: str) -> list[Path]:
    """Files of this name in the cache's entries, whatever the layout."""
    return sorted((cache / "decoded").rglob(name))


def same_images(a: D.Data, b: D.Data) -> bool:
    return all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in
               ((a.train, b.train), (a.val, b.val), (a.test(), b.test())))


@pytest.mark.parametrize("damage", ["truncate", "flip", "zeros"])
def test_a_damaged_cache_is_reported_and_decoded_again(tmp_path, damage):
    tree = make_tree(tmp_path / "tree", noise=True)
    first = D.load_data(tree, val_per_class=1)
    (train_pt,) = entry_files(tmp_path / "cache", "train.pt")
    raw = bytearray(train_pt.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:  # same size, wrong bytes in the middle: the image data
        mid = len(raw) // 2
        raw[mid:mid + 64] = bytes(64) if damage == "zeros" else bytes(b ^ 0xFF for b in raw[mid:mid + 64])
    train_pt.write_bytes(bytes(raw))
    again = D.load_data(tree, val_per_class=1)
    assert same_images(first, again)
    (note,) = again.notes
    assert "damaged" in note and "decoding it again" in note and str(tree) in note
    third = D.load_data(tree, val_per_class=1)  # repaired: no note
    assert third.notes == [] and same_images(first, third)


def test_a_missing_test_split_is_decoded_again(tmp_path):
    tree = make_tree(tmp_path / "tree")
    first = D.load_data(tree, val_per_class=1)
    (test_pt,) = entry_files(tmp_path / "cache", "test.pt")
    test_pt.unlink()
    again = D.load_data(tree, val_per_class=1)
    assert torch.equal(again.test().x, first.test().x) and "test.pt missing" in again.notes[0]


def test_a_copy_of_an_archive_shares_its_cache_entry(tmp_path, monkeypatch):
    tar = make_tar(make_tree(tmp_path / "tree"), tmp_path / "a.tar.gz")
    first = D.load_data(tar, val_per_class=1)
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "renamed.tgz"
    copy.write_bytes(tar.read_bytes())

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(D, "_decode_tree", no_decoding)
    assert same_images(first, D.load_data(copy, val_per_class=1))
    assert len(entry_files(tmp_path / "cache", "train.pt")) == 1


def test_the_content_hash_is_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    tar = make_tar(make_tree(tmp_path / "tree"), tmp_path / "a.tar.gz")
    D.load_data(tar, val_per_class=1)
    hashed = []
    real = C._hash_contents
    monkeypatch.setattr(C, "_hash_contents", lambda *a: hashed.append(a) or real(*a))
    monkeypatch.setattr(D, "_decode_tree", lambda *a: pytest.fail("decoded again"))
    D.load_data(tar, val_per_class=1)
    assert hashed == []  # same path, size and mtime: not read again
    os.utime(tar, ns=(0, 10**18))  # a new mtime, the same bytes: hashed, found, not decoded
    D.load_data(tar, val_per_class=1)
    assert len(hashed) == 1


def test_cache_files_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced, order = set(), []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst):
        order.append((Path(dst).name, os.fspath(src) in synced))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    D.load_data(make_tree(tmp_path / "tree"), val_per_class=1)
    written = [name for name, _ in order]
    assert {"train.pt", "test.pt"} <= set(written) and all(ok for _, ok in order)


def test_an_unwritable_cache_still_loads(tmp_path, monkeypatch):
    def full_disk(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C, "atomic_write", full_disk)
    d = D.load_data(make_tree(tmp_path / "tree"), val_per_class=1)
    assert len(d.test().y) == len(CLASSES) * N_TEST
    assert "No space left on device" in d.notes[0] and "in memory" in d.notes[0]


def entry_bytes(cache: Path) -> int:
    (folder,) = {p.parent for p in entry_files(cache, "train.pt")}
    return sum(p.stat().st_size for p in folder.iterdir())


def cached_sources(cache: Path) -> list[str]:
    """The folder names of the sources that have a complete cache entry."""
    return sorted(Path(json.loads(p.read_text())["source"]).name
                  for p in entry_files(cache, "manifest.json"))


def test_the_cache_keeps_its_cap_evicting_the_least_recently_used(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    trees = [make_tree(tmp_path / f"t{i}", shade=10 * (i + 1)) for i in range(3)]
    D.load_data(trees[0], val_per_class=1)
    size = entry_bytes(cache)
    monkeypatch.setenv(C.ENV_MAX_MB, str(2.5 * size / 1e6))  # room for two entries, not three
    D.load_data(trees[1], val_per_class=1)
    time.sleep(0.05)
    D.load_data(trees[0], val_per_class=1)  # used again: now t1 is the least recent
    time.sleep(0.05)
    d = D.load_data(trees[2], val_per_class=1)
    assert cached_sources(cache) == ["t0", "t2"]
    assert any("evicted 1 least recently used cache entry" in n for n in d.notes)
    assert len(list((cache / "decoded" / "v2" / "index").iterdir())) == 2  # t1's memo went too


def test_a_bad_cap_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_MAX_MB, "2GB")  # refused on a fresh cache too, before decoding
    monkeypatch.setattr(D, "_decode_tree", lambda *a: pytest.fail("decoded despite the bad cap"))
    assert C.ENV_MAX_MB in one_line_error(D.load_data, make_tree(tmp_path / "t"), val_per_class=1)


# --- item 13, cache half: temporaries left by a killed decode -----------------------------

KILLED_WRITER = """
import os, signal, sys, torch
def dying_save(obj, f, *args, **kwargs):
    f.write(b"\\0" * 100_000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 in the middle of the cache write
torch.save = dying_save
from explorer.training.data import load_data
load_data(sys.argv[1], val_per_class=1)
"""


def test_a_killed_decode_leaves_no_temporary_file_behind(tmp_path):
    tree = make_tree(tmp_path / "tree")
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tree)], env=dict(os.environ),
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    cache = tmp_path / "cache"
    assert len(list(cache.rglob("*.tmp"))) == 1  # what the killed process left
    d = D.load_data(tree, val_per_class=1)
    assert not list(cache.rglob("*.tmp")) and "removed 1 temporary file" in d.notes[0]


def test_temporaries_of_live_writers_are_kept_and_old_ones_removed(tmp_path):
    tree = make_tree(tmp_path / "tree")
    D.load_data(tree, val_per_class=1)
    (entry,) = {p.parent for p in entry_files(tmp_path / "cache", "train.pt")}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = entry / f"train.pt~{C._host()}~{sleeper.pid}~abc.tmp"
        other_host = entry / "train.pt~some-other-host~1~abc.tmp"
        version1 = tmp_path / "cache" / "decoded" / "tree-0123456789abcdef" / "train.ptq1w2e3.tmp"
        version1.parent.mkdir()
        old = entry / "test.pt~some-other-host~1~old.tmp"
        for p in (live, other_host, version1, old):
            p.write_bytes(b"\0" * 1000)
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        os.utime(version1, (hour_ago, hour_ago))
        d = D.load_data(tree, val_per_class=1)
        assert live.exists() and other_host.exists()  # maybe still being written
        assert not old.exists() and not version1.exists()
        assert "removed 2 temporary files" in d.notes[0]
    finally:
        sleeper.kill()
        sleeper.wait()
    D.load_data(tree, val_per_class=1)
    assert not live.exists() and other_host.exists()  # its writer is gone now

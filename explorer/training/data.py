"""Datasets -> uint8 tensors, decoded once and cached; a seeded class-balanced val split.

Sources (the `source` argument, `--data`, or $EXPLORER_DATA):

    cifar10, cifar100        torchvision's pickles, read from `root` (or `cifar10:ROOT`);
                             downloaded into the cache when absent and online
    PATH                     an ImageFolder tree: PATH/train/<class>/*, PATH/test/<class>/*
    PATH.tar.gz|.tgz|.tar    an archive of such a tree (any leading folder is ignored)
    synthetic                random class-coloured images: for unit tests only

Decoded images live in the cache (`cache_dir`, $EXPLORER_CACHE, or ~/.cache/explorer),
keyed by the source's contents (explorer.training.data_cache), so a second load of CIFAR-10 reads
two files. Files of a tree whose extension is not an image's (IMAGE_EXTENSIONS) and empty
files are skipped and counted in `Data.notes`; a file that cannot be decoded is an error
naming it. 16-bit images are scaled to 8 bits. Images of a tree that differ in size from
the first training image are resized to it (antialiased bilinear).

Trials see `data.train` and `data.val` (carved out of the training images); the test
split is loaded only by `data.test()`, for the final evaluation of chosen models.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

from explorer.core.errors import UserError
from explorer.training import data_cache
from explorer.training.datasource import ENV, given_source

ENV_CACHE = "EXPLORER_CACHE"
# torchvision's ImageFolder list (torchvision.datasets.folder.IMG_EXTENSIONS, a test keeps them
# equal), copied so that importing this module does not import torchvision; case-insensitive.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CIFAR = {  # name -> (folder, train files, test files, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
HOW_TO = ("pass --data cifar10|cifar100|PATH (an ImageFolder tree with train/ and test/, "
          f"or a .tar.gz of one) or set {ENV}")
_DECODE_CHUNK = 2000  # images per decode task: large enough to amortise thread hand-off
_NAMES_SHOWN = 3  # file names quoted in a one-line message
_JPEG_MAGIC = b"\xff\xd8\xff"


class Images(NamedTuple):
    """Images as uint8 (N, 3, H, W) and int64 labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Data:
    """Train and val splits in memory; the test split is loaded only by `test()`."""

    train: Images
    val: Images
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # per channel, on the 0..1 scale, of all training images
    std: tuple[float, float, float]
    source: str
    resolution: int
    _load_test: Callable[[], Images] = field(repr=False, compare=False)
    skipped: tuple[str, ...] = ()  # files of the source that are not images (by name) or empty
    # One-line messages for the user (skipped files, a repaired or full cache); the CLI prints
    # them. `test()` may add one, so this list grows.
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def test(self) -> Images:
        """The held-out test split, at `resolution`: for final evaluation only, never trials."""
        return self._load_test()


def load_data(source: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, per_class: int | None = None,
              val_per_class: int | None = None, val_fraction: float = 0.1,
              resolution: int | None = None, seed: int = 0, download: bool = True) -> Data:
    """Load a dataset (see the module docstring) and carve a seeded, class-balanced val split.

    `per_class` keeps that many training images per class (after the val split);
    `val_per_class` defaults to `val_fraction` of the smallest class; `resolution`
    resizes every split once, on load (e.g. 32 -> 16 for cheap studies).
    """
    source = given_source(source)
    if not source:
        raise UserError(f"no data source given: {HOW_TO}")
    cache = resolve_cache_dir(cache_dir)
    notes: list[str] = []
    load_split = _split_loader(source, root, cache, download, notes)
    full = load_split("train")
    x, y = full["x"], full["y"]
    classes = tuple(full["classes"])
    if len(classes) < 2:  # one class would score val_acc 1.0 and dominate any front
        raise UserError(f"data {source} has one class ({', '.join(classes) or 'none'}) in train/; "
                        "a classifier needs at least two class folders")
    skipped = full.get("skipped", {})
    if any(skipped.values()):
        notes.append(_skip_note(source, skipped))
    val_n = val_per_class if val_per_class is not None else _default_val(y, len(classes), val_fraction)
    train_idx, val_idx = split_indices(y, len(classes), val_n, per_class, seed)
    size = resolution or x.shape[-1]

    def test() -> Images:
        t = load_split("test")
        return Images(resize(t["x"], size), t["y"])

    return Data(train=Images(resize(x[train_idx], size), y[train_idx]),
                val=Images(resize(x[val_idx], size), y[val_idx]),
                classes=classes, mean=tuple(full["mean"]), std=tuple(full["std"]),
                source=str(source), resolution=size, _load_test=test,
                skipped=tuple(sorted(n for names in skipped.values() for n in names)), notes=notes)


def _skip_note(source: str, skipped: dict[str, list[str]]) -> str:
    """One line: how many files were skipped, why, and the first few names."""
    kinds = (("not_image", "file that is not an image by extension",
              "files that are not images by extension"), ("empty", "empty file", "empty files"))
    counts = [f"{len(skipped[k]):,} {one if len(skipped[k]) == 1 else many}"
              for k, one, many in kinds if skipped.get(k)]
    names = sorted(n for names in skipped.values() for n in names)
    return (f"data {source}: skipped {' and '.join(counts)}: {_some(names)} "
            f"(image extensions: {' '.join(IMAGE_EXTENSIONS)})")


def _some(names: list[str]) -> str:
    """The first few names, and how many more."""
    more = len(names) - _NAMES_SHOWN
    return ", ".join(names[:_NAMES_SHOWN]) + (f" and {more:,} more" if more > 0 else "")


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else $EXPLORER_CACHE, else ~/.cache/explorer."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else Path.home() / ".cache" / "explorer"


def split_indices(y: torch.Tensor, num_classes: int, val_per_class: int, per_class: int | None,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices: `val_per_class` of each class to val, seeded."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(num_classes):
        idx = (y == c).nonzero().flatten()
        if len(idx) <= val_per_class:
            raise UserError(f"class {c} has {len(idx)} training images, too few for "
                            f"val_per_class={val_per_class}; lower val_per_class")
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:val_per_class])
        train.append(idx[val_per_class:][:per_class])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 images resized to size x size (antialiased bilinear); unchanged if already so."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = [F.interpolate(x[i:i + chunk].float(), size=(size, size), mode="bilinear",
                         antialias=True, align_corners=False).round_().clamp_(0, 255)
           for i in range(0, len(x), chunk)]
    return torch.cat(out).to(torch.uint8) if out else x.new_empty((0, 3, size, size))


def _default_val(y: torch.Tensor, num_classes: int, fraction: float) -> int:
    """`fraction` of the smallest class, at least one image."""
    smallest = int(torch.bincount(y, minlength=num_classes).min())
    return max(1, round(fraction * smallest))


# --- sources -> a function loading one split (cached) ---------------------------------

def _split_loader(source: str, root, cache: Path, download: bool,
                  notes: list[str]) -> Callable[[str], dict]:
    """A function `split -> {"x", "y", "classes", "mean", "std"}` for this source."""
    name, _, inline_root = source.partition(":")
    if name == "synthetic":
        return lambda split: _synthetic(split)
    if name in CIFAR:
        folder = _cifar_folder(name, inline_root or root, cache, download)
        files = [folder / f for f in [CIFAR[name][3], *CIFAR[name][1], *CIFAR[name][2]]]
        return data_cache.loader(cache, name, folder, files, lambda: _read_cifar(name, folder), notes)
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"data source {source!r} does not exist: {HOW_TO}")
    if path.is_dir():
        files = _tree_listing(path)
        return data_cache.loader(cache, "tree", path, files,
                                 lambda: _decode_tree(_tree_files(path, files), f"folder {path}"), notes)
    if path.name.endswith(ARCHIVE_SUFFIXES):
        return data_cache.loader(cache, "archive", path, [path],
                                 lambda: _decode_tree(_tar_files(path), f"archive {path}"), notes)
    raise UserError(f"data source {source!r} is neither a folder nor a .tar.gz: {HOW_TO}")


def _with_stats(x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict:
    """A split record; mean and std per channel on the 0..1 scale, exact from histograms."""
    # A histogram of the 256 values per channel is exact and 10x faster than float sums.
    hist = torch.stack([x[:, c].flatten().bincount(minlength=256) for c in range(3)]).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    n = hist.sum(1).clamp_min(1)
    mean = (hist * v).sum(1) / n
    std = ((hist * (v - mean[:, None]) ** 2).sum(1) / n).sqrt()
    return {"x": x.contiguous(), "y": y, "classes": classes, "mean": mean.tolist(), "std": std.tolist()}


def _synthetic(split: str, classes: int = 10, size: int = 32, seed: int = 1234) -> dict:
    """SYNTHETIC data for unit tests: a random colour per class plus noise; learnable."""
    n = 128 if split == "train" else 32
    g = torch.Generator().manual_seed(seed + (split == "test"))
    colours = torch.rand(classes, 3, 1, 1, generator=torch.Generator().manual_seed(seed)) * 255
    y = torch.arange(classes).repeat_interleave(n)
    noise = torch.randn(len(y), 3, size, size, generator=g) * 48
    x = (colours[y] + noise).round().clamp(0, 255).to(torch.uint8)
    return _with_stats(x, y, [f"synthetic{c}" for c in range(classes)])


# --- CIFAR pickles --------------------------------------------------------------------

def _cifar_folder(name: str, root, cache: Path, download: bool) -> Path:
    """The folder holding the pickles: found under `root`, or downloaded into the cache."""
    sub, train_files = CIFAR[name][0], CIFAR[name][1]
    base = Path(root).expanduser() if root else cache / "torchvision"
    for folder in (base / sub, base):
        if (folder / train_files[0]).exists():
            return folder
    if root or not download:
        raise UserError(f"{name} not found in {base}: pass the folder holding {sub}/ "
                        f"(--data {name}:ROOT), or go online and let it download")
    return _download_cifar(name, base) / sub


def _download_cifar(name: str, base: Path) -> Path:
    """Download with torchvision; offline, a one-line UserError instead of a traceback."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        cls(str(base), train=True, download=True)
    except Exception as exc:  # URLError, timeouts, bad checksums: all mean "no data"
        raise UserError(f"could not download {name} into {base} ({type(exc).__name__}); "
                        f"copy {CIFAR[name][0]}/ there, or {HOW_TO}") from None
    return base


def _read_cifar(name: str, folder: Path) -> dict:
    """Both splits of the CIFAR pickles (N, 32*32*3 rows, channel-major) as uint8 tensors."""
    _, train_files, test_files, meta, label_key, names_key = CIFAR[name]
    classes = _unpickle(folder / meta)[names_key]

    def read(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [_unpickle(folder / f) for f in files]
        x = torch.cat([torch.as_tensor(b["data"]).reshape(-1, 3, 32, 32) for b in batches])
        y = torch.cat([torch.as_tensor(b[label_key], dtype=torch.int64) for b in batches])
        return x, y

    return {"train": _with_stats(*read(train_files), classes),
            "test": _with_stats(*read(test_files), classes)}


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle, as torchvision reads it."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


# --- ImageFolder trees and archives ---------------------------------------------------

def _tree_listing(path: Path) -> list[Path]:
    """Every file of a tree's train/<class>/ and test/<class>/ folders (hidden ones ignored)."""
    return [f for split in ("train", "test") for f in sorted((path / split).glob("*/*"))
            if f.is_file() and not f.name.startswith(".")]


def _tree_files(path: Path, files: list[Path]) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(split, class, name, bytes) for each listed file; bytes None for a non-image name."""
    for f in files:
        name = f.relative_to(path).as_posix()
        yield f.parent.parent.name, f.parent.name, name, f.read_bytes() if _is_image(name) else None


def _tar_files(path: Path) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(split, class, member name, bytes) for each file of an archived tree, in archive order."""
    try:
        tf = tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read archive {path}: {_not_an_archive(path, exc)}") from None
    except OSError as exc:
        raise UserError(f"cannot read archive {path}: {exc.strerror or exc}") from None
    try:
        with tf:
            for m in tf:
                parts = m.name.split("/")
                if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test") \
                        and not parts[-1].startswith("."):
                    data = tf.extractfile(m).read() if _is_image(m.name) else None
                    yield parts[-3], parts[-2], m.name, data
            _check_archive_end(tf)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise UserError(f"cannot read archive {path}: it is damaged ({_one_line(exc)}); "
                        "copy or download it again") from None


def _not_an_archive(path: Path, exc: BaseException) -> str:
    """Why tarfile could not open a file, in a few words (its own message has 4 lines)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "it is empty (0 bytes)"
    if path.name.endswith((".gz", ".tgz")) and head[:2] != b"\x1f\x8b":
        return f"it is not gzip data (it starts with {head!r}); expected a gzip-compressed tar file"
    if isinstance(exc, tarfile.ReadError) and "\n" in str(exc):  # every method failed
        inside = "gzip data but no tar archive inside" if head[:2] == b"\x1f\x8b" else "not a tar file"
        return f"it is {inside} (tar, tar.gz, tar.bz2 or tar.xz expected)"
    return f"it is damaged ({_one_line(exc)}); copy or download it again"


def _check_archive_end(tf: tarfile.TarFile) -> None:
    """Read to the end: gzip then checks its CRC, and a bad header cannot end the tree early."""
    # tarfile stops quietly at a damaged header after the first member, and gzip checks its
    # checksum only at the end of the stream: without this, damage reads as fewer images.
    while chunk := tf.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            last = tf.members[-1].name if tf.members else "the start"
            raise tarfile.ReadError(f"data goes on after the tar end marker that follows {last}: "
                                    "a damaged header, or archives joined together")


def _one_line(exc: BaseException) -> str:
    """An exception as a short line: its first line, or its type when it has no message."""
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


def _is_image(name: str) -> bool:
    """Whether a file name has an image extension (IMAGE_EXTENSIONS, any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _decode_tree(files: Iterator[tuple[str, str, str, bytes | None]], origin: str) -> dict:
    """Decode a tree's images while the files stream in; label = sorted train class index."""
    pending: dict[str, list[tuple[str, bytes]]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}  # class of each image
    futures: dict[str, list] = {"train": [], "test": []}
    skipped: dict[str, list[str]] = {"not_image": [], "empty": []}
    size = None
    # torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work, and
    # a warning per image would cost more than the decoding.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                            category=DeprecationWarning)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        # Decoding overlaps the (gzip) reading; torchvision decoders release the GIL.
        for split, cls, name, data in files:
            if not data:
                skipped["not_image" if data is None else "empty"].append(name)
                continue
            size = size or _size_or_none(data)
            pending[split].append((name, data))
            names[split].append(cls)
            if size and len(pending[split]) >= _DECODE_CHUNK:
                futures[split].append(pool.submit(_decode_many, pending[split], size))
                pending[split] = []
        for split in ("train", "test"):
            if pending[split]:
                futures[split].append(pool.submit(_decode_many, pending[split], size or (1, 1)))
        done = {s: [f.result() for f in futures[s]] for s in futures}
    _raise_failures([bad for s in done for _, fails in done[s] for bad in fails], names, origin)
    classes = sorted(set(names["train"]))
    if not classes or not names["test"]:
        raise UserError(f"no images found in train/<class>/ and test/<class>/ of {origin}: " + HOW_TO)
    unknown = sorted(set(names["test"]) - set(classes))
    if unknown:
        raise UserError(f"test/ has classes that train/ lacks: {', '.join(unknown)}")
    index = {c: i for i, c in enumerate(classes)}
    splits = {s: _with_stats(torch.cat([x for x, _ in done[s]]), torch.tensor([index[c] for c in names[s]]),
                             classes) for s in ("train", "test")}
    splits["train"]["skipped"] = skipped
    return splits


def _raise_failures(failures: list[tuple[str, str]], names: dict, origin: str) -> None:
    """One line naming the files that could not be decoded, if any."""
    if failures:
        total = sum(len(v) for v in names.values())
        shown = "; ".join(f"{name} ({why})" for name, why in failures[:_NAMES_SHOWN])
        more = f"; and {len(failures) - _NAMES_SHOWN:,} more" if len(failures) > _NAMES_SHOWN else ""
        raise UserError(f"cannot decode {len(failures):,} of {total:,} images in {origin}: {shown}{more}; "
                        "remove or replace them")


def _size_or_none(data: bytes) -> tuple[int, int] | None:
    """(H, W) of an encoded image, or None if it cannot be decoded (reported later, by name)."""
    try:
        return tuple(_decode(data).shape[-2:])
    except Exception:  # the same image fails again in _decode_many, which names it
        return None


def _decode_many(items: list[tuple[str, bytes]], size: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """Decode a chunk to uint8 (n, 3, H, W), resizing odd sizes; also (name, why) of failures."""
    out = torch.empty(len(items), 3, *size, dtype=torch.uint8)
    failures = []
    for i, (name, data) in enumerate(items):
        try:
            img = _decode(data)
        except Exception as exc:  # any decoder error means this one file is bad: name it
            failures.append((name, _one_line(exc).split(" <_io.")[0]))
            continue
        out[i] = img if tuple(img.shape[-2:]) == size else _resize_hw(img, size)
    return out, failures


def _resize_hw(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One uint8 image resized to (H, W), antialiased bilinear."""
    out = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def _decode(data: bytes) -> torch.Tensor:
    """One encoded image as uint8 RGB (3, H, W): torchvision for JPEG, PIL for the rest."""
    # torchvision decodes JPEG fastest (the CIFAR archive). Its PNG decoder kills the process
    # on a damaged PNG (torchvision 0.29.1: a segfault after "libpng error: IDAT: incorrect
    # data check"), so PNG and every other format go through PIL, which raises instead.
    if data[:3] == _JPEG_MAGIC:
        from torchvision.io import ImageReadMode, decode_image
        from torchvision.transforms.v2.functional import to_dtype

        try:
            img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            return _decode_pil(data)  # PIL reads some JPEGs libjpeg refuses, or says why not
        # A 12-bit JPEG would decode to uint16: scale it (a cast would keep only the low byte).
        return img if img.dtype == torch.uint8 else to_dtype(img, torch.uint8, scale=True)
    return _decode_pil(data)


def _decode_pil(data: bytes) -> torch.Tensor:
    """An encoded image as uint8 RGB (3, H, W) with PIL; 16-bit samples scaled to 8 bits."""
    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2.functional import to_dtype

    img = Image.open(io.BytesIO(data))
    # PIL reads 16-bit colour as its high bytes, but 16-bit grey as mode I;16 (or I), which
    # convert("RGB") clips at 255: scale it as torchvision's to_dtype does (>> 8).
    if img.mode.startswith("I"):
        grey = torch.from_numpy(np.asarray(img, dtype=np.int32)).clamp(0, 65535).to(torch.uint16)
        return to_dtype(grey, torch.uint8, scale=True).expand(3, -1, -1).contiguous()
    img = img.convert("RGB")
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8) \
        .reshape(img.height, img.width, 3).permute(2, 0, 1).contiguous()

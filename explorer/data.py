"""Datasets -> uint8 tensors, decoded once and cached; a seeded class-balanced val split.

Sources (the `source` argument, `--data`, or $EXPLORER_DATA):

    cifar10, cifar100        torchvision's pickles, read from `root` (or `cifar10:ROOT`);
                             downloaded into the cache when absent and online
    PATH                     an ImageFolder tree: PATH/train/<class>/*, PATH/test/<class>/*
    PATH.tar.gz|.tgz|.tar    an archive of such a tree (any leading folder is ignored)
    synthetic                random class-coloured images: for unit tests only

Decoded images live in the cache (`cache_dir`, $EXPLORER_CACHE, or ~/.cache/explorer)
keyed by the source and its contents (path, sizes, mtimes), written atomically, so a
second load of CIFAR-10 reads two files. Images of a tree that differ in size from the
first training image are resized to it (antialiased bilinear).

Trials see `data.train` and `data.val` (carved out of the training images); the test
split is loaded only by `data.test()`, for the final evaluation of chosen models.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

from explorer.errors import UserError

ENV_DATA = "EXPLORER_DATA"
ENV_CACHE = "EXPLORER_CACHE"
CACHE_VERSION = 1  # bump when the decoded format changes
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CIFAR = {  # name -> (folder, train files, test files, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
HOW_TO = ("pass --data cifar10|cifar100|PATH (an ImageFolder tree with train/ and test/, "
          f"or a .tar.gz of one) or set {ENV_DATA}")
_DECODE_CHUNK = 2000  # images per decode task: large enough to amortise thread hand-off


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
    source = resolve_source(source)
    cache = resolve_cache_dir(cache_dir)
    load_split = _split_loader(source, root, cache, download)
    full = load_split("train")
    x, y = full["x"], full["y"]
    classes = tuple(full["classes"])
    val_n = val_per_class if val_per_class is not None else _default_val(y, len(classes), val_fraction)
    train_idx, val_idx = split_indices(y, len(classes), val_n, per_class, seed)
    size = resolution or x.shape[-1]

    def test() -> Images:
        t = load_split("test")
        return Images(resize(t["x"], size), t["y"])

    return Data(train=Images(resize(x[train_idx], size), y[train_idx]),
                val=Images(resize(x[val_idx], size), y[val_idx]),
                classes=classes, mean=tuple(full["mean"]), std=tuple(full["std"]),
                source=str(source), resolution=size, _load_test=test)


def resolve_source(source: str | os.PathLike | None) -> str:
    """The data source: the argument, else $EXPLORER_DATA, else a one-line UserError."""
    source = source if source not in (None, "") else os.environ.get(ENV_DATA)
    if not source:
        raise UserError(f"no data source given: {HOW_TO}")
    return os.fspath(source)


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

def _split_loader(source: str, root, cache: Path, download: bool) -> Callable[[str], dict]:
    """A function `split -> {"x", "y", "classes", "mean", "std"}` for this source."""
    name, _, inline_root = source.partition(":")
    if name == "synthetic":
        return lambda split: _synthetic(split)
    if name in CIFAR:
        folder = _cifar_folder(name, inline_root or root, cache, download)
        return _cached(cache, name, _stat_key(folder), lambda: _read_cifar(name, folder))
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"data source {source!r} does not exist: {HOW_TO}")
    if path.is_dir():
        return _cached(cache, path.name, _stat_key(path), lambda: _decode_tree(_tree_files(path)))
    if path.name.endswith(ARCHIVE_SUFFIXES):
        return _cached(cache, path.name, _stat_key(path), lambda: _decode_tree(_tar_files(path)))
    raise UserError(f"data source {source!r} is neither a folder nor a .tar.gz: {HOW_TO}")


def _cached(cache: Path, name: str, key: str, decode: Callable[[], dict]) -> Callable[[str], dict]:
    """Load a split from the cache, decoding both splits (and writing them) on a miss."""
    folder = cache / "decoded" / f"{name}-{key}"

    def load(split: str) -> dict:
        # train.pt is written last, so its presence means test.pt is complete too.
        if not (folder / "train.pt").exists():
            splits = decode()
            folder.mkdir(parents=True, exist_ok=True)
            for s in ("test", "train"):
                _atomic_save(splits[s], folder / f"{s}.pt")
        return torch.load(folder / f"{split}.pt", weights_only=True)

    return load


def _atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temporary file and rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared cache wants the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stat_key(path: Path) -> str:
    """16 hex digits from the path and the size and mtime of every file under it."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256(f"v{CACHE_VERSION}|{path}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p.relative_to(path) if p != path else ''}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


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

def _tree_files(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """(split, class, bytes) for every image of a tree on disk."""
    for split in ("train", "test"):
        for f in sorted((path / split).glob("*/*")):
            if f.is_file() and not f.name.startswith("."):
                yield split, f.parent.name, f.read_bytes()


def _tar_files(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """(split, class, bytes) for every image of an archived tree, in archive order."""
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                parts = m.name.split("/")
                if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test") \
                        and not parts[-1].startswith("."):
                    yield parts[-3], parts[-2], tf.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"cannot read archive {path}: {exc}") from None


def _decode_tree(files: Iterator[tuple[str, str, bytes]]) -> dict:
    """Decode a tree's images while the files stream in; label = sorted train class index."""
    blobs: dict[str, list[bytes]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    futures: dict[str, list] = {"train": [], "test": []}
    size = None
    # torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work, and
    # a warning per image would cost more than the decoding.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                            category=DeprecationWarning)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        # Decoding overlaps the (gzip) reading; torchvision decoders release the GIL.
        for split, cls, data in files:
            if size is None:
                size = tuple(_decode(data).shape[-2:])
            blobs[split].append(data)
            names[split].append(cls)
            if len(blobs[split]) % _DECODE_CHUNK == 0:
                futures[split].append(pool.submit(_decode_many, blobs[split][-_DECODE_CHUNK:], size))
        for split in ("train", "test"):
            rest = len(blobs[split]) % _DECODE_CHUNK
            if rest:
                futures[split].append(pool.submit(_decode_many, blobs[split][-rest:], size))
        xs = {s: [f.result() for f in futures[s]] for s in futures}
    classes = sorted(set(names["train"]))
    if not classes or not names["test"]:
        raise UserError("no images found in train/<class>/ and test/<class>/: " + HOW_TO)
    unknown = sorted(set(names["test"]) - set(classes))
    if unknown:
        raise UserError(f"test/ has classes that train/ lacks: {', '.join(unknown)}")
    index = {c: i for i, c in enumerate(classes)}
    return {s: _with_stats(torch.cat(xs[s]), torch.tensor([index[c] for c in names[s]]), classes)
            for s in ("train", "test")}


def _decode_many(blobs: list[bytes], size: tuple[int, int]) -> torch.Tensor:
    """Decode a chunk of encoded images to uint8 (n, 3, H, W), resizing odd sizes."""
    out = torch.empty(len(blobs), 3, *size, dtype=torch.uint8)
    for i, data in enumerate(blobs):
        img = _decode(data)
        out[i] = img if tuple(img.shape[-2:]) == size else _resize_hw(img, size)
    return out


def _resize_hw(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One uint8 image resized to (H, W), antialiased bilinear."""
    out = F.interpolate(img[None].float(), size=size, mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def _decode(data: bytes) -> torch.Tensor:
    """One encoded image as uint8 RGB (3, H, W): torchvision's decoders, PIL for the rest."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        from PIL import Image  # BMP, TIFF, ...: formats torchvision cannot decode

        try:
            img = Image.open(io.BytesIO(data)).convert("RGB")
        except OSError as exc:
            raise UserError(f"cannot decode an image: {exc}") from None
        return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8) \
            .reshape(img.height, img.width, 3).permute(2, 0, 1).contiguous()

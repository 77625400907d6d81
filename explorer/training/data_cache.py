"""The decoded-image cache: one entry per source content, checked on load, bounded in size.

Layout under the cache folder ($EXPLORER_CACHE, default ~/.cache/explorer):

    decoded/v2/<key>/test.pt, train.pt, manifest.json   one entry; the manifest is written last
    decoded/v2/index/<stat key>                        the <key> of a path, its sizes and mtimes

<key> hashes the source's bytes, so two copies of one archive share one entry; the index
remembers it by path, size and mtime so that a second load does not read the source again.
The manifest records each file's size and a CRC-32 of its tensors: a truncated or damaged
entry is noticed, reported in one line and decoded again. Entries beyond
$EXPLORER_CACHE_MAX_MB (default 2048) are evicted, least recently used first; temporary
files left by a killed decode are removed on the next load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import torch

from explorer.core.errors import UserError
from explorer.core.util import pid_alive

VERSION = 2  # bump when the decoded format changes: entries then live in a new folder
ENV_MAX_MB = "EXPLORER_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048  # about ten CIFAR-10-sized entries (185 MB each)
STALE_S = 30 * 60  # a temporary file untouched this long has no live writer (writes take seconds)
SPLITS = ("test", "train")  # write order: train.pt last, then the manifest
_SEP = "~"  # temporary names: <final>~<host>~<pid>~<random>.tmp (no "~" in host names)


def loader(cache: Path, kind: str, root: Path, files: list[Path], decode: Callable[[], dict],
           notes: list[str]) -> Callable[[str], dict]:
    """A function `split -> record` served from the cache entry of these files' contents."""
    cap = max_bytes()  # a bad $EXPLORER_CACHE_MAX_MB is reported before any work
    base = cache / "decoded" / f"v{VERSION}"
    stat = _stat_key(kind, root, files)
    key = _recall(base / "index" / stat) or _hash_contents(kind, root, files)
    folder = base / key
    tidy(cache, notes, cap, keep=folder)
    held: dict[str, dict] = {}  # the other split, when the cache could not be written

    def load(split: str) -> dict:
        if split in held:
            return held[split]
        record, problem = read_entry(folder, split)
        if record is not None:
            return record
        if problem:
            notes.append(f"the decoded cache of {root} in {folder} was damaged ({problem}); "
                         "decoding it again")
            _discard(folder)
        splits = decode()
        if write_entry(folder, splits, {"kind": kind, "source": str(root)}, notes):
            _remember(base / "index" / stat, key)
            tidy(cache, notes, cap, keep=folder)
        else:
            held.update({s: splits[s] for s in SPLITS if s != split})
        return splits[split]

    return load


# --- keys: contents hashed once, remembered by path, size and mtime ----------------------

def _recall(memo: Path) -> str | None:
    """The content key remembered for these stats, if any."""
    try:
        key = memo.read_text().strip()
    except OSError:
        return None
    return key if len(key) == 16 and all(c in "0123456789abcdef" for c in key) else None


def _remember(memo: Path, key: str) -> None:
    """Write the stat key -> content key memo (after the entry is complete); best effort."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, lambda f: f.write(key.encode()))
    except OSError:
        pass  # a read-only cache: the next load hashes again, nothing is lost


def _stat_key(kind: str, root: Path, files: list[Path]) -> str:
    """32 hex digits from the kind, the resolved root and every file's name, size and mtime."""
    h = hashlib.sha256(f"v{VERSION}|{kind}|{root.resolve()}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{_rel(f, root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _hash_contents(kind: str, root: Path, files: list[Path]) -> str:
    """16 hex digits of sha256 over the kind and each file's relative name and bytes."""
    h = hashlib.sha256(f"v{VERSION}|{kind}".encode())
    for f in files:
        with open(f, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        h.update(f"|{_rel(f, root)}|{digest}".encode())
    return h.hexdigest()[:16]


def _rel(f: Path, root: Path) -> str:
    """The file's name relative to the root ('' for the root itself); labels live in it."""
    return "" if f == root else f.relative_to(root).as_posix()


# --- entries ----------------------------------------------------------------------------

def read_entry(folder: Path, split: str) -> tuple[dict | None, str | None]:
    """(record, None) from a complete entry, (None, None) on a miss, (None, problem) if damaged."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return None, None  # absent, or a decode killed before it finished: a plain miss
    except (OSError, ValueError) as exc:
        return None, f"manifest.json unreadable: {type(exc).__name__}"
    path = folder / f"{split}.pt"
    try:
        expected = manifest["files"][split]
        size = path.stat().st_size
    except (KeyError, TypeError):
        return None, "manifest.json incomplete"
    except OSError:
        return None, f"{split}.pt missing"
    if size != expected["bytes"]:
        return None, f"{split}.pt has {size:,} bytes, {expected['bytes']:,} were written"
    try:
        record = torch.load(path, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError: all mean damage
        return None, f"{split}.pt unreadable: {str(exc).splitlines()[0][:80]}"
    if checksum(record) != expected.get("crc32"):
        return None, f"{split}.pt fails its checksum"
    _touch(folder / "manifest.json")
    return record, None


def write_entry(folder: Path, splits: dict, info: dict, notes: list[str]) -> bool:
    """Write both splits and then the manifest, each fsynced and renamed; False if impossible."""
    files = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for s in SPLITS:
            atomic_write(folder / f"{s}.pt", lambda f, s=s: torch.save(splits[s], f))
            files[s] = {"bytes": (folder / f"{s}.pt").stat().st_size, "crc32": checksum(splits[s])}
        manifest = dict(info, version=VERSION, files=files, written=time.time())
        atomic_write(folder / "manifest.json", lambda f: f.write(json.dumps(manifest).encode()))
    except OSError as exc:
        notes.append(f"could not write the decoded images to the cache {folder} "
                     f"({exc.strerror or exc}); they are kept in memory for this run only")
        return False
    return True


def checksum(record: dict) -> int | None:
    """CRC-32 of a record's image and label bytes (about 0.1 s for CIFAR-10's training set)."""
    try:
        crc = zlib.crc32(record["x"].contiguous().numpy())
        return zlib.crc32(record["y"].contiguous().numpy(), crc)
    except (KeyError, TypeError, AttributeError, RuntimeError):
        return None  # not a record at all: compares unequal to any stored checksum


def atomic_write(path: Path, write: Callable) -> None:
    """Write through a temporary file, fsync it, rename it, fsync the folder: all or nothing."""
    prefix = _SEP.join((path.name, _host(), str(os.getpid()), ""))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared cache wants the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash (a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _touch(path: Path) -> None:
    """Mark an entry as used now (eviction removes the least recently used); best effort."""
    try:
        os.utime(path)
    except OSError:
        pass


def _discard(folder: Path) -> None:
    """Remove an entry: renamed away first, so a reader sees all of it or nothing."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        folder.rename(trash)
    except OSError:
        return  # gone already (another process), or not ours to remove
    shutil.rmtree(trash, ignore_errors=True)


# --- housekeeping: stale temporaries and the size cap -------------------------------------

def tidy(cache: Path, notes: list[str], cap: int, keep: Path | None = None) -> None:
    """Remove stale temporary files and leftovers, then evict entries beyond `cap` bytes."""
    decoded = cache / "decoded"
    if not decoded.is_dir():
        return
    removed = [r for p in _temporaries(decoded) if _stale(p) and (r := _unlink(p))]
    if removed:
        mb = sum(size for _, size in removed) / 1e6
        noun = "file" if len(removed) == 1 else "files"
        notes.append(f"removed {len(removed)} temporary {noun} ({mb:.1f} MB) left in {decoded} "
                     "by an interrupted decode")
    _evict(decoded / f"v{VERSION}", cap, keep, notes)


def max_bytes() -> int:
    """The cache's size cap in bytes, from $EXPLORER_CACHE_MAX_MB (default 2048)."""
    raw = os.environ.get(ENV_MAX_MB, "").strip()
    if not raw:
        return DEFAULT_MAX_MB * 10**6
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:  # also refuses nan
        raise UserError(f"{ENV_MAX_MB}={raw!r} is not a size in MB; set a number such as "
                        f"{ENV_MAX_MB}={DEFAULT_MAX_MB}, or unset it")
    return int(min(mb, 1e12) * 10**6)  # "inf": no cap


def _temporaries(decoded: Path) -> list[Path]:
    """Temporary files of version 1 (decoded/<entry>/) and 2 (decoded/v2/<entry or index>/)."""
    return sorted(set(decoded.glob("*/*.tmp")) | set(decoded.glob("*/*/*.tmp")))


def _stale(path: Path) -> bool:
    """True if no live process can still be writing this temporary file."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    if age > STALE_S:
        return True
    parts = path.name.split(_SEP)
    if len(parts) == 4 and parts[1] == _host() and parts[2].isdigit():
        return not pid_alive(int(parts[2]))
    return False  # another machine's (or version 1's) file, still young: leave it


def _unlink(path: Path) -> tuple[Path, int] | None:
    """Remove a file; (path, its size) if removed, None if it could not be."""
    try:
        size = path.stat().st_size
        path.unlink()
    except OSError:
        return None
    return path, size


def _evict(base: Path, cap: int, keep: Path | None, notes: list[str]) -> None:
    """Remove leftovers of killed processes, then least recently used entries beyond `cap`."""
    if not base.is_dir():
        return
    entries = []  # (last used, bytes, folder) of complete entries
    for folder in base.iterdir():
        if folder.name.startswith(".trash-"):
            shutil.rmtree(folder, ignore_errors=True)  # a removal interrupted by a kill
        elif folder.is_dir() and folder.name != "index":
            used, size = _usage(folder)
            if used is not None:
                entries.append((used, size, folder))
            elif folder != keep and _abandoned(folder):
                _discard(folder)  # half an entry: its decode was killed
    total = sum(size for _, size, _ in entries)
    gone = []
    for _, size, folder in sorted(entries, key=lambda e: e[0]):
        if total <= cap:
            break
        if folder != keep:
            _discard(folder)
            total -= size
            gone.append(size)
    if gone:
        noun = "entry" if len(gone) == 1 else "entries"
        notes.append(f"evicted {len(gone)} least recently used cache {noun} ({sum(gone) / 1e6:.0f} MB) "
                     f"to stay under {cap / 1e6:.0f} MB (${ENV_MAX_MB})")
    _drop_dangling(base / "index", base)


def _usage(folder: Path) -> tuple[float | None, int]:
    """(last use, or None for an unfinished entry; total bytes) of an entry."""
    size = 0
    for p in folder.iterdir():
        try:
            size += p.stat().st_size
        except OSError:
            pass  # removed meanwhile by another process
    try:
        return (folder / "manifest.json").stat().st_mtime, size
    except OSError:
        return None, size


def _abandoned(folder: Path) -> bool:
    """An unfinished entry nobody has written to for STALE_S (its decode was killed)."""
    try:
        newest = max([p.stat().st_mtime for p in folder.iterdir()] + [folder.stat().st_mtime])
    except OSError:
        return False  # changing under us: someone is at work there
    return time.time() - newest > STALE_S


def _drop_dangling(index: Path, base: Path) -> None:
    """Remove index memos whose entry was evicted (memos are written after their entry)."""
    if not index.is_dir():
        return
    for memo in index.iterdir():
        try:
            if memo.suffix != ".tmp" and not (base / memo.read_text().strip()).is_dir():
                memo.unlink()
        except (OSError, ValueError):
            pass


def _host() -> str:
    """This machine's name, safe inside a temporary file's name."""
    return socket.gethostname().replace(_SEP, "-").replace("/", "-") or "host"

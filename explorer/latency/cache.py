"""Measured latencies kept on this machine: `$EXPLORER_CACHE/latency.jsonl`, one JSON line each.

Keyed by spec_id and the whole measurement setting (device and its name, host, threads,
batch, input size, memory format, precision, torch version: explorer.latency.measure.Setting), so
an entry is reused only where it would be measured again the same way. Lines are appended
under an flock by any number of processes; a torn or foreign line is skipped; the last
entry for a key wins. Reads are incremental: a process reads only the lines added since
its last look.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "latency.jsonl"
_seen: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}  # path -> (bytes read, key -> entry)


def cache_file(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file under $EXPLORER_CACHE (default ~/.cache/explorer)."""
    from explorer.training.data import resolve_cache_dir

    return resolve_cache_dir(cache_dir) / FILE


def key(spec_id: str, setting: dict[str, Any]) -> str:
    """One text per (network, setting): its JSON with sorted keys."""
    return json.dumps({"spec_id": spec_id, **setting}, sort_keys=True, separators=(",", ":"))


def lookup(k: str, path: Path | None = None) -> dict[str, Any] | None:
    """The latest entry stored under key `k`, or None."""
    path = path or cache_file()
    read, entries = _seen.get(str(path), (0, {}))
    try:
        with open(path, "rb") as f:
            f.seek(read)
            chunk = f.read()
    except OSError:
        return None
    end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
    for line in chunk[:end].splitlines():
        try:
            row = json.loads(line)
            entries[row["key"]] = row["latency"]
        except (ValueError, KeyError, TypeError):
            continue  # a torn line (a writer killed mid-write) or not ours
    _seen[str(path)] = (read + end, entries)
    return entries.get(k)


def store(k: str, latency: dict[str, Any], path: Path | None = None) -> bool:
    """Append one entry; False (and nothing raised) when the cache cannot be written."""
    import fcntl

    path = path or cache_file()
    line = (json.dumps({"key": k, "latency": latency}, separators=(",", ":")) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # one whole line at a time, whatever its length
            f.write(line)
        return True
    except OSError:
        return False

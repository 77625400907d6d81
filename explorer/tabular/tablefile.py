"""The table file: one gzip-compressed CSV row per (stage, network), and a JSON sidecar.

Columns (see COLUMNS): the stage (`bench`, `long`, `seed`), its recipe's epochs and seed,
the study and trial it came from, the knobs, spec_id, the analytic costs, the final and
per-epoch validation accuracy (`val_acc_1` ...), validation loss and mean training loss,
`train_loss_sum`, the training seconds and images/s, how the run ended, and (bench rows)
how many grid points spell the network and its zero-cost scores. The sidecar
(`<name>.json`) holds each stage's recipe, versions, git revision, machine, cost and the
CSV's sha256, so a damaged or truncated file is found by `read_table` and said in one line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorer.core.errors import UserError
from explorer.core.util import atomic_write, write_atomic
from explorer.store import attrs as A

KNOBS = ("stem_width", "base_e", "incr_e", "pct_3x3", "sr", "n_fire", "pools", "bypass")
PROXIES = ("synflow", "naswot", "grad_norm", "snip")
BASE = ("stage", "epochs", "seed", "study", "trial", *KNOBS, "spec_id", "params", "macs", "activations",
        "size_mb", "val_acc", "best_val_acc", "train_loss_sum", "train_seconds", "images_per_s", "end", "points")
PER_EPOCH = ("val_acc", "val_loss", "train_loss")
MAX_FILE_MB = 64  # a table of a few thousand rows is under 1 MB; more is not a table


def epoch_columns(epochs: int) -> list[str]:
    """val_acc_1 .. val_acc_E, val_loss_1 .., train_loss_1 .. for a table whose longest stage has E epochs."""
    return [f"{name}_{e}" for name in PER_EPOCH for e in range(1, epochs + 1)]


def row(stage: str, study: str, t, epochs: int, seed: int, points: int | None = None) -> dict[str, Any]:
    """One table row from a stage's trained TrialRecord."""
    a, spec = t.attrs, t.spec
    pools = spec["pools"]
    r: dict[str, Any] = {"stage": stage, "epochs": epochs, "seed": seed, "study": study, "trial": t.number,
                         **{k: spec[k] for k in KNOBS if k != "pools"}, "pools": ",".join(map(str, pools)),
                         "spec_id": a[A.SPEC_ID], "points": points}
    for k in ("params", "macs", "activations", "size_mb", "val_acc", "best_val_acc", "train_loss_sum",
              "train_seconds", "images_per_s", "end"):
        r[k] = a.get(k)
    for name, key in (("val_acc", A.CURVE), ("val_loss", A.VAL_LOSS), ("train_loss", A.TRAIN_LOSS)):
        for e, v in enumerate(a.get(key) or [], 1):
            r[f"{name}_{e}"] = v
    return r


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows in the file's column order (per-epoch columns up to the longest stage, NaN past a row's end)."""
    epochs = max((int(r["epochs"]) for r in rows), default=0)
    cols = list(BASE) + epoch_columns(epochs) + [p for p in PROXIES if any(p in r for r in rows)]
    return pd.DataFrame(rows, columns=cols)


def write_table(df: pd.DataFrame, path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the CSV (gzip, reproducible bytes: no timestamp) and its sidecar; returns the sidecar."""
    path = Path(path)
    text = df.to_csv(index=False, lineterminator="\n")  # shortest round-trip floats: read back exactly
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(text.encode())
    data = buf.getvalue()
    meta = {**meta, "rows": len(df), "columns": list(df.columns), "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(data), binary=True)
    write_atomic(sidecar(path), json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def sidecar(path: str | Path) -> Path:
    """tables/quickstart.csv.gz -> tables/quickstart.json."""
    path = Path(path)
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.with_name(f"{name}.json")


@dataclass(frozen=True)
class Table:
    """A read table: the rows and the sidecar's metadata."""

    df: pd.DataFrame
    meta: dict[str, Any]

    def stage(self, name: str) -> pd.DataFrame:
        """The rows of one stage, indexed by spec_id."""
        return self.df[self.df["stage"] == name].set_index("spec_id", drop=False)

    @property
    def bench(self) -> pd.DataFrame:
        """The bench stage: one row per distinct network."""
        return self.stage("bench")


def read_table(path: str | Path) -> Table:
    """The table at `path`, checked; a missing, damaged or truncated file is one UserError line."""
    path = Path(path)
    fix = f"regenerate it (tables/README.md) or restore it (git checkout -- {path})"
    if not path.is_file():
        raise UserError(f"no table file at {path}: give the path of a table (e.g. tables/quickstart.csv.gz)")
    if path.stat().st_size > MAX_FILE_MB * 1e6:
        raise UserError(f"{path}: {path.stat().st_size / 1e6:.0f} MB is not a table file (at most {MAX_FILE_MB} MB)")
    data = path.read_bytes()
    meta = _read_meta(path, fix)
    if meta.get("sha256") and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise UserError(f"{path}: damaged table (its sha256 differs from the one in {sidecar(path).name}); {fix}")
    try:
        text = gzip.decompress(data).decode()
        df = pd.read_csv(io.StringIO(text), dtype={"spec_id": str, "pools": str, "bypass": str, "stage": str,
                                                   "study": str, "end": str})
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError,
            ValueError) as exc:
        raise UserError(f"{path}: damaged table ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                        f"{fix}") from None
    _check(df, path, fix)
    return Table(df, meta)


def _read_meta(path: Path, fix: str) -> dict[str, Any]:
    side = sidecar(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{side}: damaged table metadata ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{side}: damaged table metadata (not a JSON object); {fix}")
    return meta


def _check(df: pd.DataFrame, path: Path, fix: str) -> None:
    missing = [c for c in BASE if c not in df.columns]
    if missing:
        raise UserError(f"{path}: not a table file (missing columns {', '.join(missing[:5])}); {fix}")
    bad_stage = sorted(set(df["stage"].dropna()) - {"bench", "long", "seed"})
    if bad_stage or df["stage"].isna().any():
        raise UserError(f"{path}: damaged table (unknown stage {bad_stage[:3] or 'empty'}); {fix}")
    bench = df[df["stage"] == "bench"]
    if bench.empty:
        raise UserError(f"{path}: damaged table (no bench rows); {fix}")
    for c in ("params", "macs", "val_acc", "epochs"):
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any() or not np.isfinite(v.to_numpy(dtype=float)).all():
            raise UserError(f"{path}: damaged table (column {c} has missing or non-numeric values); {fix}")
    if bench["spec_id"].duplicated().any():
        raise UserError(f"{path}: damaged table (a network appears twice among the bench rows); {fix}")
    last = [f"val_acc_{int(e)}" for e in df["epochs"]]
    if any(c not in df.columns for c in set(last)):
        raise UserError(f"{path}: damaged table (per-epoch columns end before a stage's last epoch); {fix}")


def curve(df: pd.DataFrame, epochs: int, name: str = "val_acc") -> np.ndarray:
    """(rows, epochs) array of a per-epoch column family (NaN past a row's last epoch)."""
    cols = [f"{name}_{e}" for e in range(1, epochs + 1)]
    return df.reindex(columns=cols).to_numpy(dtype=float)


def finite(v: Any) -> bool:
    """A number that is finite."""
    return isinstance(v, (int, float)) and math.isfinite(v)

"""Trials -> downloadable files: config files (`explorer.spec.load_spec` reads them), CSV, zip."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dashboards.loading import mask_url

PROVENANCE_FIELDS = ("spec_id", "val_acc", "best_val_acc", "acc_mean", "acc_std", "params", "macs",
                     "size_mb", "size_mib", "latency_ms", "train_seconds", "end", "seed",
                     "device", "trainer", "data", "git_rev", "versions")
TABLE_COLUMNS = ("study", "number", "val_acc", "best_val_acc", "params", "macs", "size_mb",
                 "size_mib", "latency_ms", "spec_id")


def plain(value: Any) -> Any:
    """A YAML/JSON-safe Python value: numpy scalars unwrapped, NaN and '' as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value == "":
        return None
    return value


def trial_config(row: pd.Series | dict[str, Any], storage_url: str) -> dict[str, Any]:
    """The export format: {"spec": {...}, "provenance": {...}} for one stored trial."""
    row = dict(row)
    provenance = {"storage": mask_url(storage_url), "study": row["study"],
                  "trial": int(row["number"])}
    for name in PROVENANCE_FIELDS:
        value = plain(row.get(name))
        if value not in (None, {}, []):
            provenance[name] = value
    provenance["exported_by"] = "explorer dashboard"
    return {"spec": plain(row["spec"]), "provenance": provenance}


def to_yaml(config: dict[str, Any]) -> str:
    """YAML text, keys in the order given."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def to_json(config: dict[str, Any]) -> str:
    """Indented JSON text."""
    return json.dumps(config, indent=2) + "\n"


def config_filename(study: str, number: int, suffix: str = "yaml") -> str:
    """A safe file name like 'my-study_trial00042.yaml'."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(study)).strip("-") or "study"
    return f"{safe}_trial{int(number):05d}.{suffix}"


def configs_zip(rows: pd.DataFrame, storage_url: str) -> bytes:
    """A zip of one YAML config file per row."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for _, row in rows.iterrows():
            zf.writestr(config_filename(row["study"], row["number"]),
                        to_yaml(trial_config(row, storage_url)))
    return buf.getvalue()


def trials_table(rows: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """The columns worth showing and downloading: ids, accuracy, costs and knobs."""
    cols = [c for c in TABLE_COLUMNS if c in rows and not rows[c].isna().all()] + knobs
    return rows[cols].rename(columns=lambda c: c.removeprefix("knob_")).reset_index(drop=True)


def table_csv(table: pd.DataFrame) -> bytes:
    """CSV bytes of a table."""
    return table.to_csv(index=False).encode()

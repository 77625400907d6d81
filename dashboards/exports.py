"""Trials -> downloadable files: config files (`explorer.design.spec.load_spec` reads them), CSV, zip."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pandas as pd
import yaml

from explorer.core import util
from explorer.results.exportfile import file_name, trial_doc
from explorer.store import absolute_url, mask_url

# Row columns that are the trial's stored user attrs under the same name.
ATTR_FIELDS = ("spec", "seed", "device", "duplicate_of", "end", "versions", "git_rev", "val_acc",
               "best_val_acc", "curve", "train_seconds", "images_per_s")
TABLE_COLUMNS = ("study", "number", "val_acc", "best_val_acc", "params", "macs", "size_mb",
                 "size_mib", "latency_ms", "spec_id")


def plain(value: Any) -> Any:
    """A YAML/JSON-safe Python value (explorer.core.util.plain), the table's '' for missing text as None."""
    return None if isinstance(value, str) and value == "" else util.plain(value)


def trial_config(row: pd.Series | dict[str, Any], storage_url: str) -> dict[str, Any]:
    """One stored trial in the export format of `explorer export` (explorer.results.exportfile.trial_doc).

    `load_spec`, `explorer describe`, `explorer calibrate` and `explorer train` read it; its
    provenance carries the study's trainer and data settings, so training it again starts
    from the settings the trial ran with.
    """
    row = dict(row)
    attrs = {k: plain(row.get(k)) for k in ATTR_FIELDS}
    attrs["val_loss"] = plain(row.get("val_loss_curve"))
    attrs = {k: v for k, v in attrs.items() if v not in (None, [], {})}
    if attrs.get("duplicate_of") is not None:
        attrs["duplicate_of"] = int(attrs["duplicate_of"])
    if attrs.get("seed") is not None:
        attrs["seed"] = int(attrs["seed"])
    config = {k: plain(row.get(k)) or None for k in ("trainer", "data")}
    seeds = plain(row.get("acc_seeds")) or []
    noise = ({"k": len(seeds), "mean": plain(row.get("acc_mean")), "std": plain(row.get("acc_std")),
              "accs": seeds} if seeds else None)
    # An absolute journal path, as `explorer export` writes: `explorer calibrate` run on the
    # downloaded file from any folder then finds the study.
    return trial_doc(study=str(row["study"]), number=int(row["number"]),
                     storage=mask_url(absolute_url(str(storage_url))),
                     state=str(row.get("state") or ""), attrs=attrs, config=config,
                     objectives=plain(row.get("objectives")) or None,
                     selection={"how": "dashboard"}, noise=noise)


def to_yaml(config: dict[str, Any]) -> str:
    """YAML text, keys in the order given."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def to_json(config: dict[str, Any]) -> str:
    """Indented JSON text."""
    return json.dumps(config, indent=2) + "\n"


def config_filename(study: str, number: int, suffix: str = "yaml") -> str:
    """A safe file name like 'my-study_trial00042.yaml' (as `explorer export` names it)."""
    return file_name(study, number, suffix)


def configs_zip(rows: pd.DataFrame, storage_url: str, skipped: list[str] | None = None) -> bytes:
    """A zip of one YAML config file per row.

    A trial whose stored spec does not parse (another version's or tool's) is left out; when
    `skipped` is given, 'study #N: why' is appended to it for each one left out.
    """
    from explorer.core.errors import UserError

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for _, row in rows.iterrows():
            try:
                text = to_yaml(trial_config(row, storage_url))
            except UserError as exc:
                if skipped is not None:
                    skipped.append(f"{row['study']} #{row['number']}: {exc}")
                continue
            zf.writestr(config_filename(row["study"], row["number"]), text)
    return buf.getvalue()


def trials_table(rows: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """The columns worth showing and downloading: ids, accuracy, costs and knobs."""
    cols = [c for c in TABLE_COLUMNS if c in rows and not rows[c].isna().all()] + knobs
    return rows[cols].rename(columns=lambda c: c.removeprefix("knob_")).reset_index(drop=True)


def table_csv(table: pd.DataFrame) -> bytes:
    """CSV bytes of a table."""
    return table.to_csv(index=False).encode()

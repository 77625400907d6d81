"""Export files: one stored trial as a config file (written by `explorer export` and the dashboard),
read back and checked by `describe`, `train` and `calibrate` (which also take a study and a
trial selector: `study_export`).

The file (YAML, or JSON with a .json name) has four top-level mappings, and a fifth once
calibrated; `explorer.design.spec.load_spec` reads its `spec:`:

    spec:        the SqueezeSpec fields: builds exactly the network the trial trained
    provenance:  study, trial, storage (password masked), spec_id, state, seed, device,
                 trainer (the study's trainer settings), data (its data settings),
                 objectives, selection, versions, git_rev, exported_at
    metrics:     the trial's val_acc, best_val_acc, curve, val_loss, train_seconds, ..., and
                 where measured latency_ms, latency_spread, latency_setting, latency (the setting)
    cost:        params, macs, activations, ..., size_mb, size_mib, ..., and `units`
    noise:       (calibrate) k, seeds, accs, mean, std of the final val accuracy
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from explorer.core import yamlio
from explorer.core.errors import SpecError, UserError
from explorer.core.util import is_int, plain, probe_writable, remove_stale_temporaries, write_atomic
from explorer.design.cost import estimate_cost
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.results.selection import Chosen
from explorer.store import StudyRecord, absolute_url, mask_url
from explorer.store import attrs as A
from explorer.study.config import DataConfig
from explorer.study.configcheck import DATA_LIMITS, TRAINER_LIMITS, limit_check
from explorer.training.config import TrainerConfig

TOP_KEYS = ("spec", "provenance", "metrics", "cost", "noise")
UNITS = {
    "params": "parameters (weights and biases)",
    "macs": "multiply-adds per image, fvcore convention (FLOPs = 2 x MACs); batch of 1",
    "activations": "conv output elements per image",
    "pool_ops": "max-pool comparisons per image (not in macs)",
    "elementwise_ops": "bypass additions per image (not in macs)",
    "size_mb": "fp32 weights, MB (10**6 bytes)", "size_mib": "fp32 weights, MiB (2**20 bytes)",
    "size_mb_int8": "int8 weights, MB", "size_mib_int8": "int8 weights, MiB",
}
SUMMARY_COLUMNS = ("study", "trial", "file", "spec_id", "val_acc", "acc_mean", "acc_std",
                   "acc_used", "acc_std_used", "acc_std_source", "params", "macs", "size_mb", "size_mib",
                   "latency_ms", "latency_setting", "pareto", "within_noise_of", "tied_with_best", "pick")


# --- writing ---------------------------------------------------------------------------------

def trial_doc(*, study: str, number: int, storage: str, state: str, attrs: dict[str, Any],
              config: dict[str, Any], objectives: list[str] | None, selection: dict[str, Any],
              noise: dict[str, Any] | None = None) -> dict[str, Any]:
    """The export format for one stored trial; `explorer export` and the dashboard both write it.

    `storage` is shown as given (mask it first); `attrs` are the trial's user attrs;
    `config` the study's stored config (its trainer and data settings are kept).
    """
    try:
        spec = SqueezeSpec.from_dict(attrs[A.SPEC])
    except (KeyError, SpecError, TypeError) as exc:
        raise UserError(f"trial #{number} of {study!r}: its stored spec is invalid: {exc}") from None
    prov = {"study": study, "trial": number, "storage": storage,
            "spec_id": spec_id(spec), "state": state, "seed": attrs.get(A.SEED),
            "device": attrs.get(A.DEVICE), "trainer": _trainer_of(config, attrs),
            "data": config.get("data") or None, "objectives": objectives,
            "duplicate_of": attrs.get(A.DUPLICATE_OF), "end": attrs.get(A.END),
            "selection": selection, "versions": attrs.get(A.VERSIONS), "git_rev": attrs.get(A.GIT_REV),
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    doc: dict[str, Any] = {"spec": spec.to_dict(), "provenance": plain(prov),
                           "metrics": plain({k: attrs[k] for k in (*A.RESULT_ATTRS, *A.MEASURED_ATTRS)
                                             if k in attrs}),
                           "cost": {**estimate_cost(spec).to_dict(), "units": dict(UNITS)}}
    if noise:
        doc["noise"] = plain(noise)
    return doc


def _trainer_of(config: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The study's trainer settings with the threads this trial trained on (a worker may override them)."""
    trainer = config.get("trainer") or None
    if trainer is not None and attrs.get(A.THREADS) is not None:
        trainer = {**trainer, "threads": attrs[A.THREADS]}
    return trainer


def export_doc(rec: StudyRecord, c: Chosen, selection: dict[str, Any]) -> dict[str, Any]:
    """The export file's content for one chosen trial (plain types only)."""
    t = c.trial
    sel = {**selection, "within_noise_of": c.tied_with, "tied_with_best": c.tied_with_best,
           "pick": c.pick, "acc_used": plain(c.acc), "acc_std_used": plain(c.std),
           "acc_std_source": c.std_source}
    noise, noise_doc = t.noise, None
    if noise.get(A.ACC_SEEDS):
        full = (t.calibration or {}).get("noise")
        noise_doc = full if isinstance(full, dict) else {
            "k": len(noise[A.ACC_SEEDS]), "mean": noise.get(A.ACC_MEAN), "std": noise.get(A.ACC_STD),
            "accs": noise[A.ACC_SEEDS]}
    return trial_doc(study=rec.name, number=t.number, storage=mask_url(absolute_url(rec.url)),
                     state=t.state, attrs=t.attrs, config=rec.config,
                     objectives=rec.objectives, selection=sel, noise=noise_doc)


def file_name(study: str, number: int, fmt: str) -> str:
    """'quickstart_trial00007.yaml' (the dashboard's naming)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(study)).strip("-") or "study"
    return f"{safe}_trial{int(number):05d}.{fmt}"


def summary_row(rec: StudyRecord, c: Chosen, on_front: bool) -> dict[str, Any]:
    """One CSV row."""
    a, noise = c.trial.attrs, c.trial.noise
    return {"study": rec.name, "trial": c.trial.number, "file": c.file, "spec_id": a.get(A.SPEC_ID),
            "val_acc": a.get(A.VAL_ACC), "acc_mean": noise.get(A.ACC_MEAN), "acc_std": noise.get(A.ACC_STD),
            "acc_used": plain(c.acc), "acc_std_used": plain(c.std), "acc_std_source": c.std_source,
            **{k: a.get(k) for k in (A.PARAMS, A.MACS, A.SIZE_MB, A.SIZE_MIB, A.LATENCY_MS, A.LATENCY_SETTING)},
            "pareto": on_front, "within_noise_of": c.tied_with, "tied_with_best": c.tied_with_best,
            "pick": c.pick}


def summary_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with SUMMARY_COLUMNS; None as an empty cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SUMMARY_COLUMNS})
    return buf.getvalue()


def prepare_out(out: Path, flag: str = "--out") -> Path:
    """Create the output folder (parents too) and check a file can be written in it.

    Called before any training or exporting, so a bad folder costs nothing (and a killed run's
    temporary files are removed); every OSError (a file in the way, no permission, a read-only
    disk) is a one-line UserError.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_writable(out)
        remove_stale_temporaries(out)  # hidden .tmp files of a run killed while writing here
    except OSError as exc:
        raise UserError(f"{flag} {out}: cannot create or write the folder "
                        f"({exc.strerror or exc}); give a folder you can write to") from None
    return out


def export_trials(rec: StudyRecord, chosen: list[Chosen], out: Path, fmt: str,
                  selection: dict[str, Any]) -> list[dict[str, Any]]:
    """Write one file per chosen trial and summary.csv into `out`; the summary rows."""
    out = prepare_out(out)
    on_front = selection.get("how") in ("pareto", "budget")
    rows = []
    try:
        for c in chosen:
            c.file = file_name(rec.name, c.trial.number, fmt)
            write_atomic(out / c.file, yamlio.dump(export_doc(rec, c, selection), fmt))
            rows.append(summary_row(rec, c, on_front))
        write_atomic(out / "summary.csv", summary_csv(rows))
    except OSError as exc:
        raise UserError(f"cannot write into {out}: {exc.strerror or exc} (after {len(rows)} of "
                        f"{len(chosen)} file(s)); free space or give another --out") from None
    return rows


# --- reading ---------------------------------------------------------------------------------

@dataclass
class Export:
    """An export (or bare spec) file read back and checked."""

    path: Path
    spec: SqueezeSpec
    doc: dict[str, Any]  # the whole file; {"spec": ...} for a bare spec
    fmt: str  # yaml or json
    edited: str = ""  # why the spec no longer matches its provenance, if it does not

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance mapping ({} for a bare spec)."""
        return self.doc.get("provenance") or {}

    @property
    def trainer(self) -> dict[str, Any]:
        """The stored trainer settings ({} when none)."""
        return self.provenance.get("trainer") or {}

    @property
    def data(self) -> dict[str, Any]:
        """The stored data settings ({} when none)."""
        return self.provenance.get("data") or {}

    @property
    def label(self) -> str:
        """'quickstart #7' or the file name."""
        p = self.provenance
        return f"{p['study']} #{p['trial']}" if "study" in p and "trial" in p else self.path.name


def read_export(path: str | Path) -> Export:
    """Read and check an export file (or a bare spec); one-line UserError naming the problem."""
    path = Path(path)
    fmt = "json" if path.suffix == ".json" else "yaml"
    data = _parse_file(path, fmt)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with a spec: key, got {type(data).__name__}")
    if "spec" not in data:
        if set(data) & set(TOP_KEYS):
            raise UserError(f"{path}: has {', '.join(k for k in data if k in TOP_KEYS)} but no spec: mapping")
        data = {"spec": data}  # a bare spec
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise UserError(f"{path}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(TOP_KEYS)}")
    for key in TOP_KEYS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise UserError(f"{path}: {key}: must be a mapping, got {type(data[key]).__name__}")
    try:
        spec = SqueezeSpec.from_dict(data["spec"])
    except (SpecError, TypeError) as exc:
        raise UserError(f"{path}: spec: {exc}") from None
    exp = Export(path, spec, data, fmt)
    _check_provenance(exp)
    exp.edited = _edited(exp)
    return exp


def study_export(study: str, storage: str | None, selector: str) -> tuple[Export, str]:
    """(the export of the trial `selector` names in a study, the storage URL), built in memory as
    `explorer export` would write it: `train` and `calibrate` take a study and --trial this way."""
    from explorer.results.selection import assess, choose, load_study, parse_selector
    from explorer.study.config import resolve_target

    how = parse_selector(selector)  # a bad selector costs no storage access
    name, url, _ = resolve_target(study, storage)
    rec = load_study(name, url)
    chosen = assess(rec, [choose(rec, how)])[0]
    doc = plain(export_doc(rec, chosen, {"how": "trial", "trial": selector}))
    exp = Export(Path(file_name(rec.name, chosen.trial.number, "yaml")), SqueezeSpec.from_dict(doc["spec"]),
                 doc, "yaml")
    _check_provenance(exp)  # the study's stored trainer and data settings, as for a file
    return exp, url


def _parse_file(path: Path, fmt: str) -> Any:
    """The parsed file: plain dicts and lists; a key given twice in a mapping is refused."""
    text = yamlio.read_text(path, "spec file")
    try:
        if fmt == "json":
            return yamlio.load_json(text)
        return yamlio.plain_dicts(yamlio.load(text))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise UserError(f"{path} is not valid YAML ({where}{getattr(exc, 'problem', None) or 'syntax'})") from None
    except UserError as exc:  # "line 7: key 'spec' appears twice; keep one of them", an alias, deep nesting
        raise UserError(f"{path}: {exc}") from None


def _check_provenance(exp: Export) -> None:
    """The provenance's identity fields, trainer and data settings: types and ranges."""
    prov, where = exp.provenance, f"{exp.path}: provenance"
    for key, check, what in (("study", lambda v: isinstance(v, str) and v != "", "a study name"),
                             ("trial", lambda v: is_int(v) and v >= 0, "a trial number >= 0"),
                             ("storage", lambda v: v is None or isinstance(v, str), "a storage URL or null"),
                             ("spec_id", lambda v: v is None or isinstance(v, str), "a spec_id or null")):
        if key in prov and not check(prov[key]):
            raise UserError(f"{where}.{key}={_literal(prov[key])} must be {what}")
    for key, cls, limits in (("trainer", TrainerConfig, TRAINER_LIMITS), ("data", DataConfig, DATA_LIMITS)):
        value = prov.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise UserError(f"{where}.{key} must be a mapping")
        allowed = {f.name for f in fields(cls)}
        bad = [k for k in value if k not in allowed]
        if bad:
            raise UserError(f"{exp.path}: unknown key provenance.{key}.{bad[0]}; allowed: "
                            f"{', '.join(sorted(allowed))}")
        for k, v in value.items():
            check, what = limit_check(limits[k])  # unknown keys were refused above
            if not check(v):
                raise UserError(f"{where}.{key}.{k}={_literal(v)} must be {what}")


def _literal(v: Any) -> str:
    """A value as the file spells it: null for None, quotes around text."""
    return "null" if v is None else repr(v)


def _edited(exp: Export) -> str:
    """Why the spec differs from the network the trial trained ('' when it does not)."""
    stored = exp.provenance.get("spec_id")
    if stored and stored != spec_id(exp.spec):
        return f"spec_id {spec_id(exp.spec)} differs from provenance.spec_id {stored}"
    params = (exp.doc.get("cost") or {}).get("params")
    if isinstance(params, int) and params != estimate_cost(exp.spec).params:
        return f"the spec has {estimate_cost(exp.spec).params} parameters, cost.params says {params}"
    return ""


def update_export(exp: Export, key: str, value: dict[str, Any]) -> None:
    """Set one top-level mapping of the file and rewrite it atomically (same format)."""
    doc = plain({**exp.doc, key: value})
    write_atomic(exp.path, yamlio.dump(doc, exp.fmt))
    exp.doc = doc

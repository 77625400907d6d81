"""Chosen trials -> config files; retrain them (`train`) and measure their seed noise (`calibrate`).

The export file (YAML, or JSON with a .json name) has four top-level mappings, and a
fifth once calibrated; `explorer.spec.load_spec` reads its `spec:`:

    spec:        the SqueezeSpec fields: builds exactly the network the trial trained
    provenance:  study, trial, storage (password masked), spec_id, state, seed, device,
                 trainer (the study's trainer settings), data (its data settings),
                 objectives, selection, versions, git_rev, exported_at
    metrics:     the trial's val_acc, best_val_acc, curve, val_loss, train_seconds, ...
    cost:        params, macs, activations, ..., size_mb, size_mib, ..., and `units`
    noise:       (calibrate) k, seeds, accs, mean, std of the final val accuracy

Within noise. Two accuracies a and b whose seed-noise standard deviations are s_a and
s_b are tied when |a - b| <= k * sqrt(s_a**2 + s_b**2) (k = 2 by default: about a 95%
band for the difference of two independent normal estimates). The accuracy compared is
the calibrated mean where the trial was calibrated (a better estimate than one short
run), else its stored val_acc; its std is the trial's calibrated std, else the
study-level estimate (`--noise-std`, else the root mean square of the study's calibrated
stds). Without any std nothing is flagged. The front itself is always drawn with val_acc.

Calibrations land in the export file and in the study's user attrs as
`calibration/<trial number>` = {acc_mean, acc_std, acc_seeds, noise}: Optuna refuses
to change a finished trial's user attrs (UpdateFinishedTrialError), study attrs stay
writable. `trial_noise` merges both places.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from explorer.cost import estimate_cost
from explorer.errors import SpecError, UserError
from explorer.spec import SqueezeSpec, spec_id

TOP_KEYS = ("spec", "provenance", "metrics", "cost", "noise")
BUDGET_KEYS = ("params", "macs", "activations", "size_mb", "size_mib")
METRIC_KEYS = ("val_acc", "best_val_acc", "curve", "val_loss", "train_seconds", "images_per_s", "end")
NOISE_ATTRS = ("acc_mean", "acc_std", "acc_seeds")
CALIBRATION_PREFIX = "calibration/"
UNITS = {
    "params": "parameters (weights and biases)",
    "macs": "multiply-adds per image, fvcore convention (FLOPs = 2 x MACs); batch of 1",
    "activations": "conv output elements per image",
    "pool_ops": "max-pool comparisons per image (not in macs)",
    "elementwise_ops": "bypass additions per image (not in macs)",
    "size_mb": "fp32 weights, MB (10**6 bytes)", "size_mib": "fp32 weights, MiB (2**20 bytes)",
    "size_mb_int8": "int8 weights, MB", "size_mib_int8": "int8 weights, MiB",
}
DATA_NAMES = ("cifar10", "cifar100", "synthetic")
_SI = (("G", 1e9), ("M", 1e6), ("k", 1e3))


# --- the noise rule (pure) ---------------------------------------------------------------

def within_noise(acc_a: float, std_a: float, acc_b: float, std_b: float, k: float = 2.0) -> bool:
    """|acc_a - acc_b| <= k * sqrt(std_a**2 + std_b**2); False when any input is not finite."""
    values = (acc_a, std_a, acc_b, std_b)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return False
    return abs(acc_a - acc_b) <= k * math.sqrt(std_a ** 2 + std_b ** 2)


def noise_ties(size: Sequence[float], acc: Sequence[float], std: Sequence[float],
               k: float = 2.0) -> tuple[list[int | None], int | None]:
    """(tied_with, pick) over a set of trials.

    tied_with[i]: index of the most accurate trial that is larger (size) and more
    accurate than i yet within noise of it (None if none); pick: the smallest trial
    within noise of the most accurate one (None without noise estimates).
    """
    n = len(acc)
    tied: list[int | None] = [None] * n
    for i in range(n):
        bigger = [j for j in range(n) if size[j] > size[i] and acc[j] > acc[i]
                  and within_noise(acc[i], std[i], acc[j], std[j], k)]
        tied[i] = max(bigger, key=lambda j: (acc[j], -size[j]), default=None)
    finite = [i for i in range(n) if math.isfinite(acc[i])]
    if not finite:
        return tied, None
    best = max(finite, key=lambda i: (acc[i], -size[i]))
    ties = [i for i in finite if i == best or within_noise(acc[i], std[i], acc[best], std[best], k)]
    pick = min(ties, key=lambda i: (size[i], -acc[i])) if math.isfinite(std[best]) else None
    return tied, pick


def pooled_std(stds: Sequence[float]) -> float:
    """Root mean square of the finite stds (the study-level estimate); NaN if none."""
    good = [s for s in stds if s is not None and math.isfinite(s)]
    return math.sqrt(sum(s * s for s in good) / len(good)) if good else math.nan


# --- budgets and fronts (pure) -------------------------------------------------------------

def parse_budget(text: str) -> dict[str, float]:
    """'params<=1e6,macs<=5e7' (k/M/G suffixes allowed) -> {'params': 1e6, 'macs': 5e7}."""
    out: dict[str, float] = {}
    for part in [p.strip() for p in str(text).split(",")]:
        m = re.fullmatch(r"(\w+)\s*<=\s*([0-9.eE+-]+)\s*([kMG]?)", part)
        if not m:
            raise UserError(f"budget part {part!r} is malformed: write COST<=NUMBER[,COST<=NUMBER] "
                            f"with COST one of {', '.join(BUDGET_KEYS)}, e.g. \"params<=1e6,macs<=5e7\"")
        key, number, suffix = m.groups()
        if key not in BUDGET_KEYS:
            raise UserError(f"budget names unknown cost {key!r}; allowed: {', '.join(BUDGET_KEYS)}")
        try:
            limit = float(number) * dict(_SI).get(suffix, 1.0)
        except ValueError:
            raise UserError(f"budget part {part!r}: {number!r} is not a number") from None
        if not math.isfinite(limit) or limit <= 0 or key in out:
            raise UserError(f"budget part {part!r}: give each cost once, with a limit > 0")
        out[key] = limit
    return out


# --- reading a study ---------------------------------------------------------------------

@dataclass
class StudyRecord:
    """One stored study: its name, storage, config, objectives, trials and calibrations."""

    name: str
    url: str
    config: dict[str, Any]
    objectives: list[str]
    trials: list[Any]  # optuna FrozenTrial
    calibrations: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def size_key(self) -> str:
        """The first cost objective (the 'size' of the Pareto plot); params by default."""
        return self.costs[0]

    @property
    def costs(self) -> list[str]:
        """The cost objectives (minimised); ['params'] for single-objective studies."""
        return [o for o in self.objectives if o != "val_acc"] or ["params"]


def resolve_study(study: str, storage: str | None) -> tuple[str, str]:
    """(name, storage URL) from a study name or a study file (helper of `explorer status`)."""
    from explorer.commands.status import resolve_target

    name, url, _ = resolve_target(study, storage)
    return name, url


def read_study(name: str, url: str) -> StudyRecord:
    """Load the study's trials and calibrations; one-line errors for missing things."""
    from explorer import storage as st

    storage = st.open_storage(url)
    record = st.load_study_record(storage, name)
    trials = storage.get_all_trials(record._study_id, deepcopy=False)
    attrs = record.user_attrs
    objectives = list(attrs.get(st.OBJECTIVES) or ["val_acc", "params"])
    return StudyRecord(name, url, dict(attrs.get(st.CONFIG) or {}), objectives, list(trials),
                       calibrations(attrs))


def calibrations(study_attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> stored calibration, from the study user attrs `calibration/N`."""
    out = {}
    for key, value in study_attrs.items():
        if key.startswith(CALIBRATION_PREFIX) and key[len(CALIBRATION_PREFIX):].isdigit():
            out[int(key[len(CALIBRATION_PREFIX):])] = value
    return out


def trial_noise(trial, calib: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """acc_mean / acc_std / acc_seeds of a trial: its own attrs, else the study's calibration."""
    own = {k: trial.user_attrs[k] for k in NOISE_ATTRS if k in trial.user_attrs}
    return own or {k: v for k, v in calib.get(trial.number, {}).items() if k in NOISE_ATTRS}


def _trained(t) -> bool:
    a = t.user_attrs
    acc = a.get("val_acc")
    return (t.state.name == "COMPLETE" and not a.get("infeasible") and a.get("duplicate_of") is None
            and isinstance(acc, (int, float)) and math.isfinite(acc) and isinstance(a.get("spec"), dict))


def select_trials(rec: StudyRecord, *, numbers: Sequence[int] | None = None, pareto: bool = False,
                  budget: dict[str, float] | None = None) -> list[Any]:
    """The chosen trials, sorted by size: by number, the Pareto front, or the front within a budget."""
    if numbers:
        return _by_number(rec, numbers)
    done = [t for t in rec.trials if _trained(t)]
    if not done:
        raise UserError(f"study {rec.name!r} has no completed, feasible trials to choose from "
                        f"({len(rec.trials)} trials stored); run more trials first")
    pool = done
    if budget:
        pool = [t for t in done if all(_num(t.user_attrs.get(k)) <= v for k, v in budget.items())]
        if not pool:
            smallest = min(done, key=lambda t: _num(t.user_attrs.get(rec.size_key)))
            have = ", ".join(f"{k}={_si(smallest.user_attrs.get(k))}" for k in budget)
            raise UserError(f"no completed trial of {rec.name!r} meets the budget "
                            f"{_budget_text(budget)} (the smallest, #{smallest.number}, has {have}); "
                            "raise the budget")
    acc = [t.user_attrs["val_acc"] for t in pool]
    costs = [[_num(t.user_attrs.get(c)) for c in rec.costs] for t in pool]
    from explorer.pareto import front_mask

    chosen = [t for t, keep in zip(pool, front_mask(acc, costs)) if keep]
    if not chosen:
        raise UserError(f"the Pareto set of {rec.name!r} is empty: no trial has finite "
                        f"val_acc and {', '.join(rec.costs)}")
    return sorted(chosen, key=lambda t: (_num(t.user_attrs.get(rec.size_key)), t.number))


def _by_number(rec: StudyRecord, numbers: Sequence[int]) -> list[Any]:
    by = {t.number: t for t in rec.trials}
    for n in numbers:
        if n not in by:
            have = f"0..{max(by)}" if by else "none"
            raise UserError(f"study {rec.name!r} has no trial #{n} (trials: {have})")
        if not isinstance(by[n].user_attrs.get("spec"), dict):
            raise UserError(f"trial #{n} of {rec.name!r} has no stored spec (state "
                            f"{by[n].state.name}); choose a trained trial")
    return [by[n] for n in dict.fromkeys(numbers)]


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _si(v: Any) -> str:
    v = _num(v)
    if not math.isfinite(v):
        return "-"
    for unit, scale in _SI:
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _budget_text(budget: dict[str, float]) -> str:
    return ",".join(f"{k}<={v:g}" for k, v in budget.items())


# --- writing export files -------------------------------------------------------------------

@dataclass
class Chosen:
    """One chosen trial with the figures the summary and the noise flags need."""

    trial: Any
    acc: float  # calibrated mean if any, else the stored val_acc
    std: float  # calibrated std, else the study-level estimate, else NaN
    std_source: str  # trial, study, cli or none
    size: float
    tied_with: int | None = None  # trial number
    tied_with_best: bool = False
    pick: bool = False
    file: str = ""


def assess(rec: StudyRecord, trials: list[Any], *, noise_std: float | None = None,
           k: float = 2.0) -> list[Chosen]:
    """Accuracy, std and the within-noise flags of each chosen trial."""
    study_std = noise_std if noise_std is not None else pooled_std(
        [_num(trial_noise(t, rec.calibrations).get("acc_std")) for t in rec.trials])
    source = "cli" if noise_std is not None else ("study" if math.isfinite(study_std) else "none")
    out = []
    for t in trials:
        noise = trial_noise(t, rec.calibrations)
        own = _num(noise.get("acc_std"))
        mean = _num(noise.get("acc_mean"))
        acc = mean if math.isfinite(mean) else _num(t.user_attrs.get("val_acc"))
        std, src = (own, "trial") if math.isfinite(own) else (study_std, source)
        out.append(Chosen(t, acc, std, src, _num(t.user_attrs.get(rec.size_key))))
    tied, pick = noise_ties([c.size for c in out], [c.acc for c in out], [c.std for c in out], k)
    best = max(range(len(out)), key=lambda i: (out[i].acc, -out[i].size), default=None)
    for i, c in enumerate(out):
        c.tied_with = out[tied[i]].trial.number if tied[i] is not None else None
        c.tied_with_best = best is not None and within_noise(c.acc, c.std, out[best].acc, out[best].std, k)
        c.pick = i == pick
    return out


def export_doc(rec: StudyRecord, c: Chosen, selection: dict[str, Any]) -> dict[str, Any]:
    """The export file's content for one chosen trial (plain types only)."""
    from explorer.storage import mask_url

    t = c.trial
    sel = {**selection, "within_noise_of": c.tied_with, "tied_with_best": c.tied_with_best,
           "pick": c.pick, "acc_used": _plain(c.acc), "acc_std_used": _plain(c.std),
           "acc_std_source": c.std_source}
    noise = trial_noise(t, rec.calibrations)
    noise_doc = None
    if noise.get("acc_seeds"):
        full = rec.calibrations.get(t.number, {}).get("noise")
        noise_doc = full if isinstance(full, dict) else {
            "k": len(noise["acc_seeds"]), "mean": noise.get("acc_mean"), "std": noise.get("acc_std"),
            "accs": noise["acc_seeds"]}
    return trial_doc(study=rec.name, number=t.number, storage=mask_url(_absolute(rec.url)),
                     state=t.state.name, attrs=t.user_attrs, config=rec.config,
                     objectives=rec.objectives, selection=sel, noise=noise_doc)


def trial_doc(*, study: str, number: int, storage: str, state: str, attrs: dict[str, Any],
              config: dict[str, Any], objectives: list[str] | None, selection: dict[str, Any],
              noise: dict[str, Any] | None = None) -> dict[str, Any]:
    """The export format for one stored trial; `explorer export` and the dashboard both write it.

    `storage` is shown as given (mask it first); `attrs` are the trial's user attrs;
    `config` the study's stored config (its trainer and data settings are kept).
    """
    try:
        spec = SqueezeSpec.from_dict(attrs["spec"])
    except (KeyError, SpecError, TypeError) as exc:
        raise UserError(f"trial #{number} of {study!r}: its stored spec is invalid: {exc}") from None
    prov = {"study": study, "trial": number, "storage": storage,
            "spec_id": spec_id(spec), "state": state, "seed": attrs.get("seed"),
            "device": attrs.get("device"), "trainer": config.get("trainer") or None,
            "data": config.get("data") or None, "objectives": objectives,
            "duplicate_of": attrs.get("duplicate_of"), "end": attrs.get("end"),
            "selection": selection, "versions": attrs.get("versions"), "git_rev": attrs.get("git_rev"),
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    doc: dict[str, Any] = {"spec": spec.to_dict(), "provenance": _plain(prov),
                           "metrics": _plain({k: attrs[k] for k in METRIC_KEYS if k in attrs}),
                           "cost": {**estimate_cost(spec).to_dict(), "units": dict(UNITS)}}
    if noise:
        doc["noise"] = _plain(noise)
    return doc


def _absolute(url: str) -> str:
    """A journal file's absolute path (so calibrate finds it from anywhere); other URLs unchanged."""
    from explorer.storage import journal_path, kind_of

    return str(journal_path(url).resolve()) if kind_of(url) == "journal" else url


def _plain(v: Any) -> Any:
    """JSON/YAML-safe: NaN -> None, tuples -> lists, numpy scalars unwrapped."""
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of scalars ([0, 3, 7])."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump(doc: dict[str, Any], fmt: str) -> str:
    """YAML (keys in order) or indented JSON text."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_name(study: str, number: int, fmt: str) -> str:
    """'quickstart_trial00007.yaml' (the dashboard's naming)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", study).strip("-") or "study"
    return f"{safe}_trial{number:05d}.{fmt}"


SUMMARY_COLUMNS = ("study", "trial", "file", "spec_id", "val_acc", "acc_mean", "acc_std",
                   "acc_used", "acc_std_used", "acc_std_source", "params", "macs", "size_mb", "size_mib",
                   "pareto", "within_noise_of", "tied_with_best", "pick")


def summary_row(rec: StudyRecord, c: Chosen, on_front: bool) -> dict[str, Any]:
    """One CSV row."""
    a, noise = c.trial.user_attrs, trial_noise(c.trial, rec.calibrations)
    return {"study": rec.name, "trial": c.trial.number, "file": c.file, "spec_id": a.get("spec_id"),
            "val_acc": a.get("val_acc"), "acc_mean": noise.get("acc_mean"), "acc_std": noise.get("acc_std"),
            "acc_used": _plain(c.acc), "acc_std_used": _plain(c.std), "acc_std_source": c.std_source,
            **{k: a.get(k) for k in ("params", "macs", "size_mb", "size_mib")},
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


def export_trials(rec: StudyRecord, chosen: list[Chosen], out: Path, fmt: str,
                  selection: dict[str, Any]) -> list[dict[str, Any]]:
    """Write one file per chosen trial and summary.csv into `out`; the summary rows."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    on_front = selection.get("how") in ("pareto", "budget")
    rows = []
    for c in chosen:
        c.file = file_name(rec.name, c.trial.number, fmt)
        write_atomic(out / c.file, dump(export_doc(rec, c, selection), fmt))
        rows.append(summary_row(rec, c, on_front))
    write_atomic(out / "summary.csv", summary_csv(rows))
    return rows


# --- reading export files ------------------------------------------------------------------

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


def _parse_file(path: Path, fmt: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise UserError(f"{path} is not valid YAML ({where}{getattr(exc, 'problem', None) or 'syntax'})") from None


def _check_provenance(exp: Export) -> None:
    """The stored trainer and data settings must be ones the trainer understands."""
    from explorer.config import DataConfig, TrainerConfig

    for key, cls in (("trainer", TrainerConfig), ("data", DataConfig)):
        value = exp.provenance.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise UserError(f"{exp.path}: provenance.{key} must be a mapping")
        allowed = {f.name for f in fields(cls)}
        bad = [k for k in value if k not in allowed]
        if bad:
            raise UserError(f"{exp.path}: unknown key provenance.{key}.{bad[0]}; allowed: "
                            f"{', '.join(sorted(allowed))}")
        for k, v in value.items():
            if k != "source" and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise UserError(f"{exp.path}: provenance.{key}.{k}={v!r} must be a number")


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
    doc = {**exp.doc, key: _plain(value)}
    write_atomic(exp.path, dump(doc, exp.fmt))
    exp.doc = doc


# --- retraining --------------------------------------------------------------------------

def resolve_data_source(cli: str | None, exp: Export) -> str:
    """--data > $EXPLORER_DATA > provenance.data.source (if present here) > the archive beside the repo."""
    from explorer.study import default_archive

    for candidate in (cli, os.environ.get("EXPLORER_DATA")):
        if candidate:
            return candidate
    source = exp.data.get("source")
    if source and (source.split(":")[0] in DATA_NAMES or Path(source).exists()):
        return source
    if default_archive().exists():
        return str(default_archive())
    raise UserError(f"no data for {exp.path}: pass --data PATH (the study used "
                    f"{source or 'an unknown source'}) or set EXPLORER_DATA")


def load_export_data(exp: Export, source: str, *, per_class: int | None | str = "study"):
    """The dataset at the spec's input size; `per_class` 'study' keeps the study's subset."""
    from explorer.config import DataConfig
    from explorer.data import load_data

    d = {**DataConfig().__dict__, **exp.data}
    keep = d["per_class"] if per_class == "study" else per_class
    data = load_data(source, per_class=keep, val_per_class=d["val_per_class"],
                     resolution=exp.spec.input_size, seed=d["seed"])
    if data.num_classes != exp.spec.num_classes:
        raise UserError(f"{source} has {data.num_classes} classes but the spec has num_classes="
                        f"{exp.spec.num_classes}; pass the study's dataset with --data")
    return data


def trainer_settings(exp: Export, **overrides: Any) -> dict[str, Any]:
    """The study's trainer settings (TrainerConfig defaults where absent), overrides applied."""
    from explorer.config import TrainerConfig

    kw = {**TrainerConfig().__dict__, **exp.trainer}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return kw


def calibrate(exp: Export, data, *, seeds: Sequence[int], device: str,
              settings: dict[str, Any], log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the spec once per seed with `settings`; the noise mapping (sample std, ddof 1)."""
    from explorer.model import seeded_model
    from explorer.train import train

    accs, start = [], time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        t0 = time.perf_counter()
        kw = {**settings, "seed": seed}
        res = train(seeded_model(exp.spec, seed), data, device=device, **kw)
        accs.append(float(res.final_acc))
        left = (time.perf_counter() - start) / i * (len(seeds) - i)
        log(f"seed {seed} ({i}/{len(seeds)}): val_acc {res.final_acc:.4f}  "
            f"{time.perf_counter() - t0:.1f}s  ({res.end}; about {left:.0f}s left)")
    return {"k": len(accs), "mean": statistics.fmean(accs), "std": statistics.stdev(accs),
            "accs": accs, "seeds": list(seeds), "metric": "val_acc (final epoch)",
            "rule": "within noise: |a - b| <= 2 * sqrt(std_a^2 + std_b^2)",
            "trainer": settings, "data": {**exp.data, "source": data.source,
                                          "train_images": len(data.train.y), "val_images": len(data.val.y)},
            "device": device, "seconds": round(time.perf_counter() - start, 1),
            "calibrated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def store_calibration(exp: Export, noise: dict[str, Any], storage_url: str | None = None) -> str:
    """Write the calibration into the study (study user attr calibration/N); a one-line note."""
    from explorer import storage as st

    prov = exp.provenance
    url = storage_url or prov.get("storage")
    if not url or "study" not in prov or "trial" not in prov:
        return "no study in the file's provenance: stored in the file only"
    if "***" in url:
        return f"storage {url} has a masked password: pass --storage to store the result there too"
    try:
        storage = st.open_storage(url)
        record = st.load_study_record(storage, prov["study"])
        if not any(t.number == prov["trial"] for t in storage.get_all_trials(record._study_id, deepcopy=False)):
            return f"study {prov['study']!r} has no trial #{prov['trial']}: stored in the file only"
        value = {"acc_mean": noise["mean"], "acc_std": noise["std"], "acc_seeds": noise["accs"],
                 "noise": _plain(noise)}
        storage.set_study_user_attr(record._study_id, f"{CALIBRATION_PREFIX}{prov['trial']}", value)
    except UserError as exc:
        return f"not stored in the study ({exc})"
    return f"stored in {st.mask_url(url)} as study {prov['study']!r} user attr {CALIBRATION_PREFIX}{prov['trial']}"


def save_checkpoint(path: Path, spec: SqueezeSpec, model, metrics: dict[str, Any],
                    extra: dict[str, Any]) -> None:
    """torch.save {spec, state_dict, metrics, ...} (tensors and plain types only), atomically."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ckpt = {"spec": spec.to_dict(), "state_dict": state, "metrics": _plain(metrics), **_plain(extra)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path):
    """(model in eval mode, checkpoint dict), loaded with weights_only=True."""
    import torch

    from explorer.model import build_model

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"cannot load checkpoint {path}: {' '.join(str(exc).split())[:200]}") from None
    model = build_model(SqueezeSpec.from_dict(ckpt["spec"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def retrain(exp: Export, data, *, settings: dict[str, Any], device: str,
            progress: Callable | None = None, on_epoch_end: Callable | None = None):
    """Train the spec with `settings`, then evaluate on the held-out test split.

    Returns (model, TrainResult, metrics); metrics hold test_acc / test_loss and the run's figures.
    """
    from explorer.model import seeded_model
    from explorer.train import evaluate, train

    model = seeded_model(exp.spec, settings["seed"])
    res = train(model, data, device=device, progress=progress, on_epoch_end=on_epoch_end, **settings)
    test = data.test()
    test_acc, test_loss = evaluate(model, test.x, test.y, mean=data.mean, std=data.std, device=device)
    metrics = {"test_acc": test_acc, "test_loss": test_loss, "test_images": len(test.y),
               "val_acc": res.final_acc, "best_val_acc": res.best_acc, "curve": res.val_acc,
               "val_loss": res.val_loss, "epochs": res.epochs, "steps": res.steps,
               "train_seconds": res.train_seconds, "images_per_s": res.images_per_s, "end": res.end,
               "train_images": len(data.train.y), "val_images": len(data.val.y)}
    return model, res, _plain(metrics)


def model_card(exp: Export, metrics: dict[str, Any], settings: dict[str, Any], run: dict[str, Any]) -> str:
    """A Markdown model card: result, network table and costs, how it was trained, provenance."""
    from explorer.commands.describe import format_table

    cost = estimate_cost(exp.spec)
    prov = exp.provenance
    study_acc = (exp.doc.get("metrics") or {}).get("val_acc")
    noise = exp.doc.get("noise") or {}
    lines = [f"# Model card: {exp.label} (spec_id {spec_id(exp.spec)})", "",
             "## Result", "",
             f"- **test accuracy {100 * metrics['test_acc']:.2f}%** on {metrics['test_images']:,} held-out "
             f"test images ({run['data_source']}, {exp.spec.input_size}x{exp.spec.input_size} px); "
             f"test loss {metrics['test_loss']:.4f}",
             f"- validation accuracy {100 * metrics['val_acc']:.2f}% (best {100 * metrics['best_val_acc']:.2f}%) "
             f"on {metrics['val_images']:,} images carved from the training split",
             f"- {metrics['epochs']:g} epochs ({metrics['end']}), {metrics['train_seconds']:.0f} s of training, "
             f"{metrics['images_per_s']:.0f} images/s on {run['device']}"]
    if study_acc is not None:
        lines.append(f"- in the study's short trial: val accuracy {100 * study_acc:.2f}%"
                     + (f"; seed noise over {noise['k']} seeds: {100 * noise['mean']:.2f}% "
                        f"± {100 * noise['std']:.2f}% (std)" if noise.get("std") is not None else ""))
    lines += ["", "## Network", "", "```text", format_table(exp.spec, cost), "```", "",
              "Costs: " + ", ".join(f"`{k}` = {v:,}" if isinstance(v, int) else f"`{k}` = {v:.4f}"
                                    for k, v in cost.to_dict().items()) + ".",
              "MACs are multiply-adds (fvcore convention; FLOPs = 2 x MACs); sizes are fp32 "
              "(4 bytes per parameter) unless marked int8.", "",
              "## How it was trained", "",
              f"`explorer train` with explorer.train.train (SGD, Nesterov momentum, warm-up then linear "
              f"decay, random crop + flip), seeded with {settings['seed']} (weights and batches).", "",
              "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {'none' if v is None else v} |" for k, v in settings.items()]
    lines += [f"| data | {run['data_source']}: {metrics['train_images']:,} train / "
              f"{metrics['val_images']:,} val images, {exp.spec.input_size} px |",
              f"| device | {run['device']} |", f"| command | `{run['command']}` |", "",
              "## Provenance", ""]
    if prov:
        lines += [f"- study `{prov.get('study')}`, trial #{prov.get('trial')}, storage `{prov.get('storage')}`",
                  f"- study trainer settings: `{json.dumps(prov.get('trainer'))}`",
                  f"- trial trained at git revision `{prov.get('git_rev')}` on {prov.get('device')}"]
    else:
        lines.append(f"- a bare spec file: {exp.path}")
    if exp.edited:
        lines.append(f"- **the spec was edited after export**: {exp.edited}")
    lines += [f"- retrained at git revision `{run['git_rev']}`; versions `{json.dumps(run['versions'])}`",
              f"- config file: `{exp.path}`", "",
              "## Loading it", "", "```python", "import torch",
              "from explorer.export import load_checkpoint",
              "model, ckpt = load_checkpoint('model.pt')  # torch.load(..., weights_only=True) inside",
              "mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ckpt['preprocess']['mean'], "
              "ckpt['preprocess']['std']))",
              "logits = model((images_uint8.float() / 255 - mean) / std)",
              "```", ""]
    return "\n".join(lines)

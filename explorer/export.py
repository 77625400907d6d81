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
writable. `trial_noise` merges both places. The study receives a calibration only when
its trial is the file's network (same spec_id) and the recipe is the study's short-trial
recipe (`recipe_differences`): assess() takes a stored calibration as the trial's accuracy.
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

from explorer.config import DATA_LIMITS, MAX_SEED, TRAINER_LIMITS, limit_check  # noqa: F401 (MAX_SEED: calibrate)
from explorer.config import _is_int
from explorer.config import _is_num as _is_number
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
    if not str(text).strip():
        raise UserError("the budget is empty: write COST<=NUMBER[,COST<=NUMBER] with COST one of "
                        f"{', '.join(BUDGET_KEYS)}, e.g. \"params<=1e6,macs<=5e7\"")
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
    return sorted(chosen, key=lambda t: _size_order(_num(t.user_attrs.get(rec.size_key)), t.number))


def _by_number(rec: StudyRecord, numbers: Sequence[int]) -> list[Any]:
    """The trials with these numbers (each once), sorted by size like a front (no size: last)."""
    by = {t.number: t for t in rec.trials}
    for n in numbers:
        if n not in by:
            have = f"0..{max(by)}" if by else "none"
            raise UserError(f"study {rec.name!r} has no trial #{n} (trials: {have})")
        if not isinstance(by[n].user_attrs.get("spec"), dict):
            raise UserError(f"trial #{n} of {rec.name!r} has no stored spec (state "
                            f"{by[n].state.name}); choose a trained trial")
    chosen = [by[n] for n in dict.fromkeys(numbers)]
    return sorted(chosen, key=lambda t: _size_order(_num(t.user_attrs.get(rec.size_key)), t.number))


def _size_order(size: float, number: int) -> tuple:
    """A sort key by size, trials without a finite size last (NaN would scramble a sort)."""
    return (0, size, number) if math.isfinite(size) else (1, 0.0, number)


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
    # The most accurate chosen trial, over finite accuracies only (as noise_ties does): a NaN
    # compares False both ways, so letting it in would make `best` depend on the --trial order.
    finite = [i for i, c in enumerate(out) if math.isfinite(c.acc)]
    best = max(finite, key=lambda i: (out[i].acc, -_finite_or(out[i].size, math.inf)), default=None)
    for i, c in enumerate(out):
        c.tied_with = out[tied[i]].trial.number if tied[i] is not None else None
        c.tied_with_best = best is not None and within_noise(c.acc, c.std, out[best].acc, out[best].std, k)
        c.pick = i == pick
    return out


def _finite_or(v: float, default: float) -> float:
    return v if math.isfinite(v) else default


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
    """A journal file's (or SQLite database's) absolute path, so calibrate finds it from any
    folder; other URLs unchanged. The dashboard's downloads use it too."""
    from explorer.storage import journal_path, kind_of

    if kind_of(url) == "journal":
        return str(journal_path(url).resolve())
    head, sep, rest = url.partition(":///")
    if head.split("+", 1)[0].lower() == "sqlite" and sep:
        path, q, query = rest.partition("?")
        if path and path != ":memory:" and not path.startswith("/"):  # sqlite:///rel.db is relative
            return f"{head}:///{Path(path).resolve()}{q}{query}"
    return url


def _plain(v: Any) -> Any:
    """JSON/YAML/weights_only-safe plain types.

    NaN and infinities -> None, tuples and sets -> lists, numpy/torch values unwrapped,
    dates and times -> ISO 8601 text (YAML reads an unquoted timestamp as a datetime,
    which torch.load(weights_only=True) and json refuse), anything else -> str.
    """
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain(x) for x in v]
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if not isinstance(v, (bool, int, float, str)) and v is not None and hasattr(v, "tolist"):
        try:
            return _plain(v.tolist())  # numpy scalars and arrays, torch tensors
        except Exception:  # noqa: BLE001 - fall through to str()
            pass
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    return str(v)  # text (a str subclass too), paths, anything else


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
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the content (power loss)
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


def prepare_out(out: Path, flag: str = "--out") -> Path:
    """Create the output folder (parents too) and check a file can be written in it.

    Called before any training or exporting, so a bad folder costs nothing; every
    OSError (a file in the way, no permission, a read-only disk) is a one-line UserError.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_writable(out)
    except OSError as exc:
        raise UserError(f"{flag} {out}: cannot create or write the folder "
                        f"({exc.strerror or exc}); give a folder you can write to") from None
    return out


def probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in `folder` (what write_atomic needs); OSError if not."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".explorer-probe-", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def export_trials(rec: StudyRecord, chosen: list[Chosen], out: Path, fmt: str,
                  selection: dict[str, Any]) -> list[dict[str, Any]]:
    """Write one file per chosen trial and summary.csv into `out`; the summary rows."""
    out = prepare_out(out)
    on_front = selection.get("how") in ("pareto", "budget")
    rows = []
    try:
        for c in chosen:
            c.file = file_name(rec.name, c.trial.number, fmt)
            write_atomic(out / c.file, dump(export_doc(rec, c, selection), fmt))
            rows.append(summary_row(rec, c, on_front))
        write_atomic(out / "summary.csv", summary_csv(rows))
    except OSError as exc:
        raise UserError(f"cannot write into {out}: {exc.strerror or exc} (after {len(rows)} of "
                        f"{len(chosen)} file(s)); free space or give another --out") from None
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
    """The parsed file: plain dicts and lists; a key given twice in a mapping is refused."""
    from explorer.config import _LineLoader  # the study-file loader: refuses duplicate keys

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return _dicts(yaml.load(text, Loader=_LineLoader))  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise UserError(f"{path} is not valid YAML ({where}{getattr(exc, 'problem', None) or 'syntax'})") from None
    except UserError as exc:  # "line 7: key 'spec' appears twice"
        raise UserError(f"{path}: {exc}; keep one of them") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UserError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _dicts(v: Any) -> Any:
    """The loader's line-remembering dicts as plain dicts (SafeDumper writes only plain ones)."""
    if isinstance(v, dict):
        return {k: _dicts(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dicts(x) for x in v]
    return v


# --- settings: what the trainer and the data loader accept -------------------------------------

# The trainer/data limits are explorer.config's: a setting means the same in a study file,
# an export file and on the command line.
# CLI flag -> (section, key) of the limits above.
CLI_SETTINGS = {"--epochs": ("trainer", "epochs"), "--batch-size": ("trainer", "batch_size"),
                "--lr": ("trainer", "lr"), "--momentum": ("trainer", "momentum"),
                "--weight-decay": ("trainer", "weight_decay"),
                "--label-smoothing": ("trainer", "label_smoothing"),
                "--time-budget": ("trainer", "time_budget_s"), "--seed": ("trainer", "seed"),
                "--per-class": ("data", "per_class")}


def check_cli_settings(**given: Any) -> None:
    """One-line UserError for a bad override (`lr=-1` is checked as --lr); None = not given."""
    for name, value in given.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        section, key = CLI_SETTINGS[flag]
        check, what, _ = (TRAINER_LIMITS if section == "trainer" else DATA_LIMITS)[key]
        if not check(value):  # a flag cannot be null, so the limit's own words
            raise UserError(f"{flag}={value}: give {what}")


def _check_provenance(exp: Export) -> None:
    """The provenance's identity fields, trainer and data settings: types and ranges."""
    from explorer.config import DataConfig, TrainerConfig

    prov, where = exp.provenance, f"{exp.path}: provenance"
    for key, check, what in (("study", lambda v: isinstance(v, str) and v != "", "a study name"),
                             ("trial", lambda v: _is_int(v) and v >= 0, "a trial number >= 0"),
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
    doc = _plain({**exp.doc, key: value})
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


def data_settings(exp: Export, *, per_class: int | None | str = "study") -> dict[str, Any]:
    """The data recipe actually used: the study's data settings (DataConfig defaults where
    absent), `per_class` replaced unless 'study', the resolution the spec's input size."""
    from explorer.config import DataConfig

    d = {**DataConfig().__dict__, **exp.data}
    if per_class != "study":
        d["per_class"] = per_class
    d["resolution"] = exp.spec.input_size
    return d


def load_export_data(exp: Export, source: str, *, per_class: int | None | str = "study"):
    """The dataset at the spec's input size; `per_class` 'study' keeps the study's subset."""
    from explorer.data import load_data

    d = data_settings(exp, per_class=per_class)
    data = load_data(source, per_class=d["per_class"], val_per_class=d["val_per_class"],
                     resolution=d["resolution"], seed=d["seed"])
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
              settings: dict[str, Any], log: Callable[[str], None] = lambda s: None,
              data_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the spec once per seed with `settings`; the noise mapping (sample std, ddof 1).

    `data_recipe` is the data settings `data` was loaded with (default: the study's,
    `data_settings(exp)`); it is recorded with the result, with the source and image counts.
    `ends` holds each run's end (completed, time_budget, diverged, ...).
    """
    from explorer.model import seeded_model
    from explorer.train import train

    accs, ends, start = [], [], time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        t0 = time.perf_counter()
        kw = {**settings, "seed": seed}
        res = train(seeded_model(exp.spec, seed), data, device=device, **kw)
        accs.append(float(res.final_acc))
        ends.append(res.end)
        left = (time.perf_counter() - start) / i * (len(seeds) - i)
        log(f"seed {seed} ({i}/{len(seeds)}): val_acc {res.final_acc:.4f}  "
            f"{time.perf_counter() - t0:.1f}s  ({res.end}; about {left:.0f}s left)")
    recipe = data_recipe if data_recipe is not None else data_settings(exp)
    return {"k": len(accs), "mean": statistics.fmean(accs), "std": statistics.stdev(accs),
            "accs": accs, "seeds": list(seeds), "ends": ends, "metric": "val_acc (final epoch)",
            "rule": "within noise: |a - b| <= 2 * sqrt(std_a^2 + std_b^2)",
            "trainer": dict(settings), "data": {**recipe, "source": data.source,
                                                "train_images": len(data.train.y), "val_images": len(data.val.y)},
            "device": device, "seconds": round(time.perf_counter() - start, 1),
            "calibrated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


# The short-trial recipe: every trainer setting but the seed (calibrate varies it), and the
# data settings that choose the images (the source by dataset name or file name: paths differ
# between machines).
RECIPE_DATA = ("per_class", "val_per_class", "resolution", "seed")


def recipe_differences(study_config: dict[str, Any] | None, trainer: dict[str, Any],
                       data: dict[str, Any]) -> list[str]:
    """How a run's recipe (`trainer` settings, `data` settings) differs from the study's short
    trials (`study_config`: the study's stored config, or an export's provenance, with
    trainer and data mappings); [] when it is the same recipe."""
    from explorer.config import DataConfig, TrainerConfig

    cfg = study_config or {}
    want_t = {**TrainerConfig().__dict__, **(cfg.get("trainer") or {})}
    want_d = {**DataConfig().__dict__, **(cfg.get("data") or {})}
    out = [f"{k} {_show(trainer.get(k))} instead of {_show(want_t[k])}"
           for k in want_t if k != "seed" and not _same(trainer.get(k), want_t[k])]
    out += [f"data.{k} {_show(data.get(k))} instead of {_show(want_d.get(k))}"
            for k in RECIPE_DATA if not _same(data.get(k), want_d.get(k))]
    have, want = _dataset_name(data.get("source")), _dataset_name(want_d.get("source"))
    if have and want and have != want:
        out.append(f"data {data.get('source')} instead of {want_d.get('source')}")
    return out


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _show(v: Any) -> str:
    return "null" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _dataset_name(source: Any) -> str:
    """'cifar10' for cifar10 / cifar10:ROOT, the file or folder name for a path; '' if unknown."""
    if not isinstance(source, str) or not source:
        return ""
    name = source.split(":")[0]
    return name if name in DATA_NAMES else Path(source.rstrip("/")).name


@dataclass
class _Target:
    """Where a calibration would be stored: an open storage and the study's record."""

    url: str
    storage: Any
    study_id: int
    config: dict[str, Any]


def _calibration_target(exp: Export, storage_url: str | None) -> tuple[_Target | None, str]:
    """(target, '') or (None, why it cannot be stored). UserError when the trial stored there is
    another network than the file's (a re-created study, or --storage pointing elsewhere)."""
    from explorer import storage as st

    prov = exp.provenance
    url = storage_url or prov.get("storage")
    if not url or "study" not in prov or "trial" not in prov:
        return None, "no study in the file's provenance: stored in the file only"
    if "***" in url:
        return None, f"storage {url} has a masked password: pass --storage to store the result there too"
    try:
        storage = st.open_storage(url)
        record = st.load_study_record(storage, prov["study"])
        trial = next((t for t in storage.get_all_trials(record._study_id, deepcopy=False)
                      if t.number == prov["trial"]), None)
    except UserError as exc:
        return None, f"not stored in the study ({exc})"
    if trial is None:
        return None, f"study {prov['study']!r} has no trial #{prov['trial']}: stored in the file only"
    ours = spec_id(exp.spec)
    try:
        theirs = spec_id(SqueezeSpec.from_dict(trial.user_attrs["spec"]))
    except (KeyError, TypeError, SpecError):
        theirs = "none (no valid stored spec)"
    if theirs != ours or prov.get("spec_id") not in (None, ours):
        raise UserError(f"{exp.path}: trial #{prov['trial']} of study {prov['study']!r} in "
                        f"{st.mask_url(url)} is another network (spec_id {theirs}; this file's is "
                        f"{prov.get('spec_id') or ours}): the study was re-created or --storage points "
                        "elsewhere; pass the --storage of the study that trained it, or export the trial again")
    return _Target(url, storage, record._study_id, dict(record.user_attrs.get(st.CONFIG) or {})), ""


def plan_calibration(exp: Export, storage_url: str | None, settings: dict[str, Any],
                     data_recipe: dict[str, Any]) -> tuple[str, list[str]]:
    """Before training: (why the result will not go into the study, '' if it will; how the
    recipe differs from the study's short trials). UserError for a foreign trial (see
    `_calibration_target`)."""
    target, why = _calibration_target(exp, storage_url)
    diffs = recipe_differences(target.config if target else exp.provenance, settings, data_recipe)
    if target is None:
        return why, diffs
    if not target.config:
        return "the study stored no trainer settings to compare the recipe with: stored in the file only", diffs
    return (_recipe_note(diffs) if diffs else ""), diffs


def _recipe_note(diffs: list[str]) -> str:
    return ("not stored in the study: the recipe differs from its short trials ("
            + ", ".join(diffs) + "), so the spread is not the trial's seed noise")


def store_calibration(exp: Export, noise: dict[str, Any], storage_url: str | None = None) -> str:
    """Write the calibration into the study (study user attr calibration/N); a one-line note.

    Stored only when the trial there is the file's network and the recipe (noise['trainer'],
    noise['data']) is the study's short-trial recipe; otherwise the note says why not.
    Never raises for the study's sake: the caller still has the result to write.
    """
    from explorer import storage as st

    prov = exp.provenance
    try:
        target, why = _calibration_target(exp, storage_url)
        if target is None:
            return why
        if not target.config:
            return "the study stored no trainer settings to compare the recipe with: stored in the file only"
        diffs = recipe_differences(target.config, noise.get("trainer") or {}, noise.get("data") or {})
        if diffs:
            return _recipe_note(diffs)
        value = {"acc_mean": noise["mean"], "acc_std": noise["std"], "acc_seeds": noise["accs"],
                 "noise": _plain(noise)}
        target.storage.set_study_user_attr(target.study_id, f"{CALIBRATION_PREFIX}{prov['trial']}", value)
    except Exception as exc:  # noqa: BLE001 - a foreign trial, a read-only or vanished storage, ...
        return f"not stored in the study ({' '.join(str(exc).split())[:300]})"
    return (f"stored in {st.mask_url(target.url)} as study {prov['study']!r} user attr "
            f"{CALIBRATION_PREFIX}{prov['trial']}")


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


CHECKPOINT_KEYS = ("spec", "state_dict")


def load_checkpoint(path: str | Path):
    """(model in eval mode, checkpoint dict), loaded with weights_only=True.

    Every way a file can fail to be an explorer checkpoint (unreadable, not a torch file,
    pickled objects other than tensors and plain types, missing keys, an invalid spec,
    weights that do not fit the spec) is a one-line UserError.
    """
    import pickle

    import torch

    from explorer.model import build_model

    hint = "give a model.pt written by `explorer train`"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise UserError(f"cannot load checkpoint {path}: {exc.strerror or exc}") from None
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # pickled classes, e.g. a datetime
            raise UserError(f"cannot load checkpoint {path}: it holds objects other than tensors and plain "
                            f"types, which torch.load(weights_only=True) refuses; {hint}") from None
        raise UserError(f"cannot load checkpoint {path}: not a PyTorch checkpoint; {hint}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError, RuntimeError, ... for non-checkpoints
        first = " ".join(str(exc).split()).split(". ")[0][:150]  # torch's first sentence says what broke
        detail = f" ({first})" if isinstance(exc, RuntimeError) and first else ""
        raise UserError(f"cannot load checkpoint {path}: not a PyTorch checkpoint{detail}; {hint}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        have = f"keys {', '.join(map(str, list(ckpt)[:8]))}" if isinstance(ckpt, dict) else type(ckpt).__name__
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise UserError(f"{path} is not an explorer checkpoint: no {' or '.join(missing)} (it holds "
                        f"{have}); {hint}")
    try:
        model = build_model(SqueezeSpec.from_dict(ckpt["spec"]))
    except (SpecError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: spec: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise UserError(f"{path}: the weights do not fit the spec ({' '.join(str(exc).split())[:250]}); "
                        "the checkpoint is damaged or was edited") from None
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

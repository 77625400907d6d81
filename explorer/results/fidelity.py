"""Does a short trial predict a long one? Retrain a sample of a study's trials with a longer
recipe, store each long result with the study, and measure how well the short run ranked them.

The long recipe is the study's own (trainer and data settings) with one thing made longer:
more epochs (default: 4x the study's), more images per class, or a higher resolution; it
runs without the study's time budget (a long run cut by the clock would measure the
machine, not the network). Each long result is stored as soon as it is measured, as the
study user attr `fidelity/<recipe key>/<trial number>` (Optuna freezes finished trials'
attrs; study attrs stay writable, as for calibrations), so a killed run loses at most the
trial in progress and a rerun skips every trial already measured with that recipe.

Only trials whose short run ended `completed` take part (a trial cut by the time budget or
dead holds a shorter, different signal). The sample (`choose_sample`) covers the front and
the spread of the study: half of it (rounded up) comes from the short Pareto front, the rest
from the other trained trials, each pick the trial farthest from those already measured or
chosen in (log size, accuracy), both scaled to [0, 1]. Asking for a larger sample later adds trials to it.

The report compares the short signals (the final val_acc and the sum of per-epoch training
losses, Ru et al. 2021, negated: lower is better) with the long val_acc: Spearman and
Kendall with bootstrap 95 % intervals (explorer.results.rankstats); the short front against the
long front over the measured trials (precision, recall); the hypervolume of the short
front's trials measured at the long budget as a share of the long front's (log10 size,
reference point: twice the largest size and chance accuracy); and whether the export
choices (`export --pareto`, the smallest trial within noise of the best) would change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from explorer.core.errors import UserError
from explorer.core.util import plain
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.latency import quiet
from explorer.results import rankstats as rs
from explorer.results.pareto import front_mask, hypervolume
from explorer.results.selection import noise_ties, pooled_std
from explorer.store import StudyRecord, TrialRecord, find_study
from explorer.store import attrs as A
from explorer.study.config import DataConfig
from explorer.training.config import TrainerConfig

DEFAULT_SAMPLE, DEFAULT_FACTOR = 8, 4
# Short-run signals: name -> sign that makes "higher is better" (a training loss is lower-better).
SIGNALS = {A.VAL_ACC: 1.0, A.TRAIN_LOSS_SUM: -1.0}


@dataclass(frozen=True)
class Recipe:
    """The long recipe: full trainer and data settings, a key naming the change, its cost factor."""

    key: str
    trainer: dict[str, Any]
    data: dict[str, Any]
    factor: float
    change: str  # e.g. "epochs 20 instead of 5"


def long_recipe(config: dict[str, Any], *, epochs: int | None = None, per_class: int | None = None,
                resolution: int | None = None) -> Recipe:
    """The study's recipe with one change (default: 4x its epochs); UserError unless it is longer."""
    if sum(v is not None for v in (epochs, per_class, resolution)) > 1:
        raise UserError("give one of --epochs, --per-class, --resolution: the long recipe changes one thing")
    trainer = {**TrainerConfig().__dict__, **(config.get("trainer") or {}), "time_budget_s": None}
    data = {**DataConfig().__dict__, **(config.get("data") or {})}
    if per_class is not None:
        have = data["per_class"]
        if have is None or per_class <= have:
            raise UserError(f"--per-class {per_class} is not more than the study's "
                            f"{'all images' if have is None else have}; give a larger number or use --epochs")
        return Recipe(f"per_class{per_class}", trainer, {**data, "per_class": per_class}, per_class / have,
                      f"per_class {per_class} instead of {have}")
    if resolution is not None:
        have = int(data["resolution"])
        if resolution <= have:
            raise UserError(f"--resolution {resolution} is not more than the study's {have} px; give a larger "
                            "one or use --epochs")
        return Recipe(f"res{resolution}", trainer, {**data, "resolution": resolution}, (resolution / have) ** 2,
                      f"resolution {resolution} instead of {have}")
    have = int(trainer["epochs"])
    want = epochs if epochs is not None else DEFAULT_FACTOR * have
    if want <= have:
        raise UserError(f"--epochs {want} is not more than the study's {have}; give a larger number")
    return Recipe(f"epochs{want}", {**trainer, "epochs": want}, data, want / have,
                  f"epochs {want} instead of {have}")


def long_spec(trial: TrialRecord, recipe: Recipe) -> SqueezeSpec:
    """The trial's network at the long recipe's resolution."""
    spec = SqueezeSpec.from_dict(trial.spec)
    return dataclasses.replace(spec, input_size=int(recipe.data["resolution"]))


# --- stored results ----------------------------------------------------------------------------

def stored(rec: StudyRecord) -> dict[str, dict[int, dict[str, Any]]]:
    """recipe key -> trial number -> stored long result, from the study's `fidelity/...` attrs."""
    return rec.fidelity


def store_result(storage, rec: StudyRecord, recipe: Recipe, number: int, result: dict[str, Any]) -> None:
    """Write one long result into the study (its own attr: one write per measured trial)."""
    storage.set_study_user_attr(find_study(storage, rec.name), A.fidelity_key(recipe.key, number), plain(result))


# --- the sample ----------------------------------------------------------------------------------

def choose_sample(size: Sequence[float], acc: Sequence[float], on_front: Sequence[bool],
                  measured: Sequence[bool], k: int) -> list[int]:
    """Indices of the points to measure next so that k are measured (see the module docstring)."""
    n = len(size)
    front, measured = np.asarray(on_front, dtype=bool), np.asarray(measured, dtype=bool)
    need = max(0, min(k, n) - int(measured.sum()))
    if need == 0:
        return []
    pts = np.column_stack([_unit(np.log10(np.maximum(np.asarray(size, dtype=float), 1e-12))),
                           _unit(np.asarray(acc, dtype=float))])
    taken = list(np.flatnonzero(measured))
    want_front = max(0, min(int(front.sum()), math.ceil(k / 2)) - int((measured & front).sum()))
    chosen: list[int] = []
    for pool_mask, count in ((front, min(want_front, need)), (~front, need)):
        pool = [i for i in np.flatnonzero(pool_mask & ~measured) if i not in chosen]
        while pool and len(chosen) < need and count > 0:
            pick = _farthest(pts, pool, taken + chosen, acc)
            chosen.append(pick)
            pool.remove(pick)
            count -= 1
    rest = [i for i in np.flatnonzero(~measured) if i not in chosen]  # fewer others than wanted
    while rest and len(chosen) < need:
        pick = _farthest(pts, rest, taken + chosen, acc)
        chosen.append(pick)
        rest.remove(pick)
    return [int(i) for i in chosen]


def _unit(v: np.ndarray) -> np.ndarray:
    span = np.nanmax(v) - np.nanmin(v) if len(v) else 0.0
    return (v - np.nanmin(v)) / span if span > 0 else np.zeros_like(v)


def _farthest(pts: np.ndarray, pool: list[int], have: list[int], acc: Sequence[float]) -> int:
    """The pool point farthest from `have` (with none: the most accurate); ties to the lower index."""
    if not have:
        return max(pool, key=lambda i: (acc[i], -i))
    dist = [float(np.min(np.linalg.norm(pts[have] - pts[i], axis=1))) for i in pool]
    return pool[int(np.argmax(dist))]


def eligible(rec: StudyRecord, include_cut: bool = False) -> list[TrialRecord]:
    """Trials whose short result is a full short run: trained, and ended `completed` (not cut by the
    time budget, dead, diverged or stopped early: their accuracy is another, shorter signal);
    `include_cut` also admits trials cut by the time budget (a busy machine cuts most of them)."""
    def cut_but_measured(t: TrialRecord) -> bool:  # a cut trial is never `trained` (it is off every front)
        a = t.attrs
        return (t.cut and t.state in ("COMPLETE", "PRUNED") and not a.get(A.INFEASIBLE)
                and a.get(A.DUPLICATE_OF) is None and math.isfinite(t.num(A.VAL_ACC)) and t.spec is not None)

    return [t for t in rec.trials if (t.trained and t.attrs.get(A.END, "completed") == "completed")
            or (include_cut and cut_but_measured(t))]


def plan(rec: StudyRecord, recipe: Recipe, k: int, *, include_cut: bool = False
         ) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """(trials already measured with the recipe, trials to measure now) among the eligible ones."""
    trained = eligible(rec, include_cut)
    if not trained:
        cut = sum(t.cut for t in rec.trials)
        raise UserError(f"study {rec.name!r} has no trained trials that ran their last epoch (COMPLETE, not cut "
                        "by the time budget, not dead) to measure; "
                        + (f"{cut} were cut by the time budget: pass --include-cut to measure them too"
                           if cut else "run the study first"))
    done = stored(rec).get(recipe.key, {})
    size = [t.num(rec.size_key) for t in trained]
    acc = [t.num(A.VAL_ACC) for t in trained]
    front = front_mask(acc, [[t.num(c) for c in rec.costs] for t in trained])
    measured = [t.number in done for t in trained]
    picks = choose_sample(size, acc, front, measured, k)
    return [t for t, m in zip(trained, measured) if m], [trained[i] for i in picks]


# --- measuring -----------------------------------------------------------------------------------

def load_data(rec: StudyRecord, recipe: Recipe, cli_data: str | None):
    """The long recipe's images: the data source rule (explorer.training.datasource: --data, else
    EXPLORER_DATA, else the study's stored source), the recipe's data settings; a study whose networks
    have another number of classes than the dataset is one UserError line."""
    from explorer.training.data import load_data as load
    from explorer.training.datasource import resolve_source

    stored_source = (rec.config.get("data") or {}).get("source")
    source = resolve_source(cli_data, stored_source, missing=f"no data for study {rec.name!r}: pass --data PATH "
                                                             f"(it used {stored_source or 'an unknown source'}) or "
                                                             "set EXPLORER_DATA")
    d = recipe.data
    data = load(source, per_class=d["per_class"], val_per_class=d["val_per_class"], resolution=d["resolution"],
                seed=d["seed"])
    classes = {int((t.spec or {}).get("num_classes", data.num_classes)) for t in rec.trials if t.trained}
    if classes - {data.num_classes}:
        raise UserError(f"{source} has {data.num_classes} classes but the study's networks have "
                        f"{', '.join(map(str, sorted(classes)))}; pass the study's dataset with --data")
    return data


def measure(trial: TrialRecord, recipe: Recipe, data, *, device: str, trainer: Callable | None = None
            ) -> dict[str, Any]:
    """Train the trial's network with the long recipe from its seeded initial weights; the result."""
    from explorer.design.model import seeded_model

    if trainer is None:
        from explorer.training.train import train as trainer
    spec = long_spec(trial, recipe)
    t0 = time.perf_counter()
    with quiet.training() as pause:  # a latency measurement on this machine pauses it
        res = trainer(seeded_model(spec, recipe.trainer["seed"]), data, device=device, pause=pause,
                      **recipe.trainer)
    return {A.VAL_ACC: float(res.final_acc), A.BEST_VAL_ACC: float(res.best_acc),
            A.CURVE: [float(a) for a in res.val_acc], A.TRAIN_LOSS_SUM: float(getattr(res, "train_loss_sum", math.nan)),
            A.END: res.end, "epochs": float(res.epochs), A.TRAIN_SECONDS: float(res.train_seconds),
            "seconds": round(time.perf_counter() - t0, 1), A.SPEC_ID: spec_id(spec),
            "recipe": {"change": recipe.change, "trainer": recipe.trainer,
                       "data": {k: v for k, v in recipe.data.items() if k != "source"},
                       "source": getattr(data, "source", None)},
            A.DEVICE: device, "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def run_fidelity(storage, rec: StudyRecord, recipe: Recipe, todo: list[TrialRecord], data, *, device: str,
                 trainer: Callable | None = None, log: Callable[[str], None] = lambda s: None) -> int:
    """Measure and store each trial of `todo` in turn (stored one by one: resumable); how many."""
    start = time.perf_counter()
    for i, t in enumerate(todo, 1):
        result = measure(t, recipe, data, device=device, trainer=trainer)
        store_result(storage, rec, recipe, t.number, result)
        left = (time.perf_counter() - start) / i * (len(todo) - i)
        log(f"#{t.number}: short val_acc {t.num(A.VAL_ACC):.4f} -> long {result[A.VAL_ACC]:.4f}  "
            f"{result['seconds']:.0f}s  ({result[A.END]}; {i}/{len(todo)}, about {left:.0f}s left)")
    return len(todo)


# --- the report ----------------------------------------------------------------------------------

def report(rec: StudyRecord, recipe_key: str, *, noise_std: float | None = None, include_cut: bool = False,
           n_boot: int = rs.N_BOOT, seed: int = rs.SEED) -> dict[str, Any]:
    """The measured trials of one recipe and every figure of the module docstring, JSON-ready."""
    results = stored(rec).get(recipe_key, {})
    by = {t.number: t for t in eligible(rec, include_cut)}
    rows = [(by[n], r) for n, r in sorted(results.items()) if n in by and _finite(r.get(A.VAL_ACC))]
    size = np.array([t.num(rec.size_key) for t, _ in rows], dtype=float)
    long = np.array([float(r[A.VAL_ACC]) for _, r in rows], dtype=float)
    chance = 1.0 / _classes(rows)
    out: dict[str, Any] = {
        "study": rec.name, "recipe": recipe_key, "n": len(rows), "size_key": rec.size_key,
        "cut": sum(t.cut for t, _ in rows),
        "change": rows[0][1].get("recipe", {}).get("change", recipe_key) if rows else recipe_key,
        "trials": [{"number": t.number, "size": t.num(rec.size_key), "short": t.num(A.VAL_ACC),
                    A.TRAIN_LOSS_SUM: t.num(A.TRAIN_LOSS_SUM), "long": float(r[A.VAL_ACC]), A.END: r.get(A.END)}
                   for t, r in rows],
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": rs.LEVEL, "method": "paired percentile"},
    }
    long_front = np.array(front_mask(long, size[:, None]), dtype=bool) if rows else np.zeros(0, bool)
    out["long_front"] = [t.number for (t, _), f in zip(rows, long_front) if f]
    out["signals"] = {name: _signal([sign * t.num(name) for t, _ in rows], long, size, long_front, rows, chance,
                                    n_boot, seed) for name, sign in SIGNALS.items()}
    out["size_baseline"] = {"spearman": _r4(rs.spearman(np.log10(size), long)) if len(rows) >= 3 else math.nan}
    short = np.array([t.num(A.VAL_ACC) for t, _ in rows], dtype=float)
    out["tie_points"] = round(100 * rs.tie_threshold(short, long), 1) if len(rows) >= 2 else math.nan
    out["export"] = _export_change(rec, rows, short, long, size, long_front, noise_std)
    out["verdict"] = verdict(out)
    return plain(out)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _r4(v: float) -> float:
    return round(v, 4) if math.isfinite(v) else math.nan


def _classes(rows: list) -> int:
    specs = [t.spec for t, _ in rows if t.spec]
    return int(specs[0].get("num_classes", 10)) if specs else 10


def _signal(short: Sequence[float], long: np.ndarray, size: np.ndarray, long_front: np.ndarray, rows: list,
            chance: float, n_boot: int, seed: int) -> dict[str, Any]:
    """One short signal against the long accuracy: correlations with intervals, front agreement, HV ratio."""
    s = np.asarray(short, dtype=float)
    ok = np.isfinite(s)
    out: dict[str, Any] = {"n": int(ok.sum())}
    if ok.sum() < 3:
        return {**out, "spearman": math.nan, "spearman_ci": [math.nan, math.nan], "kendall": math.nan,
                "kendall_ci": [math.nan, math.nan], "front_precision": math.nan, "front_recall": math.nan,
                "hv_ratio": math.nan, "short_front": []}
    sp = rs.bootstrap_ci(s[ok], long[ok], rs.spearman, n_boot=n_boot, seed=seed)
    kt = rs.bootstrap_ci(s[ok], long[ok], rs.kendall, n_boot=n_boot, seed=seed)
    short_front = np.array(front_mask(s[ok], size[ok][:, None]), dtype=bool)
    precision, recall = rs.front_agreement(short_front, long_front[ok])
    ref = (2 * float(np.max(size[ok])), chance)
    hv_long = hypervolume(size[ok][long_front[ok]], long[ok][long_front[ok]], *ref, log_size=True)
    hv_short = hypervolume(size[ok][short_front], long[ok][short_front], *ref, log_size=True)
    numbers = [t.number for (t, _), keep in zip(rows, ok) if keep]
    return {**out, "spearman": _r4(sp.value), "spearman_ci": sp.as_list(), "kendall": _r4(kt.value),
            "kendall_ci": kt.as_list(), "front_precision": _r4(precision), "front_recall": _r4(recall),
            "hv_ratio": _r4(hv_short / hv_long) if hv_long > 0 else math.nan,
            "short_front": [n for n, f in zip(numbers, short_front) if f]}


def _export_change(rec: StudyRecord, rows: list, short: np.ndarray, long: np.ndarray, size: np.ndarray,
                   long_front: np.ndarray, noise_std: float | None) -> dict[str, Any]:
    """Would `export --pareto` and the smallest-within-noise pick change, over the measured trials?"""
    if not rows:
        return {}
    numbers = [t.number for t, _ in rows]
    short_front = np.array(front_mask(short, size[:, None]), dtype=bool)
    std = noise_std if noise_std is not None else pooled_std([t.num(A.ACC_STD) for t in rec.trials])
    picks = {}
    for name, acc, front in (("short", short, short_front), ("long", long, long_front)):
        idx = np.flatnonzero(front)
        _, pick = noise_ties(size[idx], acc[idx], [std] * len(idx))
        picks[name] = numbers[idx[pick]] if pick is not None else None
    return {"pareto_kept": [n for n, s, lo in zip(numbers, short_front, long_front) if s and lo],
            "pareto_dropped": [n for n, s, lo in zip(numbers, short_front, long_front) if s and not lo],
            "pareto_missed": [n for n, s, lo in zip(numbers, short_front, long_front) if lo and not s],
            "noise_std": std, "noise_from": ("--noise-std" if noise_std is not None else
                                             "study calibrations" if math.isfinite(std) else "none"),
            "pick_short": picks["short"], "pick_long": picks["long"],
            "pick_changes": None if picks["short"] is None else picks["short"] != picks["long"]}


def verdict(rep: dict[str, Any]) -> str:
    """One plain-language sentence (two at most) on how well the short trials rank the study."""
    n, sig = rep["n"], rep["signals"][A.VAL_ACC]
    rho, (low, high) = sig["spearman"], sig["spearman_ci"]
    if n < 4 or not math.isfinite(rho):
        return (f"Only {n} trial(s) measured with the long recipe: too few to judge; measure at least 5 "
                "(explorer fidelity STUDY --sample 8).")
    word = "well" if rho >= 0.8 else "roughly" if rho >= 0.5 else "poorly"
    text = (f"This study's short trials rank its networks {word} (Spearman {rho:.2f}, 95 % interval "
            f"{low:.2f} to {high:.2f}, over {n} trials retrained with {rep['change']}); treat differences "
            f"under {rep['tie_points']:.1f} points of short val_acc as ties.")
    if math.isfinite(low) and low < 0.5 <= rho:
        text += " The interval is wide: measure more trials (a larger --sample) before trusting the order."
    loss = rep["signals"][A.TRAIN_LOSS_SUM]["spearman"]
    if math.isfinite(loss):
        better = "better" if loss > rho else "worse" if loss < rho else "as well"
        text += f" The training-loss sum ranks {better} (Spearman {loss:.2f})."
    if rep.get("cut"):
        text += (f" {rep['cut']} of these trials were cut by the study's time budget: their short accuracy and "
                 "loss sum cover fewer epochs, so the figures mix network quality with machine load.")
    return text


def format_report(rep: dict[str, Any]) -> str:
    """The report as text: a table of the measured trials, the figures per signal, the verdict."""
    lines = [f"fidelity of study {rep['study']}: {rep['n']} trial(s) retrained with {rep['change']}"
             + (f" ({rep['cut']} of them cut by the time budget in the study)" if rep.get("cut") else "")]
    if rep["n"]:
        lines.append(f"{'trial':>6} {rep['size_key']:>10} {'short %':>8} {'long %':>7} {'loss sum':>9}  end")
        for r in sorted(rep["trials"], key=lambda r: r["size"]):
            loss = f"{r[A.TRAIN_LOSS_SUM]:9.3f}" if _finite(r[A.TRAIN_LOSS_SUM]) else f"{'-':>9}"
            lines.append(f"{'#' + str(r['number']):>6} {r['size']:>10,.0f} {100 * r['short']:8.1f} "
                         f"{100 * r['long']:7.1f} {loss}  {r[A.END]}")
        lines.append("")
    boot = rep["bootstrap"]
    for name, s in rep["signals"].items():
        if not _finite(s["spearman"]):
            lines.append(f"{name}: not enough trials with this signal ({s['n']})")
            continue
        lines.append(f"{name}: Spearman {_f(s['spearman'])} [{_f(s['spearman_ci'][0])}, {_f(s['spearman_ci'][1])}]"
                     f"  Kendall {_f(s['kendall'])} [{_f(s['kendall_ci'][0])}, {_f(s['kendall_ci'][1])}]  "
                     f"front precision {_f(s['front_precision'], 2)} recall {_f(s['front_recall'], 2)}  "
                     f"HV ratio {_f(s['hv_ratio'])}")
    if _finite(rep["size_baseline"]["spearman"]):
        lines.append(f"(baseline: log {rep['size_key']} alone ranks with Spearman "
                     f"{rep['size_baseline']['spearman']:.3f})")
    lines.append(f"intervals: {boot['method']} bootstrap, {boot['n_boot']} resamples, seed {boot['seed']}")
    lines += export_lines(rep.get("export") or {})
    lines += ["", rep["verdict"]]
    return "\n".join(lines)


def export_lines(ex: dict[str, Any]) -> list[str]:
    """Would `export --pareto` and the smallest-within-noise pick change? (a report's `export`)"""
    if not ex:
        return []
    lines = [f"export --pareto over these trials: keeps {_nums(ex['pareto_kept'])}, drops "
             f"{_nums(ex['pareto_dropped'])}, misses {_nums(ex['pareto_missed'])}"]
    if ex["pick_short"] is None:
        return lines + ["smallest within noise: no seed-noise estimate (run `explorer calibrate` or pass --noise-std)"]
    return lines + [f"smallest within noise (std {100 * ex['noise_std']:.2f} points, {ex['noise_from']}): "
                    f"#{ex['pick_short']} short, #{ex['pick_long']} long: "
                    + ("the choice changes" if ex["pick_changes"] else "the same choice")]


def _f(v: Any, places: int = 3) -> str:
    """A figure with `places` decimals; n/a for None or NaN (the JSON form turns NaN into null)."""
    return f"{v:.{places}f}" if _finite(v) else "n/a"


def _nums(numbers: list[int]) -> str:
    return ", ".join(f"#{n}" for n in numbers) if numbers else "none"

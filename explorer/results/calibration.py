"""Seed noise: retrain an exported trial with several seeds, and store the spread in its study.

Calibrations land in the export file and in the study's user attrs as
`calibration/<trial number>` = {acc_mean, acc_std, acc_seeds, noise}: Optuna refuses to
change a finished trial's user attrs (UpdateFinishedTrialError), study attrs stay
writable; explorer.store's reader merges them into the trial. The study receives a
calibration only when its trial is the file's network (same spec_id) and the recipe is
the study's short-trial recipe (`recipe_differences`): explorer.results.selection.assess then
takes it as the trial's accuracy.
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from explorer.core.errors import SpecError, UserError
from explorer.core.util import is_number, plain, print_notes
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.latency import quiet
from explorer.results.exportfile import Export
from explorer.results.retrain import data_settings
from explorer.store import StudyRecord, mask_url, open_storage, password_note, read_study, runnable_url
from explorer.store import attrs as A
from explorer.study.config import NOT_RECIPE, DataConfig
from explorer.training.config import TrainerConfig
from explorer.training.datasource import dataset_name

# The short-trial recipe: every trainer setting but the seed (calibrate varies it) and the
# time_budget_s guard (config.NOT_RECIPE), and the data settings that choose the images (the
# source by dataset name or file name: paths differ between machines).
RECIPE_DATA = ("per_class", "val_per_class", "resolution", "seed")
RULE = "within noise: |a - b| <= 2 * sqrt(std_a^2 + std_b^2)"


def calibrate(exp: Export, data, *, seeds: Sequence[int], device: str,
              settings: dict[str, Any], log: Callable[[str], None] = lambda s: None,
              data_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the spec once per seed with `settings`; the noise mapping (sample std, ddof 1).

    `data_recipe` is the data settings `data` was loaded with (default: the study's,
    `data_settings(exp)`); it is recorded with the result, with the source and image counts.
    `ends` holds each run's end (completed, time_budget, diverged, ...).
    """
    from explorer.design.model import seeded_model
    from explorer.training.train import train

    accs, ends, start = [], [], time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        t0 = time.perf_counter()
        with quiet.training() as pause:  # a latency measurement on this machine pauses it
            res = train(seeded_model(exp.spec, seed), data, device=device, pause=pause, **{**settings, "seed": seed})
        accs.append(float(res.final_acc))
        ends.append(res.end)
        left = (time.perf_counter() - start) / i * (len(seeds) - i)
        log(f"seed {seed} ({i}/{len(seeds)}): val_acc {res.final_acc:.4f}  "
            f"{time.perf_counter() - t0:.1f}s  ({res.end}; about {left:.0f}s left)")
    recipe = data_recipe if data_recipe is not None else data_settings(exp)
    return {"k": len(accs), "mean": statistics.fmean(accs), "std": statistics.stdev(accs),
            "accs": accs, "seeds": list(seeds), "ends": ends, "metric": "val_acc (final epoch)",
            "rule": RULE, "trainer": dict(settings),
            "data": {**recipe, "source": data.source, "train_images": len(data.train.y),
                     "val_images": len(data.val.y)},
            "device": device, "seconds": round(time.perf_counter() - start, 1),
            "calibrated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


@dataclass
class Calibrated:
    """What `calibrate_export` measured and where it went: the noise mapping (explorer calibrate
    writes it into the file), the note on the study (stored there, or why not), and the seeds the
    time budget stopped before their last epoch."""

    noise: dict[str, Any]
    note: str
    cut: list[int]
    stored: bool


def calibrate_export(exp: Export, *, runs: int, device: str, storage: str | None, first_seed: int | None = None,
                     data_path: str | None = None, per_class: int | None = None, epochs: int | None = None,
                     threads: int | None = None, log: Callable[[str], None] = lambda s: None) -> Calibrated:
    """`explorer calibrate`: train the export `runs` times (seeds first_seed.., default the study's
    trainer seed) with its recipe (epochs, threads, per_class: overrides), store the spread in
    its study when the trial and recipe are the study's, and say what happened.

    Checked before any training: whether the study can take the result (a foreign trial is a
    UserError) and how the recipe differs from the study's short trials.
    """
    from explorer.core.runtime import use_threads
    from explorer.results.retrain import data_source, load_export_data, trainer_settings

    settings = trainer_settings(exp, epochs=epochs, threads=threads)
    first = first_seed if first_seed is not None else int(settings["seed"])
    seeds = list(range(first, first + runs))
    source = data_source(data_path, exp)
    recipe = {**data_settings(exp, per_class=per_class if per_class is not None else "study"), "source": source}
    not_stored, diffs = plan_calibration(exp, storage, settings, recipe)
    use_threads(settings["threads"])  # the resize on load runs on torch's threads too
    data = load_export_data(exp, source, per_class=recipe["per_class"])
    log(f"calibrating {exp.label}: {len(seeds)} runs of {settings['epochs']} epochs on "
        f"{len(data.train.y):,} images, seeds {seeds[0]}..{seeds[-1]}, {device}")
    if not_stored:
        print_notes([not_stored])
    noise = calibrate(exp, data, seeds=seeds, device=device, settings=settings, data_recipe=recipe, log=log)
    noise["recipe"] = "the study's short-trial recipe" if not diffs else "changed: " + ", ".join(diffs)
    cut = [s for s, end in zip(noise["seeds"], noise["ends"]) if end == "time_budget"]
    note = store_calibration(exp, noise, storage) if not not_stored else not_stored
    return Calibrated(noise, note, cut, stored=note.startswith("stored in"))


def calibration_file(path: str) -> Export:
    """The export file to calibrate: from `explorer export` (it has provenance), unedited, in a
    writable folder (calibrate rewrites it with the result); a one-line UserError otherwise."""
    from pathlib import Path

    from explorer.core.util import probe_writable
    from explorer.results.exportfile import read_export

    exp = read_export(path)
    if exp.edited:
        raise UserError(f"{path}: {exp.edited}; the noise would not belong to the trial, "
                        "so export the trial again")
    try:
        probe_writable(Path(path).resolve().parent)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc}): calibrate rewrites it with the "
                        "result; make its folder writable or copy the file somewhere writable") from None
    if not exp.provenance:
        raise UserError(f"{path} has no provenance: calibrate needs a file from `explorer export`")
    return exp


def recipe_differences(study_config: dict[str, Any] | None, trainer: dict[str, Any],
                       data: dict[str, Any]) -> list[str]:
    """How a run's recipe (`trainer` settings, `data` settings) differs from the study's short
    trials (`study_config`: the study's stored config, or an export's provenance, with
    trainer and data mappings); [] when it is the same recipe."""
    cfg = study_config or {}
    want_t = {**TrainerConfig().__dict__, **(cfg.get("trainer") or {})}
    want_d = {**DataConfig().__dict__, **(cfg.get("data") or {})}
    trainer = {**TrainerConfig().__dict__, **trainer}  # a setting left out is its default (threads: 1)
    out = [f"{k} {_show(trainer.get(k))} instead of {_show(want_t[k])}"
           for k in want_t if k not in ("seed", *NOT_RECIPE) and not _same(trainer.get(k), want_t[k])]
    out += [f"data.{k} {_show(data.get(k))} instead of {_show(want_d.get(k))}"
            for k in RECIPE_DATA if not _same(data.get(k), want_d.get(k))]
    have, want = dataset_name(data.get("source")), dataset_name(want_d.get("source"))
    if have and want and have != want:
        out.append(f"data {data.get('source')} instead of {want_d.get('source')}")
    return out


def _same(a: Any, b: Any) -> bool:
    if is_number(a) and is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _show(v: Any) -> str:
    return "null" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@dataclass
class _Target:
    """Where a calibration would be stored: an open storage and the study's record."""

    url: str
    storage: Any
    study: StudyRecord


def _calibration_target(exp: Export, storage_url: str | None) -> tuple[_Target | None, str]:
    """(target, '') or (None, why it cannot be stored). UserError when the trial stored there is
    another network than the file's (a re-created study, or --storage pointing elsewhere)."""
    prov = exp.provenance
    url = storage_url or prov.get("storage")
    if not url or "study" not in prov or "trial" not in prov:
        return None, "no study in the file's provenance: stored in the file only"
    if "***" in url:
        return None, (f"storage {url} has a masked password: pass --storage {shlex.quote(runnable_url(url))}"
                      f"{password_note(url)} to store the result there too")
    try:
        storage = open_storage(url)
        rec = read_study(storage, prov["study"], url=url)
    except UserError as exc:
        return None, f"not stored in the study ({exc})"
    trial = next((t for t in rec.trials if t.number == prov["trial"]), None)
    if trial is None:
        return None, f"study {prov['study']!r} has no trial #{prov['trial']}: stored in the file only"
    ours = spec_id(exp.spec)
    try:
        theirs = spec_id(SqueezeSpec.from_dict(trial.attrs["spec"]))
    except (KeyError, TypeError, SpecError):
        theirs = "none (no valid stored spec)"
    if theirs != ours or prov.get("spec_id") not in (None, ours):
        raise UserError(f"{exp.path}: trial #{prov['trial']} of study {prov['study']!r} in "
                        f"{mask_url(url)} is another network (spec_id {theirs}; this file's is "
                        f"{prov.get('spec_id') or ours}): the study was re-created or --storage points "
                        "elsewhere; pass the --storage of the study that trained it, or export the trial again")
    return _Target(url, storage, rec), ""


def plan_calibration(exp: Export, storage_url: str | None, settings: dict[str, Any],
                     data_recipe: dict[str, Any]) -> tuple[str, list[str]]:
    """Before training: (why the result will not go into the study, '' if it will; how the
    recipe differs from the study's short trials). UserError for a foreign trial (see
    `_calibration_target`)."""
    target, why = _calibration_target(exp, storage_url)
    diffs = recipe_differences(target.study.config if target else exp.provenance, settings, data_recipe)
    if target is None:
        return why, diffs
    if not target.study.config:
        return _NO_RECIPE, diffs
    return (_recipe_note(diffs) if diffs else ""), diffs


_NO_RECIPE = "the study stored no trainer settings to compare the recipe with: stored in the file only"


def _recipe_note(diffs: list[str]) -> str:
    return ("not stored in the study: the recipe differs from its short trials ("
            + ", ".join(diffs) + "), so the spread is not the trial's seed noise")


def store_calibration(exp: Export, noise: dict[str, Any], storage_url: str | None = None) -> str:
    """Write the calibration into the study (study user attr calibration/N); a one-line note.

    Stored only when the trial there is the file's network and the recipe (noise['trainer'],
    noise['data']) is the study's short-trial recipe; otherwise the note says why not.
    Never raises for the study's sake: the caller still has the result to write.
    """
    prov = exp.provenance
    try:
        target, why = _calibration_target(exp, storage_url)
        if target is None:
            return why
        if not target.study.config:
            return _NO_RECIPE
        diffs = recipe_differences(target.study.config, noise.get("trainer") or {}, noise.get("data") or {})
        if diffs:
            return _recipe_note(diffs)
        value = {A.ACC_MEAN: noise["mean"], A.ACC_STD: noise["std"], A.ACC_SEEDS: noise["accs"],
                 "noise": plain(noise)}
        study_id = target.storage.get_study_id_from_name(prov["study"])
        target.storage.set_study_user_attr(study_id, A.calibration_key(prov["trial"]), value)
    except Exception as exc:  # noqa: BLE001 - a foreign trial, a read-only or vanished storage, ...
        reason = mask_url(" ".join(str(exc).split()), storage_url or prov.get("storage"))
        return f"not stored in the study ({reason[:300]})"
    return (f"stored in {mask_url(target.url)} as study {prov['study']!r} user attr "
            f"{A.calibration_key(prov['trial'])}")

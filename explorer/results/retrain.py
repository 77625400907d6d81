"""Training an exported network again: its recipe, data, the run, checkpoints and a model card.

The study's trainer and data settings travel in the export file's provenance; they are
the defaults here (each can be overridden), and the same seed draws the same initial
weights as the trial did (explorer.design.model.seeded_model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from explorer.core.errors import SpecError, UserError
from explorer.core.util import atomic_write, plain, print_notes, write_atomic
from explorer.design.costtable import format_table
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.latency import quiet
from explorer.results.exportfile import Export
from explorer.store import mask_url
from explorer.study.config import DataConfig
from explorer.training.config import TrainerConfig
from explorer.training.datasource import resolve_source

CHECKPOINT_KEYS = ("spec", "state_dict")


def data_source(cli: str | None, exp: Export) -> str:
    """Where to load the images from (explorer.training.datasource's rule, the file's data.source stored)."""
    source = exp.data.get("source")
    return resolve_source(cli, source, missing=(f"no data for {exp.path}: pass --data PATH (the study used "
                                                f"{source or 'an unknown source'}) or set EXPLORER_DATA"))


def data_settings(exp: Export, *, per_class: int | None | str = "study") -> dict[str, Any]:
    """The data recipe actually used: the study's data settings (DataConfig defaults where
    absent), `per_class` replaced unless 'study', the resolution the spec's input size."""
    d = {**DataConfig().__dict__, **exp.data}
    if per_class != "study":
        d["per_class"] = per_class
    d["resolution"] = exp.spec.input_size
    return d


def load_export_data(exp: Export, source: str, *, per_class: int | None | str = "study"):
    """The dataset at the spec's input size; `per_class` 'study' keeps the study's subset."""
    from explorer.training.data import load_data

    d = data_settings(exp, per_class=per_class)
    data = load_data(source, per_class=d["per_class"], val_per_class=d["val_per_class"],
                     resolution=d["resolution"], seed=d["seed"])
    print_notes(data.notes)
    if data.num_classes != exp.spec.num_classes:
        raise UserError(f"{source} has {data.num_classes} classes but the spec has num_classes="
                        f"{exp.spec.num_classes}; pass the study's dataset with --data")
    return data


def trainer_settings(exp: Export, **overrides: Any) -> dict[str, Any]:
    """The study's trainer settings (TrainerConfig defaults where absent), overrides applied."""
    kw = {**TrainerConfig().__dict__, **exp.trainer}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return kw


def retrain(exp: Export, data, *, settings: dict[str, Any], device: str,
            progress: Callable | None = None, on_epoch_end: Callable | None = None):
    """Train the spec with `settings`, then evaluate on the held-out test split.

    Returns (model, TrainResult, metrics); metrics hold test_acc / test_loss and the run's figures.
    """
    from explorer.design.model import seeded_model
    from explorer.training.train import evaluate, train

    model = seeded_model(exp.spec, settings["seed"])
    with quiet.training() as pause:  # a latency measurement on this machine pauses it
        res = train(model, data, device=device, progress=progress, on_epoch_end=on_epoch_end, pause=pause,
                    **settings)
    seen = len(data.notes)
    test = data.test()
    print_notes(data.notes[seen:])  # the test split's own skipped files or cache repairs
    test_acc, test_loss = evaluate(model, test.x, test.y, mean=data.mean, std=data.std, device=device)
    metrics = {"test_acc": test_acc, "test_loss": test_loss, "test_images": len(test.y),
               "val_acc": res.final_acc, "best_val_acc": res.best_acc, "curve": res.val_acc,
               "val_loss": res.val_loss, "epochs": res.epochs, "steps": res.steps,
               "train_seconds": res.train_seconds, "images_per_s": res.images_per_s, "end": res.end,
               "train_images": len(data.train.y), "val_images": len(data.val.y)}
    return model, res, plain(metrics)


def train_export(exp: Export, out: Path, *, settings: dict[str, Any], device: str, data_path: str | None = None,
                 per_class: int | None | str = "study", with_export: bool = False, command: str = "",
                 begin: Callable[[str], None] = lambda line: None, progress: Callable | None = None,
                 on_epoch_end: Callable | None = None) -> dict[str, Any]:
    """`explorer train`: retrain an export, test it, write model.pt, model_card.md and train.json
    into `out` (and, `with_export`, the export file itself, as a study's trial); the metrics.

    The folder is checked before the data is loaded; `begin(line)` is called, with a line saying
    what is trained, just before the training. A folder that fails while writing (it vanished,
    the disk filled) gets a UserError naming the temporary folder the outputs went to instead.
    """
    from explorer.core import yamlio
    from explorer.core.runtime import git_revision, package_versions, use_threads
    from explorer.results.exportfile import prepare_out

    out = prepare_out(Path(out))  # before the training: a bad folder costs nothing
    if with_export:  # the study's trial as `explorer export` writes it, beside the model
        exp.path = out / exp.path.name
        write_atomic(exp.path, yamlio.dump(exp.doc, exp.fmt))
    source = data_source(data_path, exp)
    use_threads(settings["threads"])  # the resize on load runs on torch's threads too
    data = load_export_data(exp, source, per_class=per_class)
    begin(f"training {exp.label} for {settings['epochs']} epochs on {len(data.train.y):,} images "
          f"({data.source}, {exp.spec.input_size} px) on {device}")
    model, _, metrics = retrain(exp, data, settings=settings, device=device, progress=progress,
                                on_epoch_end=on_epoch_end)
    run_info = {"device": device, "data_source": data.source, "git_rev": git_revision(),
                "versions": package_versions(), "command": command}
    preprocess = {"mean": list(data.mean), "std": list(data.std), "input": "RGB uint8 / 255",
                  "input_size": exp.spec.input_size}
    extra = {"trainer": settings, "preprocess": preprocess, "provenance": stored_provenance(exp), "run": run_info}
    _write_or_rescue(out, exp.spec, model, metrics, extra, model_card(exp, metrics, settings, run_info))
    return metrics


def _write_or_rescue(out: Path, spec: SqueezeSpec, model, metrics: dict[str, Any], extra: dict[str, Any],
                     card: str) -> None:
    """write_outputs into `out`, else into a fresh temporary folder (UserError saying where): the
    trained model is never lost to a folder that failed during the training."""
    import tempfile

    try:
        write_outputs(out, spec, model, metrics, extra, card)
    except OSError as exc:  # the folder vanished or the disk filled during training: keep the model
        rescue = Path(tempfile.mkdtemp(prefix="explorer-train-"))
        try:
            write_outputs(rescue, spec, model, metrics, extra, card)
        except OSError as again:
            raise UserError(f"cannot write into {out} ({exc.strerror or exc}) nor into {rescue} "
                            f"({again.strerror or again}); the trained model could not be saved") from None
        raise UserError(f"cannot write into {out} ({exc.strerror or exc}); wrote model.pt, model_card.md and "
                        f"train.json into {rescue} instead (test accuracy {100 * metrics['test_acc']:.2f}%)") from None


# --- checkpoints -------------------------------------------------------------------------------

def save_checkpoint(path: Path, spec: SqueezeSpec, model, metrics: dict[str, Any],
                    extra: dict[str, Any]) -> None:
    """torch.save {spec, state_dict, metrics, ...} (tensors and plain types only), atomically."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ckpt = {"spec": spec.to_dict(), "state_dict": state, "metrics": plain(metrics), **plain(extra)}
    atomic_write(path, lambda f: torch.save(ckpt, f), binary=True)


def write_outputs(out: Path, spec: SqueezeSpec, model, metrics: dict[str, Any], extra: dict[str, Any],
                  card: str) -> None:
    """model_card.md, train.json, then model.pt, each atomically: model.pt comes last, so where it
    is, the card and metrics beside it are its own (a run killed before it leaves no model.pt;
    the previous run's model.pt and model.onnx are removed first, as they no longer match)."""
    for stale in ("model.pt", "model.onnx"):
        (out / stale).unlink(missing_ok=True)
    write_atomic(out / "model_card.md", card)
    write_atomic(out / "train.json", json.dumps(plain({"metrics": metrics, **extra}), indent=2) + "\n")
    save_checkpoint(out / "model.pt", spec, model, metrics, extra)


def load_checkpoint(path: str | Path):
    """(model in eval mode, checkpoint dict), loaded with weights_only=True.

    Every way a file can fail to be an explorer checkpoint (unreadable, not a torch file,
    pickled objects other than tensors and plain types, missing keys, an invalid spec,
    weights that do not fit the spec) is a one-line UserError.
    """
    from explorer.design.model import build_model

    ckpt = _torch_load(path)
    hint = "give a model.pt written by `explorer train`"
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


def _torch_load(path: str | Path) -> Any:
    """torch.load(weights_only=True); every failure a one-line UserError."""
    import pickle

    import torch

    hint = "give a model.pt written by `explorer train`"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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


# --- the model card ----------------------------------------------------------------------------

def model_card(exp: Export, metrics: dict[str, Any], settings: dict[str, Any], run: dict[str, Any]) -> str:
    """A Markdown model card: result, network table and costs, how it was trained, provenance."""
    from explorer.design.cost import estimate_cost

    cost = estimate_cost(exp.spec)
    lines = [f"# Model card: {exp.label} (spec_id {spec_id(exp.spec)})", "", "## Result", "",
             *_result_lines(exp, metrics, run), "",
             "## Network", "", "```text", format_table(exp.spec, cost), "```", "",
             "Costs: " + ", ".join(f"`{k}` = {v:,}" if isinstance(v, int) else f"`{k}` = {v:.4f}"
                                   for k, v in cost.to_dict().items()) + ".",
             "MACs are multiply-adds (fvcore convention; FLOPs = 2 x MACs); sizes are fp32 "
             "(4 bytes per parameter) unless marked int8.", "",
             "## How it was trained", "",
             f"`explorer train` with explorer.training.train.train (SGD, Nesterov momentum, warm-up then linear "
             f"decay, random crop + flip), seeded with {settings['seed']} (weights and batches).", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {'none' if v is None else v} |" for k, v in settings.items()]
    lines += [f"| data | {run['data_source']}: {metrics['train_images']:,} train / "
              f"{metrics['val_images']:,} val images, {exp.spec.input_size} px |",
              f"| device | {run['device']} |", f"| command | `{run['command']}` |", "",
              "## Provenance", "", *_provenance_lines(exp, run), "",
              "## Loading it", "", "```python", "import torch",
              "from explorer.results.retrain import load_checkpoint",
              "model, ckpt = load_checkpoint('model.pt')  # torch.load(..., weights_only=True) inside",
              "mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ckpt['preprocess']['mean'], "
              "ckpt['preprocess']['std']))",
              "logits = model((images_uint8.float() / 255 - mean) / std)",
              "```", ""]
    return "\n".join(lines)


def _result_lines(exp: Export, metrics: dict[str, Any], run: dict[str, Any]) -> list[str]:
    study_acc = (exp.doc.get("metrics") or {}).get("val_acc")
    noise = exp.doc.get("noise") or {}
    lines = [f"- **test accuracy {100 * metrics['test_acc']:.2f}%** on {metrics['test_images']:,} held-out "
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
    return lines + _latency_lines(exp.doc.get("metrics") or {})


def _latency_lines(metrics: dict[str, Any]) -> list[str]:
    """The study's latency of this network, with the setting it belongs to (none if not measured)."""
    ms, spread = metrics.get("latency_ms"), metrics.get("latency_spread")
    if not isinstance(ms, (int, float)):
        return []
    ci = f" (95% CI of the median ±{100 * spread:.1f}%)" if isinstance(spread, (int, float)) else ""
    return [f"- latency {ms:.3g} ms per forward pass, median{ci}, measured in the study on "
            f"{metrics.get('latency_setting') or 'an unrecorded setting'}; it compares only with "
            "latencies measured on the same setting"]


def stored_provenance(exp: Export) -> dict[str, Any]:
    """The file's provenance as model.pt, train.json and the card keep it: the storage URL's
    password masked (a hand-written export may carry one; ours never do)."""
    prov = dict(exp.provenance)
    if isinstance(prov.get("storage"), str):
        prov["storage"] = mask_url(prov["storage"])
    return prov


def _provenance_lines(exp: Export, run: dict[str, Any]) -> list[str]:
    prov = stored_provenance(exp)
    if prov:
        lines = [f"- study `{prov.get('study')}`, trial #{prov.get('trial')}, storage `{prov.get('storage')}`",
                 f"- study trainer settings: `{json.dumps(prov.get('trainer'))}`",
                 f"- trial trained at git revision `{prov.get('git_rev')}` on {prov.get('device')}"]
    else:
        lines = [f"- a bare spec file: {exp.path}"]
    if exp.edited:
        lines.append(f"- **the spec was edited after export**: {exp.edited}")
    return lines + [f"- retrained at git revision `{run['git_rev']}`; versions `{json.dumps(run['versions'])}`",
                    f"- config file: `{exp.path}`"]

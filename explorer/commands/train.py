"""`explorer train FILE --epochs N --out DIR`: a longer training of an exported config
(or `explorer train STUDY --trial best|smallest|N ...`: a study's trial, exported in memory).

The trainer settings stored in the file's provenance are the defaults (each can be
overridden); the result is evaluated once on the held-out test split and written as a
checkpoint (model.pt), a model card (model_card.md) and train.json; with --int8 the trained
network is also quantized to int8 and measured beside fp32 (explorer.results.int8).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from explorer.commands import SELECTOR_HELP

    """Add the `train` subcommand."""
    p = sub.add_parser("train", help="train an exported config longer; test accuracy, checkpoint, model card",
                       description="Train the network of an export (or spec) file with the study's "
                                   "trainer settings (overridable), evaluate it on the held-out test "
                                   "split, and write DIR/model.pt, DIR/model_card.md and DIR/train.json (with "
                                   "--trial, also the trial's export file).")
    p.add_argument("file", help="an export file (explorer export) or a spec file; with --trial, a study "
                                "file or study name")
    p.add_argument("--trial", metavar="SEL", help=f"train a trial of the study FILE names: {SELECTOR_HELP}")
    p.add_argument("--storage", help="with --trial: the study's storage URL (default: the study file's, "
                                     "else runs/<name>.journal)")
    p.add_argument("--epochs", type=int, required=True, help="epochs to train")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--data", help="dataset (default: EXPLORER_DATA, the study's source if present here, "
                                  "else ../shared/datasets/cifar10-jpeg.tar.gz)")
    p.add_argument("--per-class", type=int, metavar="N",
                   help="training images per class (default: all; the study's val split is kept apart)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--seed", type=int, help="seed for weights, batches and augmentation (default: the study's)")
    for name, kind in (("batch-size", int), ("lr", float), ("momentum", float), ("weight-decay", float),
                       ("label-smoothing", float)):
        p.add_argument(f"--{name}", type=kind, help="override the study's value")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default: the study's trainer.threads, else 1); changes results")
    p.add_argument("--time-budget", type=float, metavar="S", help="stop training after S seconds (default: none)")
    p.add_argument("--onnx", action="store_true", help="also write DIR/model.onnx (needs the [onnx] extra)")
    p.add_argument("--int8", action="store_true",
                   help="also quantize the trained network to int8 (onnxruntime static quantization, calibrated on "
                        "training images): DIR/model.onnx, DIR/model.int8.onnx, DIR/int8.json, their sizes, val and "
                        "test accuracy and latency in the model card and the study (needs the [onnx] extra)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate on test, write checkpoint, model card and metrics."""
    from explorer.core import util, yamlio
    from explorer.core.errors import UserError
    from explorer.core.runtime import check_device, git_revision, package_versions, use_threads
    from explorer.results import retrain as rt
    from explorer.results.exportfile import prepare_out, read_export, study_export
    from explorer.study.config import check_overrides

    check_overrides(epochs=args.epochs, per_class=args.per_class, seed=args.seed,
                          batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                          time_budget=args.time_budget, threads=args.threads)
    if args.int8:
        from explorer.results.int8 import missing

        if missing():  # before the training, not after it
            raise UserError(f"--int8: {missing()}")
    # before check_device: a bad file is answered without importing torch
    exp = study_export(args.file, args.storage, args.trial)[0] if args.trial is not None else read_export(args.file)
    device = check_device(args.device)
    if exp.edited:
        print(f"explorer: warning: {args.file}: {exp.edited}; training the edited spec", file=sys.stderr)
    settings = rt.trainer_settings(exp, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                                   lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                   label_smoothing=args.label_smoothing, threads=args.threads)
    settings["time_budget_s"] = args.time_budget  # the study's short-trial budget does not apply
    out = prepare_out(Path(args.out))  # before the training: a bad folder costs nothing
    if args.trial is not None:  # the study's trial as `explorer export` writes it, beside the model
        exp.path = out / exp.path.name
        util.write_atomic(exp.path, yamlio.dump(exp.doc, exp.fmt))
    source = rt.data_source(args.data, exp)
    use_threads(settings["threads"])  # the resize on load runs on torch's threads too
    data = rt.load_export_data(exp, source, per_class=args.per_class)
    print(f"training {exp.label} for {args.epochs} epochs on {len(data.train.y):,} images "
          f"({data.source}, {exp.spec.input_size} px) on {device}", file=sys.stderr)
    progress, on_epoch = _progress(args.epochs)
    try:
        model, _, metrics = rt.retrain(exp, data, settings=settings, device=device, progress=progress,
                                       on_epoch_end=on_epoch)
    finally:
        progress.close()
    run_info = {"device": device, "data_source": data.source, "git_rev": git_revision(),
                "versions": package_versions(), "command": "explorer " + " ".join(sys.argv[1:])}
    preprocess = {"mean": list(data.mean), "std": list(data.std), "input": "RGB uint8 / 255",
                  "input_size": exp.spec.input_size}
    extra = {"trainer": settings, "preprocess": preprocess, "provenance": rt.stored_provenance(exp),
             "run": run_info}
    card = rt.model_card(exp, metrics, settings, run_info)
    try:
        rt.write_outputs(out, exp.spec, model, metrics, extra, card)
    except OSError as exc:  # the folder vanished or the disk filled during training: keep the model
        rescue = Path(tempfile.mkdtemp(prefix="explorer-train-"))
        try:
            rt.write_outputs(rescue, exp.spec, model, metrics, extra, card)
        except OSError as again:
            raise UserError(f"cannot write into {out} ({exc.strerror or exc}) nor into {rescue} "
                            f"({again.strerror or again}); the trained model could not be saved") from None
        raise UserError(f"cannot write into {out} ({exc.strerror or exc}); wrote model.pt, model_card.md and "
                        f"train.json into {rescue} instead (test accuracy {100 * metrics['test_acc']:.2f}%)") from None
    print(f"test accuracy {100 * metrics['test_acc']:.2f}% on {metrics['test_images']:,} images "
          f"(val {100 * metrics['val_acc']:.2f}%); wrote {out / 'model.pt'}, {out / 'model_card.md'}, "
          f"{out / 'train.json'}")
    if args.onnx and not args.int8:  # --int8 writes model.onnx itself, as its fp32 reference
        from explorer.results.onnx_export import export_onnx

        print(export_onnx(out / "model.pt", out / "model.onnx"))
    if args.int8:
        from explorer.results.int8_files import quantize_trained

        print(f"int8: quantizing {exp.label} (onnxruntime; calibration, evaluation and timing take about a "
              "minute)", file=sys.stderr)
        for line in quantize_trained(out, model, data, seed=settings["seed"], metrics=metrics, exp=exp,
                                     storage_url=args.storage)[1]:
            print(line, file=sys.stderr if line.startswith("explorer: warning") else sys.stdout)
    return 0


def _progress(epochs: int):
    """A tqdm bar over steps (ETA included) and an epoch callback writing one line per epoch."""
    from tqdm import tqdm

    bar = tqdm(unit="step", file=sys.stderr, dynamic_ncols=True, desc="train")
    start = time.perf_counter()

    def progress(step: int, total: int, loss: float) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(step - bar.n)
        if step % 10 == 0 or step == total:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def on_epoch(epoch: int, metrics: dict) -> bool:
        spent = time.perf_counter() - start
        left = spent / epoch * (epochs - epoch)
        bar.write(f"epoch {epoch}/{epochs}: val_acc {metrics['val_acc']:.4f}  val_loss "
                  f"{metrics['val_loss']:.4f}  {spent:.0f}s spent, about {left:.0f}s left", file=sys.stderr)
        return False

    progress.close = bar.close
    return progress, on_epoch

"""`explorer train FILE --epochs N --out DIR`: a longer training of an exported config
(or `explorer train STUDY --trial best|smallest|N ...`: a study's trial, exported in memory).

The trainer settings stored in the file's provenance are the defaults (each can be
overridden); the result is evaluated once on the held-out test split and written as a
checkpoint (model.pt), a model card (model_card.md) and train.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    from explorer.commands import DATA_HELP, DEVICE_HELP, SELECTOR_HELP

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
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--per-class", type=int, metavar="N",
                   help="training images per class (default: all; the study's val split is kept apart)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, help="seed for weights, batches and augmentation (default: the study's)")
    for name, kind in (("batch-size", int), ("lr", float), ("momentum", float), ("weight-decay", float),
                       ("label-smoothing", float)):
        p.add_argument(f"--{name}", type=kind, help="override the study's value")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default: the study's trainer.threads, else 1); changes results")
    p.add_argument("--time-budget", type=float, metavar="S", help="stop training after S seconds (default: none)")
    p.add_argument("--onnx", action="store_true", help="also write DIR/model.onnx (needs the [onnx] extra)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate on test, write checkpoint, model card and metrics."""
    from explorer.core.runtime import check_device
    from explorer.results import retrain as rt
    from explorer.results.exportfile import read_export, study_export
    from explorer.study.configcheck import check_overrides

    check_overrides(epochs=args.epochs, per_class=args.per_class, seed=args.seed,
                    batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                    time_budget=args.time_budget, threads=args.threads)
    # before check_device: a bad file is answered without importing torch
    exp = study_export(args.file, args.storage, args.trial)[0] if args.trial is not None else read_export(args.file)
    device = check_device(args.device)
    if exp.edited:
        print(f"explorer: warning: {args.file}: {exp.edited}; training the edited spec", file=sys.stderr)
    settings = rt.trainer_settings(exp, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                                   lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                   label_smoothing=args.label_smoothing, threads=args.threads)
    settings["time_budget_s"] = args.time_budget  # the study's short-trial budget does not apply
    bar = _Progress(args.epochs)
    try:
        metrics = rt.train_export(exp, Path(args.out), settings=settings, device=device, data_path=args.data,
                                  per_class=args.per_class, with_export=args.trial is not None,
                                  command="explorer " + " ".join(sys.argv[1:]), begin=bar.begin,
                                  progress=bar.step, on_epoch_end=bar.epoch)
    finally:
        bar.close()
    out = Path(args.out)
    print(f"test accuracy {100 * metrics['test_acc']:.2f}% on {metrics['test_images']:,} images "
          f"(val {100 * metrics['val_acc']:.2f}%); wrote {out / 'model.pt'}, {out / 'model_card.md'}, "
          f"{out / 'train.json'}")
    if args.onnx:
        from explorer.results.onnx_export import export_onnx

        print(export_onnx(out / "model.pt", out / "model.onnx"))
    return 0


class _Progress:
    """What the user sees of a training: its first line, a tqdm bar over steps (ETA included) and a
    line per epoch with the time spent and left."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.bar, self.start = epochs, None, 0.0

    def begin(self, line: str) -> None:
        """The training starts now: its line, then the bar."""
        from tqdm import tqdm

        print(line, file=sys.stderr)
        self.bar = tqdm(unit="step", file=sys.stderr, dynamic_ncols=True, desc="train")
        self.start = time.perf_counter()

    def step(self, step: int, total: int, loss: float) -> None:
        """The trainer's `progress`: move the bar, show the loss every 10 steps."""
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(step - self.bar.n)
        if step % 10 == 0 or step == total:
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def epoch(self, epoch: int, metrics: dict) -> bool:
        """The trainer's `on_epoch_end`: one line; never stops the run."""
        spent = time.perf_counter() - self.start
        left = spent / epoch * (self.epochs - epoch)
        self.bar.write(f"epoch {epoch}/{self.epochs}: val_acc {metrics['val_acc']:.4f}  val_loss "
                       f"{metrics['val_loss']:.4f}  {spent:.0f}s spent, about {left:.0f}s left", file=sys.stderr)
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""`explorer calibrate FILE --seeds K`: retrain an export K times with the study's recipe; store mean and std."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `calibrate` subcommand."""
    p = sub.add_parser("calibrate", help="measure seed noise: retrain an exported config K times",
                       description="Retrain the config K times with the study's short-trial recipe "
                                   "(the trainer and data settings in the file), seeds S..S+K-1 for "
                                   "weights, batches and augmentation (the val split stays fixed). "
                                   "Writes a noise: mapping (k, mean, std, accs) into FILE and the "
                                   "study user attr calibration/<trial> when the study can be opened.")
    p.add_argument("file", help="an export file written by `explorer export`")
    p.add_argument("--seeds", type=int, required=True, metavar="K", help="number of runs (>= 2)")
    p.add_argument("--seed", type=int, help="first seed (default: the study's trainer seed)")
    p.add_argument("--data", help="dataset (default: EXPLORER_DATA, the study's source if present here, "
                                  "else ../shared/datasets/cifar10-jpeg.tar.gz)")
    p.add_argument("--per-class", type=int, metavar="N",
                   help="training images per class (default: the study's; changing it changes the recipe)")
    p.add_argument("--epochs", type=int, help="override the study's epochs (changes the recipe)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--storage", help="storage URL (default: the file's provenance.storage)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, write the file, store in the study, print mean and std."""
    from explorer import export as ex
    from explorer.errors import UserError
    from explorer.study import default_device

    if args.seeds < 2:
        raise UserError(f"--seeds={args.seeds}: give at least 2 runs (a std needs two)")
    for name in ("per_class", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')}={value}: give an integer >= 1")
    exp = ex.read_export(args.file)
    if not exp.provenance:
        raise UserError(f"{args.file} has no provenance: calibrate needs a file from `explorer export`")
    if exp.edited:
        raise UserError(f"{args.file}: {exp.edited}; the noise would not belong to the trial, "
                        "so export the trial again")
    settings = ex.trainer_settings(exp, epochs=args.epochs)
    first = args.seed if args.seed is not None else int(settings["seed"])
    seeds = list(range(first, first + args.seeds))
    device = args.device or default_device()
    data = ex.load_export_data(exp, ex.resolve_data_source(args.data, exp),
                               per_class=args.per_class if args.per_class is not None else "study")
    print(f"calibrating {exp.label}: {len(seeds)} runs of {settings['epochs']} epochs on "
          f"{len(data.train.y):,} images, seeds {seeds[0]}..{seeds[-1]}, {device}", file=sys.stderr)
    noise = ex.calibrate(exp, data, seeds=seeds, device=device, settings=settings,
                         log=lambda line: print(line, file=sys.stderr))
    ex.update_export(exp, "noise", noise)
    note = ex.store_calibration(exp, noise, args.storage)
    print(f"{exp.label}: val_acc {100 * noise['mean']:.2f}% ± {100 * noise['std']:.2f}% (mean ± std "
          f"over {noise['k']} seeds: {', '.join(f'{100 * a:.2f}' for a in noise['accs'])}); "
          f"written to {args.file}; {note}")
    return 0

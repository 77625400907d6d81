"""`explorer calibrate FILE --seeds K`: retrain an export K times with the study's recipe; store mean and std."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `calibrate` subcommand."""
    from explorer.commands import DATA_HELP, DEVICE_HELP, SELECTOR_HELP

    p = sub.add_parser("calibrate", help="measure seed noise: retrain an exported config K times",
                       description="Retrain the config K times with the study's short-trial recipe "
                                   "(the trainer and data settings in the file), seeds S..S+K-1 for "
                                   "weights, batches and augmentation (the val split stays fixed). "
                                   "Stores the mean and std as the study user attr calibration/<trial> "
                                   "when the study opens, its trial is this network and the recipe is "
                                   "the study's; then writes a noise: mapping (k, mean, std, accs) "
                                   "into FILE.")
    p.add_argument("file", help="an export file written by `explorer export`; with --trial, a study file "
                                "or study name (the result then goes into the study only)")
    p.add_argument("--trial", metavar="SEL", help=f"calibrate a trial of the study FILE names: {SELECTOR_HELP}")
    p.add_argument("--seeds", type=int, required=True, metavar="K", help="number of runs (>= 2)")
    p.add_argument("--seed", type=int, help="first seed (default: the study's trainer seed)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--per-class", type=int, metavar="N",
                   help="training images per class (default: the study's; a changed recipe is written "
                        "to FILE only, not the study)")
    p.add_argument("--epochs", type=int, help="override the study's epochs (a changed recipe is written to "
                                               "FILE only, not the study)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default: the study's trainer.threads, else 1; another count is "
                        "a changed recipe, written to FILE only)")
    p.add_argument("--storage", help="storage URL (default: the file's provenance.storage; with --trial, the "
                                     "study file's, else runs/<name>.journal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, store in the study (same recipe only), write the file, print mean and std.

    Everything that can be checked is checked before the minutes of training: the
    arguments, the file, the device, that FILE's folder is writable and that the study's
    trial is the file's network. The study is written before the file, and a failure to
    rewrite the file still prints the result.
    """
    from explorer.core.errors import UserError
    from explorer.core.runtime import check_device
    from explorer.results import calibration as cal
    from explorer.results import exportfile as ef
    from explorer.study.configcheck import MAX_SEED, check_overrides

    if args.seeds < 2:
        raise UserError(f"--seeds={args.seeds}: give at least 2 runs (a std needs two)")
    check_overrides(per_class=args.per_class, epochs=args.epochs, seed=args.seed, threads=args.threads)
    if args.seed is not None and args.seed + args.seeds - 1 > MAX_SEED:
        raise UserError(f"--seed={args.seed} --seeds={args.seeds}: the last seed would exceed "
                        f"{MAX_SEED}; give a smaller --seed")
    device = check_device(args.device)
    if args.trial is not None:  # a study's trial: the result goes into the study, there is no file
        exp, args.storage = ef.study_export(args.file, args.storage, args.trial)
    else:
        exp = cal.calibration_file(args.file)
    done = cal.calibrate_export(exp, runs=args.seeds, device=device, storage=args.storage, first_seed=args.seed,
                                data_path=args.data, per_class=args.per_class, epochs=args.epochs,
                                threads=args.threads, log=lambda line: print(line, file=sys.stderr))
    noise = done.noise
    if done.cut:
        print(f"explorer: warning: seed(s) {', '.join(map(str, done.cut))} stopped at the time budget "
              f"({noise['trainer']['time_budget_s']:g} s) before the last epoch: those accuracies come from "
              "fewer epochs, so the spread mixes seed noise with machine speed", file=sys.stderr)
    result = (f"{exp.label}: val_acc {100 * noise['mean']:.2f}% ± {100 * noise['std']:.2f}% (mean ± std "
              f"over {noise['k']} seeds: {', '.join(f'{100 * a:.2f}' for a in noise['accs'])})")
    if args.trial is not None:
        print(f"{result}; {done.note}")
        return 0
    try:
        ef.update_export(exp, "noise", noise)
    except OSError as exc:
        print(f"{result}; {done.note}")
        raise UserError(f"cannot rewrite {args.file} ({exc.strerror or exc}); the result is printed above"
                        + (" and stored in the study: `explorer export` writes it into a new file"
                           if done.stored else "")) from None
    print(f"{result}; written to {args.file}; {done.note}")
    return 0

"""`explorer fidelity STUDY`: retrain a sample of trials with a longer recipe; how well did the short run rank them?"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fidelity` subcommand."""
    from explorer.commands import DATA_HELP, DEVICE_HELP

    p = sub.add_parser("fidelity", help="does a short trial predict a long one? retrain a sample and compare",
                       description="Retrain a sample of the study's trained trials with a longer recipe (default: "
                                   "4x the study's epochs), store each long result with the study "
                                   "(user attr fidelity/<recipe>/<trial>) as soon as it is measured, and report "
                                   "Spearman and Kendall between short and long accuracy with bootstrap 95% "
                                   "intervals, front agreement, the hypervolume ratio and whether the export "
                                   "choices would change. Trials already measured with the recipe are not "
                                   "retrained: rerun after a kill, or give a larger --sample to extend it; "
                                   "--sample 0 only reports. See docs/fidelity.md.")
    p.add_argument("study", help="a study file or a study name")
    p.add_argument("--storage", help="storage URL or path (default: the study file's, else runs/<name>.journal)")
    p.add_argument("--sample", type=int, default=8, metavar="K",
                   help="measured trials wanted in all, with this recipe (default 8; 0: report only)")
    longer = p.add_mutually_exclusive_group()
    longer.add_argument("--epochs", type=int, metavar="E", help="long recipe: E epochs (default: 4x the study's)")
    longer.add_argument("--per-class", type=int, metavar="P", help="long recipe: P training images per class")
    longer.add_argument("--resolution", type=int, metavar="R", help="long recipe: R x R pixels")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--noise-std", type=float, metavar="S",
                   help="seed-noise std of val_acc for the within-noise pick (default: the study's calibrations)")
    p.add_argument("--include-cut", action="store_true",
                   help="also sample and report trials the study's time budget cut before their last epoch")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan, check, measure (storing each result), then print the report."""
    import json

    from explorer.core.errors import UserError
    from explorer.results import fidelity as fd
    from explorer.store import attrs, mask_url, open_storage, read_study
    from explorer.study.config import resolve_target
    from explorer.study.configcheck import check_overrides

    if args.sample < 0:
        raise UserError(f"--sample={args.sample}: give a number of trials >= 0")
    check_overrides(epochs=args.epochs, per_class=args.per_class)
    if args.resolution is not None and not 8 <= args.resolution <= 1024:
        raise UserError(f"--resolution={args.resolution}: give a size in pixels between 8 and 1024")
    name, url, objectives = resolve_target(args.study, args.storage)
    storage = open_storage(url)
    rec = read_study(storage, name, url=url, default_objectives=objectives or attrs.DEFAULT_OBJECTIVES)
    recipe = fd.long_recipe(rec.config, epochs=args.epochs, per_class=args.per_class, resolution=args.resolution)
    done, todo = fd.plan(rec, recipe, args.sample, include_cut=args.include_cut)
    if todo:
        data, device = _load(args, rec, recipe)
        print(f"fidelity {name} ({mask_url(url)}): {recipe.change} ({recipe.factor:g}x the cost); "
              f"{len(done)} measured, {len(todo)} to train ({', '.join(f'#{t.number}' for t in todo)}) on "
              f"{len(data.train.y):,} images, {device}", file=sys.stderr)
        fd.run_fidelity(storage, rec, recipe, todo, data, device=device,
                        log=lambda line: print(line, file=sys.stderr))
        rec = read_study(storage, name, url=url, default_objectives=rec.objectives)
    rep = fd.report(rec, recipe.key, noise_std=args.noise_std, include_cut=args.include_cut)
    print(json.dumps(rep, allow_nan=True) if args.json else fd.format_report(rep))
    return 0


def _load(args: argparse.Namespace, rec, recipe):
    """(data, device) for the long recipe (explorer.results.fidelity.load_data)."""
    from explorer.core.runtime import check_device
    from explorer.core.util import print_notes
    from explorer.results import fidelity as fd

    device = check_device(args.device)
    data = fd.load_data(rec, recipe, args.data)
    print_notes(data.notes)
    return data, device

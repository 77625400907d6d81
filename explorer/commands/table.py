"""`explorer table STUDY.yaml`: train every network of a study's space, and write the table."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `table` subcommand."""
    p = sub.add_parser("table", help="train every distinct network of a study's space (a tabular benchmark)",
                       description="Train every distinct network of the study file's space with its recipe "
                                   "(the bench stage, a grid study), a sample with a longer recipe and a sample "
                                   "with a second seed, then write one compressed CSV row per network and "
                                   "stage with zero-cost scores (docs/space_table.md). Resumable: run the same "
                                   "command again after Ctrl-C or a crash.")
    p.add_argument("study", help="a study file (YAML) whose space is finite, e.g. studies/quickstart-table.yaml")
    p.add_argument("--out", default=None, help="the table file (default tables/<study name>.csv.gz)")
    p.add_argument("--storage", help="storage URL or path of the stages' studies (default: the file's, else "
                                     "runs/<name>.journal)")
    p.add_argument("--data", help="dataset: a path or name (default: EXPLORER_DATA, the file's data.source, "
                                  "else ../shared/datasets/cifar10-jpeg.tar.gz)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--jobs", metavar="N|auto", help="trial processes (auto: one per core on CPU)")
    p.add_argument("--stages", default="bench,long,seed",
                   help="which stages to run before writing (default bench,long,seed; '' writes what is stored)")
    p.add_argument("--long-factor", type=int, default=4, help="the long recipe's epochs as a multiple (default 4)")
    p.add_argument("--long-sample", type=int, default=200, help="networks trained with the long recipe (200)")
    p.add_argument("--seed-sample", type=int, default=100, help="networks trained with a second seed (100)")
    p.add_argument("--no-proxies", action="store_true", help="leave the zero-cost scores out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the stages, then write the table; 130 after Ctrl-C."""
    import sys

    from explorer.core.errors import UserError
    from explorer.store import default_storage_url, mask_url
    from explorer.study.config import load_config
    from explorer.study.jobs import parse_jobs
    from explorer.tabular.build import STAGES, Plan, build
    from explorer.tabular.write import write

    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise UserError(f"--stages {args.stages}: unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    config = load_config(args.study)
    if config.sampler.name != "grid":
        raise UserError(f"{args.study}: a table needs `sampler: grid` (every point of a finite space once)")
    url = args.storage or config.storage or default_storage_url(config.name)
    plan = Plan(args.long_factor, args.long_sample, args.seed_sample)
    jobs = parse_jobs(args.jobs) if args.jobs is not None else None
    done = build(config, plan, url=url, jobs=jobs, data_path=args.data, device=args.device, stages=stages)
    if any(s.interrupted for s in done.values()):
        print(f"interrupted: rerun `explorer table {args.study}` to resume", file=sys.stderr)
        return 130
    out = args.out or f"tables/{config.name.removesuffix('-table')}.csv.gz"
    meta = write(config, plan, url=url, out=out, data_path=args.data, proxies=not args.no_proxies)
    counts = ", ".join(f"{n} {s}" for s, n in meta["counts"].items())
    print(f"{out}: {meta['rows']} rows ({counts}), {meta['bytes'] / 1e3:.0f} kB; studies in {mask_url(url)}")
    return 0

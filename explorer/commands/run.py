"""`explorer run STUDY.yaml`: create or resume a study and run its trials."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run` subcommand."""
    from explorer.commands import DATA_HELP, DEVICE_HELP

    p = sub.add_parser("run", help="run (or resume) the study described by a study file",
                       description="Create the study or resume it (same name, same storage) and "
                                   "run trials: sample, check budgets, train, record. Ctrl-C stops "
                                   "cleanly; running the same command again resumes.")
    p.add_argument("study", help="a study file (YAML), e.g. studies/quickstart.yaml")
    p.add_argument("--n-trials", type=int, help="finished trials wanted in total (earlier runs count)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--storage", help="storage URL or path (default: the file's, else runs/<name>.journal)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--retry-cut", action="store_true",
                   help="first queue again every trial the time budget (trainer.time_budget_s) cut; "
                        "each retry takes its cut trial's place in n_trials")
    p.add_argument("--jobs", metavar="N|auto",
                   help="trial processes on this machine sharing the study (default: the file's jobs, "
                        "else 1; auto: one per core on CPU, docs/scaling.md)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per trial process (default: the file's trainer.threads, else 1); "
                        "part of the study's trainer settings, since it changes results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, run, print where the results are; 130 after Ctrl-C."""
    from dataclasses import replace

    from explorer.core.errors import UserError
    from explorer.store import mask_url, password_note, runnable_url
    from explorer.study.config import load_config
    from explorer.study.configcheck import check_overrides
    from explorer.study.jobs import parse_jobs
    from explorer.study.loop import CUT_STATE, run_study

    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials={args.n_trials}: give an integer >= 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout={args.timeout}: give a number of seconds > 0")
    check_overrides(threads=args.threads)
    jobs = parse_jobs(args.jobs) if args.jobs is not None else None
    config = load_config(args.study, n_trials=args.n_trials, timeout_s=args.timeout)
    if args.threads is not None:
        config = replace(config, trainer=replace(config.trainer, threads=args.threads))
    summary = run_study(config, storage_url=args.storage, n_trials=args.n_trials,
                        timeout_s=args.timeout, data_path=args.data, device=args.device,
                        progress=not args.no_progress, retry_cut=args.retry_cut, jobs=jobs)
    url = mask_url(summary.storage_url)
    print(f"{config.name}: ran {summary.ran} trials in {summary.seconds:.0f}s: {summary.counts_text()}; "
          f"storage {url}")
    cut = summary.states.get(CUT_STATE, 0)
    if cut:
        budget = config.trainer.time_budget_s
        limit = f"={budget:g} s" if budget is not None else ""
        again = f"explorer run {args.study}" + (f" --storage {shlex.quote(url)}" if args.storage else "")
        print(f"explorer: warning: {cut} trial(s) stopped at trainer.time_budget_s{limit} before their last "
              f"epoch: kept off the front; raise time_budget_s if this machine is slow or busy, then "
              f"`{again} --retry-cut`", file=sys.stderr)
    if summary.exhausted:
        print(f"{config.name}: stopped early: {summary.exhausted}")
    if summary.gave_up:
        raise UserError(f"{config.name}: {summary.gave_up}")
    if summary.interrupted:
        print(f"interrupted: the running trial was marked FAIL and queued again; rerun "
              f"`explorer run {args.study}` to resume", file=sys.stderr)
        return 130
    # with --storage the study file names another storage: point the hints at this one; a password is
    # left out of them (a masked *** could not be pasted) and named in a note instead
    hint = shlex.quote(runnable_url(summary.storage_url))
    target = f"{config.name} --storage {hint}" if args.storage else args.study
    print(f"next: explorer status {target}   |   explorer dashboard --storage {hint}   |   "
          f"explorer export {target} --pareto --out exports/{config.name}{password_note(summary.storage_url)}")
    return 0

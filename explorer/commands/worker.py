"""`explorer worker STUDY --storage URL`: one more process, on any machine, working on a study.

The study's config is read from the storage (study user attr `config`); only the data path
and the device are local. Start as many workers as you like, on as many machines as can
reach the storage; each stops when the study has its planned number of finished trials
(exactly N across all workers: explorer.store.claim explains how).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `worker` subcommand."""
    from explorer.commands import DATA_HELP, DEVICE_HELP

    p = sub.add_parser("worker", help="join an existing study and run its trials (any machine)",
                       description="Join a study made by `explorer run` and run trials until it has "
                                   "its planned number of finished trials. The config comes from the "
                                   "storage; only --data and --device are local. See docs/scaling.md.")
    p.add_argument("study", help="the study name (as in the study file)")
    p.add_argument("--storage", help="storage URL, e.g. postgresql://USER:PASSWORD@HOST/DB "
                                     "(default: runs/<study>.journal, for workers on this machine)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads for this worker's trials (default: the study's trainer.threads); "
                        "recorded with each trial, since it changes results")
    p.add_argument("--n-trials", type=int, help="finished trials wanted in the whole study "
                                                "(default: the study's n_trials)")
    p.add_argument("--heartbeat-interval", type=int, default=None, metavar="S",
                   help="database storages: seconds between a trial's heartbeats (default 30)")
    p.add_argument("--grace-period", type=int, default=None, metavar="S",
                   help="database storages: a RUNNING trial silent this long is failed and "
                        "retried (default 120)")
    p.add_argument("--poll", type=float, default=2.0, metavar="S",
                   help="while every trial is taken, check again every S seconds (default 2)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # started by `run --jobs`
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the storage (fast), join the study, load the data, work; 130 after Ctrl-C."""
    from explorer import store
    from explorer.study.loop import join_worker, run_joined
    from explorer.study.objective import format_outcome, outcome

    _check_args(args)
    # a child of `run --jobs` gets its storage from the environment (a password stays out of
    # `ps`) and prints nothing but errors: the parent reports every trial from the storage
    child_env = os.environ.get("EXPLORER_JOBS_STORAGE") if args.child else None
    given = args.storage or child_env or store.default_storage_url(args.study)
    say = (lambda *a, **k: None) if args.child else print
    joined = join_worker(_checked_url(given), args.study, data_path=args.data, device=args.device,
                         n_trials=args.n_trials, threads=args.threads,
                         heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    study, target = joined.study, joined.target
    who = f"{socket.gethostname()}:{os.getpid()}"
    say(f"worker {who} joined {joined.config.name} ({store.mask_url(given)}) on {joined.runner.device}: "
        f"{_count_text(study, target)}; each trial's sampler seeded from study seed "
        f"{joined.config.sampler.seed} and its number", flush=True)
    summary = run_joined(joined, poll_s=args.poll, on_trial=lambda s, t: say(format_outcome(outcome(t)), flush=True))
    if summary.interrupted:
        say(f"worker {who} interrupted: its running trial was failed and queued again", file=sys.stderr)
        return 130
    if summary.exhausted:
        print(f"worker {who} stopping: {summary.exhausted}", file=sys.stderr if args.child else sys.stdout,
              flush=True)
    say(f"worker {who} done: ran {summary.ran} trials; {_count_text(study, target)}", flush=True)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    from explorer.core.errors import UserError
    from explorer.study.configcheck import check_overrides

    check_overrides(threads=args.threads)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials={args.n_trials}: give an integer >= 1")
    for name in ("heartbeat_interval", "grace_period"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')}={v}: give a whole number of seconds >= 1")
    if args.poll <= 0:
        raise UserError(f"--poll={args.poll}: give a number of seconds > 0")


def _checked_url(url: str) -> str:
    """PostgreSQL: validated and probed (seconds, no torch import), mapped to psycopg."""
    from explorer.store import pg, storage_kind

    return pg.probe(url) if storage_kind(url) == "postgresql" else url


def _count_text(study, target: int | None) -> str:
    from explorer.store import claim_counts

    done, running = claim_counts(study)
    return f"{done}/{target if target is not None else 'unlimited'} trials done, {running} running"

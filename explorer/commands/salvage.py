"""`explorer salvage JOURNAL COPY`: a copy of a damaged journal file without its unreadable lines."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `salvage` subcommand."""
    p = sub.add_parser("salvage", help="copy a journal file without its unreadable lines",
                       description="Write COPY: the journal file JOURNAL without the complete lines that "
                                   "are not journal entries (and without an unfinished last line); "
                                   "JOURNAL is not changed. `run` and `worker` refuse a journal with such "
                                   "a line; run them on the copy (--storage COPY).")
    p.add_argument("journal", help="the damaged journal file, e.g. runs/quickstart.journal")
    p.add_argument("copy", help="a new file for the repaired copy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the copy, then read it back with Optuna and say what it holds."""
    import os

    from explorer.core.errors import UserError
    from explorer.store import list_studies, open_storage
    from explorer.store.journal import salvage

    if not os.path.isfile(args.journal):
        raise UserError(f"{args.journal} is not a file: give the journal file to salvage")
    try:
        dropped = salvage(args.journal, args.copy)
    except OSError as exc:
        raise UserError(f"cannot salvage {args.journal} into {args.copy}: {exc.strerror or exc}") from None
    studies = list_studies(open_storage(args.copy, read_only=True))
    held = ", ".join(f"{s['name']} ({s['n_trials']} trials)" for s in studies) or "no study"
    left_out = ", ".join(map(str, dropped)) or "none"
    print(f"wrote {args.copy}: left out line(s) {left_out} of {args.journal}; it holds {held}")
    print(f"next: explorer status STUDY --storage {args.copy}   |   explorer run STUDY.yaml --storage {args.copy}")
    return 0

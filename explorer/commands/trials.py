"""`explorer trials STUDY --format csv|json`: the whole trial table."""

from __future__ import annotations

import argparse
import sys

from explorer.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `trials` subcommand."""
    p = sub.add_parser("trials", help="the trial table of a study as CSV or JSON",
                       description="One row per trial: number, state, times, knobs (knob_*), costs "
                                   "(params, MACs, size), metrics, spec_id, duplicate_of, infeasible, "
                                   "curve, spec.")
    p.add_argument("study", help="a study file or a study name")
    p.add_argument("--storage", help="storage URL or path")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the table."""
    from explorer.core.util import print_notes
    from explorer.store import journal_notes, open_storage, read_trials
    from explorer.store.table import to_csv_text, to_json_text
    from explorer.study.config import resolve_target

    name, url, _ = resolve_target(args.study, args.storage)
    storage = open_storage(url, skip_bad_lines=True)
    df = read_trials(storage, name)
    print_notes(journal_notes(storage))
    text = to_csv_text(df) if args.format == "csv" else to_json_text(df) + "\n"
    if args.output:
        try:
            with open(args.output, "w") as f:
                f.write(text)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror or exc}; give --output a "
                            "file path in an existing, writable folder") from None
    else:
        sys.stdout.write(text)
    return 0

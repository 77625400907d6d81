"""The `explorer` command: subcommands live in explorer/commands/, one module each.

Each module there defines `register(subparsers)` and sets `func` on its parser; this file
discovers them, so adding a command touches no shared file. User errors (UserError) print
one line and exit with code 2; heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from explorer import commands
from explorer.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(prog="explorer", description=(
        "Explore the SqueezeNet design space: describe networks, run studies, browse and "
        "export the accuracy-vs-size Pareto front."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"explorer.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    # Before torch loads (commands import it): an idle OpenMP thread sleeps instead of
    # spinning against other processes (measured: 2 threads beside a busy process trained
    # at 139 img/s spinning, 343 passive; explorer.runtime).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"explorer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted", file=sys.stderr)
        return 130

"""The `explorer` command: one module per subcommand in this package, each with `register(subparsers)`.

Each module defines `register(subparsers)` and sets `func` on its parser; `build_parser`
discovers them, so adding a command touches no shared file. User errors (UserError) print
one line and exit with code 2; heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from explorer.core.errors import UserError
from explorer.training.datasource import ARCHIVE_NAME, ENV

# Help texts several commands share (kept here so `explorer --help` imports no torch or storage code).
# --trial of train and calibrate (explorer.results.selection reads the selector):
SELECTOR_HELP = ("best (its most accurate front trial), smallest (the smallest front trial within seed noise "
                 "of the best; needs a calibration) or a trial number N")
DEVICE_HELP = "cpu, cuda, cuda:1, ... (default: cuda when available)"
DATA_HELP = (f"a dataset name or path on this machine (default: {ENV}, the study's data.source if it exists "
             f"here, else ../{ARCHIVE_NAME})")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(prog="explorer", description=(
        "Explore the SqueezeNet design space: describe networks, run studies, browse and "
        "export the accuracy-vs-size Pareto front."))
    parser.add_argument("--version", action=_Version, help="print the versions of explorer, python, torch, "
                                                          "torchvision and optuna, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"explorer.commands.{info.name}").register(sub)
    return parser


def version_line() -> str:
    """'explorer 0.1.0 (python 3.11.7, torch 2.14.1+cpu, torchvision 0.29.1+cpu, optuna 5.1.0)': the
    versions the packages report themselves (torch's says which build: +cpu, +cu130, ...)."""
    import platform

    import optuna
    import torch
    import torchvision

    from explorer import __version__

    return (f"explorer {__version__} (python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, optuna {optuna.__version__})")


class _Version(argparse.Action):
    """--version: the line is built only when asked for (argparse's own action would import torch for
    every command)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    # Before torch loads (commands import it): an idle OpenMP thread sleeps instead of
    # spinning against other processes (measured: 2 threads beside a busy process trained
    # at 139 img/s spinning, 343 passive; explorer.core.runtime).
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

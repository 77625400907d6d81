"""`explorer describe PRESET|FILE`: the per-layer table and totals, optionally fvcore-checked."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from explorer.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `describe` subcommand."""
    p = sub.add_parser("describe", help="per-layer table and costs of a preset or spec file",
                       description="Print the per-layer table (output shape, s1x1/e1x1/e3x3, "
                                   "parameters, MACs) and totals of a preset or a spec file.")
    p.add_argument("target", help="a preset name (squeezenet1_0, squeezenet1_1, "
                                  "squeezenet_cifar) or a YAML/JSON spec or export file")
    p.add_argument("--input-size", type=int, help="override the spec's input size (pixels)")
    p.add_argument("--check", action="store_true",
                   help="build the model and confirm the numbers with fvcore")
    p.set_defaults(func=run)


def resolve_spec(target: str):
    """A preset name or a spec file path -> SqueezeSpec."""
    from explorer.design.presets import PRESETS, preset
    from explorer.design.spec import load_spec

    if target in PRESETS:
        return preset(target)
    if Path(target).exists():
        return load_spec(target)
    raise UserError(f"{target!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file")


def run(args: argparse.Namespace) -> int:
    """Print the table; with --check, exit 1 if fvcore disagrees."""
    from explorer.design.cost import estimate_cost
    from explorer.design.costtable import format_table

    spec = resolve_spec(args.target)
    if args.input_size is not None:
        spec = dataclasses.replace(spec, input_size=args.input_size)
    cost = estimate_cost(spec)
    print(format_table(spec, cost))
    if args.check:
        return check(spec, cost)
    return 0


def _n(x: int) -> str:
    return f"{x:,}"


def check(spec, cost) -> int:
    """Count the built model with fvcore; 0 when every figure agrees, 1 otherwise."""
    import logging

    from explorer.design.cost import fvcore_cost
    from explorer.design.model import build_model

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    macs, params, acts = fvcore_cost(build_model(spec), spec.input_size)
    ok = (macs, params, acts) == (cost.macs, cost.params, cost.activations)
    print(f"\nfvcore check: MACs {_n(macs)}, parameters {_n(params)}, activations {_n(acts)}: "
          + ("agree" if ok else "DISAGREE with the analytic model (a bug: please report it)"))
    return 0 if ok else 1

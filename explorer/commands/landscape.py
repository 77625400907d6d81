"""`explorer landscape STUDY`: the analytic cost of a study's whole space (or a large sample), per knob."""

from __future__ import annotations

import argparse
import json
import math
import sys

BARS = "▁▂▃▄▅▆▇█"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `landscape` subcommand."""
    p = sub.add_parser("landscape", help="what a study's space holds: cost ranges per knob, invalid "
                                         "networks, the share the budgets cut (no training)",
                       description="Cost every network of the study's space analytically (or a uniform "
                                   "random sample when the space is larger than 50,000 networks or "
                                   "continuous), then print per knob value: how many networks, how many "
                                   "are invalid, what share the study's budgets cut away, and the range "
                                   "and distribution of params, MACs and size. STUDY is a study file, or "
                                   "a study name whose stored config is read (with --storage).")
    p.add_argument("study", help="a study file or a study name")
    p.add_argument("--storage", help="storage URL or path (for a study name)")
    p.add_argument("--samples", type=int, default=20_000, metavar="N",
                   help="networks to draw when the space is not costed whole (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.add_argument("--num-classes", type=int, default=10, metavar="N",
                   help="classes of the dataset, which size the classifier (default 10)")
    p.add_argument("--format", choices=("text", "csv", "json"), default="text", help="output format")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Cost the space and print it."""
    from explorer.core.errors import UserError
    from explorer.study import landscape as ls

    if args.samples < 1 or args.num_classes < 2:
        raise UserError("--samples must be >= 1 and --num-classes >= 2")
    land = ls.landscape(study_config(args.study, args.storage), samples=args.samples, seed=args.seed,
                        num_classes=args.num_classes)
    if args.format == "json":
        text = json.dumps(ls.to_json(land), indent=1) + "\n"
    elif args.format == "csv":
        text = ls.table(land).to_csv(index=False)
    else:
        text = report(land) + "\n"
    if args.output:
        from explorer.core.util import write_atomic

        try:
            write_atomic(args.output, text)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror or exc}; give --output a "
                            "file path in an existing, writable folder") from None
    else:
        sys.stdout.write(text)
    return 0


def study_config(study: str, storage: str | None):
    """The study file's config, or the config stored with study `study` in the storage."""
    from pathlib import Path

    from explorer.core.errors import UserError
    from explorer.store import open_storage, stored_config
    from explorer.study.config import StudyConfig, load_config, resolve_target

    if study.endswith((".yaml", ".yml")) or Path(study).is_file():
        return load_config(study)
    name, url, _ = resolve_target(study, storage)
    stored = stored_config(open_storage(url, read_only=True), name)
    if stored is None:
        raise UserError(f"study {name!r} has no explorer config stored; give its study file instead")
    try:
        return StudyConfig.from_dict(stored, source="its stored config")
    except UserError as exc:
        raise UserError(f"study {name!r}: {exc} (not a config explorer wrote); give its study file instead") from None


# --- the text report ---------------------------------------------------------------------------

def report(land) -> str:
    """Header, overall ranges with histograms, then one table per knob."""
    from explorer.study import landscape as ls

    lines = header(land)
    row = ls.overall(land)
    valid = land.points[land.points["valid"]]
    for c in ls.COSTS:
        lines.append(f"  {ls.COST_LABELS[c]:<8} {_n(row[c + '_min']):>7} .. {_n(row[c + '_max']):<7} "
                     f"median {_n(row[c + '_median']):>7}  log histogram {spark(valid[c])}")
    for knob in land.knobs:
        lines += ["", knob_lines(land, knob)]
    return "\n".join(lines)


def header(land) -> list[str]:
    """What was costed, fixed knobs, invalid networks, budget cuts."""
    from explorer.core.util import si
    from explorer.study import landscape as ls

    row = ls.overall(land)
    n = len(land.points)
    how = (f"the whole space of {n:,} networks" if land.whole else
           f"{n:,} random networks of {'an infinite' if land.space_size is None else f'{land.space_size:,}'}"
           f"-network space (seed {land.seed})")
    fixed = " ".join(f"{k}={ls.label(v)}" for k, v in land.fixed.items())
    lines = [f"landscape of {land.study}: {how}, costed analytically in {land.seconds:.1f} s",
             f"  {land.num_classes} classes at {land.input_size}x{land.input_size} px"
             + (f"; fixed: {fixed}" if fixed else ""),
             f"  invalid networks: {row['invalid']:,} ({_pct(row['invalid'] / max(n, 1))})"]
    for k, v in land.budgets.items():
        lines.append(f"  budget {k} <= {si(v)} cuts {_pct(row['cut_' + k])} of the valid networks")
    if len(land.budgets) > 1:
        lines.append(f"  all budgets together cut {_pct(row['cut'])}")
    for k, v in land.not_assessed.items():
        lines.append(f"  budget {k} <= {v:g}: measured per trial before training, not assessed here")
    if not land.budgets and not land.not_assessed:
        lines.append("  no budgets: nothing is cut")
    return lines


def knob_lines(land, knob: str) -> str:
    """One aligned table: the knob's values, counts, cut share, and min / median / max of each cost."""
    from explorer.study import landscape as ls

    t = ls.knob_table(land, knob)
    head = [knob, "networks", "invalid", "cut", *(f"{ls.COST_LABELS[c]} min / median / max" for c in ls.COSTS)]
    body = [[str(r["value"]), f"{r['networks']:,}", f"{r['invalid']:,}", _pct(r["cut"]),
             *(" / ".join(_n(r[f"{c}_{q}"]) for q in ("min", "median", "max")) for c in ls.COSTS)]
            for _, r in t.iterrows()]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*b) for b in body])


def spark(values, bins: int = 16) -> str:
    """A text histogram of log10(values) between their min and max: one bar per bin."""
    import numpy as np

    v = np.log10(np.asarray(values, dtype=float)[np.asarray(values, dtype=float) > 0])
    if v.size == 0:
        return ""
    if v.max() == v.min():
        return BARS[-1]
    counts, _ = np.histogram(v, bins=bins, range=(v.min(), v.max()))
    top = counts.max()
    return "".join(" " if c == 0 else BARS[min(len(BARS) - 1, int(c / top * (len(BARS) - 1) + 0.5))]
                   for c in counts)


def _n(v) -> str:
    from explorer.core.util import si

    if isinstance(v, float) and not math.isfinite(v):
        return "-"
    return si(v, ".3g")


def _pct(v) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, float) and math.isfinite(v) else "-"

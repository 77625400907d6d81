"""`explorer export STUDY (--trial N|best|smallest.. | --pareto | --budget B) --out DIR`: chosen trials -> files."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand."""
    p = sub.add_parser("export", help="write chosen trials as config files (spec + provenance) and a CSV",
                       description="One file per chosen trial (a top-level spec: that `explorer describe`, "
                                   "`explorer train` and explorer.design.spec.load_spec read, plus provenance, "
                                   "metrics and costs with units) and summary.csv. Trials within seed "
                                   "noise of a larger, more accurate one are flagged: |a - b| <= "
                                   "K * sqrt(std_a^2 + std_b^2) (see docs/export.md).")
    p.add_argument("study", help="a study name (with --storage, default runs/<name>.journal) or a study file")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--trial", nargs="+", metavar="SEL",
                      help="these trials: numbers, best (the front's most accurate) or smallest (the "
                           "smallest front trial within seed noise of the most accurate)")
    pick.add_argument("--pareto", action="store_true",
                      help="the Pareto front (max val_acc, min the study's cost objectives)")
    pick.add_argument("--budget", metavar="B", help='the front among trials within a budget, e.g. '
                                                   '"params<=1e6,macs<=5e7" (k/M/G allowed)')
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml", help="file format (default yaml)")
    p.add_argument("--storage", help="storage URL or path")
    p.add_argument("--noise-std", type=float, metavar="S",
                   help="study-level std of val accuracy for trials not calibrated (default: the RMS "
                        "of the study's calibrated stds)")
    p.add_argument("--noise-k", type=float, default=2.0, metavar="K", help="band width in stds (default 2)")
    p.add_argument("--int8", action="store_true",
                   help="also quantize each chosen trial's trained network to int8 and put its figures (val and test "
                        "accuracy beside fp32, file sizes, latency) into its file and summary.csv; a study keeps no "
                        "weights, so this needs the models `explorer train` wrote under --models (needs the [onnx] "
                        "extra)")
    p.add_argument("--models", metavar="DIR",
                   help="with --int8: where to look for `explorer train` output folders, matched to the chosen trials "
                        "by study, trial and spec_id (default: models)")
    p.add_argument("--data", help="with --int8: the dataset for calibration and evaluation (default: as `explorer "
                                  "train` finds it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Select, write the files, print the summary."""
    from explorer.core.errors import UserError
    from explorer.design.budgets import parse_budget
    from explorer.results.exportfile import export_trials
    from explorer.results.selection import assess, choose, load_study, parse_selector, select_trials
    from explorer.study.config import resolve_target

    if args.noise_std is not None and not (math.isfinite(args.noise_std) and args.noise_std >= 0):
        raise UserError(f"--noise-std={args.noise_std}: give a number >= 0")
    if not (math.isfinite(args.noise_k) and args.noise_k > 0):
        raise UserError(f"--noise-k={args.noise_k}: give a number > 0")
    if not args.int8 and (args.models is not None or args.data is not None):
        raise UserError(f"{'--models' if args.models is not None else '--data'} is for --int8: add --int8, or drop it")
    budget = parse_budget(args.budget) if args.budget is not None else None  # "" is an error
    selectors = [parse_selector(t) for t in args.trial or []]
    name, url, _ = resolve_target(args.study, args.storage)
    rec = load_study(name, url)
    numbers = [choose(rec, s, noise_std=args.noise_std, k=args.noise_k).number for s in selectors]
    trials = select_trials(rec, numbers=numbers, pareto=args.pareto, budget=budget)
    chosen = assess(rec, trials, noise_std=args.noise_std, k=args.noise_k)
    how = "trial" if args.trial else ("budget" if budget else "pareto")
    selection = {"how": how, **({"budget": args.budget} if budget else {})}
    int8 = _int8(args, rec, [c.trial for c in chosen]) if args.int8 else None
    rows = export_trials(rec, chosen, Path(args.out), args.format, selection, int8)
    print(table(rows, rec.size_key))
    print(footer(chosen, args.noise_k, Path(args.out)))
    return 0


def _int8(args: argparse.Namespace, rec, trials) -> dict:
    """Quantize the chosen trials' trained models (one line per trial without one); trial -> record."""
    import sys

    from explorer.core.errors import UserError
    from explorer.design.spec import SqueezeSpec, spec_id
    from explorer.results import int8_files
    from explorer.results.exportfile import prepare_out
    from explorer.results.int8 import missing

    if missing():
        raise UserError(f"--int8: {missing()}")
    spec_ids = {t.number: spec_id(SqueezeSpec.from_dict(t.spec)) for t in trials}  # as export files name them
    models = Path(args.models or "models")
    found, notes = int8_files.find_models(models, rec.name, spec_ids, storage=args.storage)
    int8_files.require_models(found, [t.number for t in trials], models, rec.name)
    prepare_out(Path(args.out))  # a bad --out costs no quantization
    for line in notes:
        print(line, file=sys.stderr)
    return int8_files.quantize_models(rec, found, data_cli=args.data,
                                      say=lambda line: print(line, file=sys.stderr))


def table(rows: list[dict], size_key: str) -> str:
    """The summary as an aligned text table (a latency column where any trial has one)."""
    timed = any(r.get("latency_ms") is not None for r in rows)
    quantized = any(r.get("int8_test_acc") is not None for r in rows)
    head = ["trial", "val_acc %", "compared %", "± std %", "params", "MACs", "size MB",
            *(["latency ms"] if timed else []), *(["int8 test %", "int8 drop", "int8 KB"] if quantized else []),
            "within noise of", "file"]
    body = [[f"#{r['trial']}", _pct(r["val_acc"]), _pct(r["acc_used"]) + ("*" if r["acc_mean"] is not None else " "),
             _pct(r["acc_std_used"]), _n(r["params"]),
             _n(r["macs"]), f"{r['size_mb']:.3f}" if r["size_mb"] is not None else "-",
             *([_ms(r.get("latency_ms"))] if timed else []),
             *([_pct(r.get("int8_test_acc")), _pct(r.get("int8_acc_drop")), _kb(r.get("int8_onnx_bytes"))]
               if quantized else []),
             ("#" + str(r["within_noise_of"])) if r["within_noise_of"] is not None else "",
             r["file"] + ("  <- pick" if r["pick"] else "")] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" if i < len(head) - 1 else f"{{:<{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*b) for b in body] + _latency_lines(rows)).rstrip()


def _latency_lines(rows: list[dict]) -> list[str]:
    """The setting the latencies belong to; a warning when the chosen trials' settings differ."""
    settings: dict[str, list] = {}
    for r in rows:
        if r.get("latency_setting"):
            settings.setdefault(r["latency_setting"], []).append(f"#{r['trial']}")
    if len(settings) == 1:
        return [f"latency: median ms per forward pass on {next(iter(settings))}"]
    warn = [f"warning: these latencies were measured on {len(settings)} different settings and do not "
            "compare across them:"] if settings else []
    return warn + [f"  {label}: {', '.join(trials)}" for label, trials in settings.items()]


def footer(chosen, k: float, out: Path) -> str:
    """Where the files went, which std was used, and the suggested pick."""
    lines = [f"wrote {len(chosen)} file(s) and {out / 'summary.csv'}"]
    sources = {c.std_source for c in chosen}
    if sources == {"none"}:
        lines.append("no seed-noise estimate: run `explorer calibrate FILE --seeds 3` on a front "
                     "trial, or pass --noise-std, to flag trials within noise of larger ones")
        return "\n".join(lines)
    pick = next((c for c in chosen if c.pick), None)
    if pick is not None:
        lines.append(f"pick: #{pick.trial.number}, the smallest trial within noise of the most accurate "
                     f"(|a - b| <= {k:g} * sqrt(std_a^2 + std_b^2); * = calibrated mean, else val_acc; "
                     f"stds from: {', '.join(sorted(sources))})")
    return "\n".join(lines)


def _pct(v) -> str:
    return f"{100 * v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _ms(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _kb(v) -> str:
    return f"{v / 1000:.1f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _n(v) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"

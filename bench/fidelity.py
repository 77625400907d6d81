"""How well do the quickstart's short trials rank its networks? `explorer fidelity`'s figures, as a benchmark.

Runs `explorer fidelity` (explorer.results.fidelity) on a study already run, by default the
quickstart in runs/qs.journal:

    python3 -m explorer run studies/quickstart.yaml --storage runs/qs.journal
    python3 bench/fidelity.py [--storage runs/qs.journal] [--study quickstart] [--sample 8]
                              [--epochs E | --per-class P | --resolution R] [--include-cut] [--data PATH]

It retrains (and stores with the study) the trials of the sample not yet measured with the
long recipe (default: 4x the study's epochs, no time budget), then reports for each short
signal (the final val_acc, and the sum of per-epoch training losses of Ru et al. 2021)
Spearman rho and Kendall tau against the long val_acc with paired-bootstrap 95 % intervals
(2,000 resamples, seed 0), the short front's recall and precision of the long front, and
the hypervolume ratio. The baseline, measured on the same trials in the same run, is the
ranking by size alone (log10 parameters): a short trial is worth its cost only where it
ranks better than the parameter count does; `gain` = signal's Spearman - the baseline's.

One thread (torch.set_num_threads(1)): the cores are shared. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    """Measure what is missing, then print the figures; the last line is JSON."""
    import torch

    from explorer.commands import main as cli
    from explorer.results import fidelity as fd
    from explorer.store import open_storage, read_study
    from explorer.training.datasource import default_archive

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storage", default=str(ROOT / "runs" / "qs.journal"))
    p.add_argument("--study", default="quickstart")
    p.add_argument("--sample", type=int, default=8)
    p.add_argument("--epochs", type=int)
    p.add_argument("--per-class", type=int)
    p.add_argument("--resolution", type=int)
    p.add_argument("--include-cut", action="store_true", help="also trials the study's time budget cut")
    p.add_argument("--data", default=str(default_archive()))
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    argv = ["fidelity", args.study, "--storage", args.storage, "--sample", str(args.sample), "--data", args.data]
    for flag in ("epochs", "per_class", "resolution"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    argv += ["--include-cut"] if args.include_cut else []
    if cli(argv) != 0:
        return 2
    rec = read_study(open_storage(args.storage), args.study, url=args.storage)
    recipe = fd.long_recipe(rec.config, epochs=args.epochs, per_class=args.per_class, resolution=args.resolution)
    rep = fd.report(rec, recipe.key, include_cut=args.include_cut)
    base = rep["size_baseline"]["spearman"]
    out = {"study": args.study, "recipe": rep["change"], "n": rep["n"], "cut": rep["cut"],
           "size_baseline_spearman": base,
           "tie_points": rep["tie_points"], "seconds": round(time.perf_counter() - t0, 1)}
    for name, key in (("val_acc", ""), ("train_loss_sum", "train_loss_")):
        s = rep["signals"][name]
        gain = round(s["spearman"] - base, 4) if s["spearman"] is not None and base is not None else None
        out.update({f"{key}spearman": s["spearman"], f"{key}spearman_ci": s["spearman_ci"],
                    f"{key}kendall": s["kendall"], f"{key}kendall_ci": s["kendall_ci"],
                    f"{key}front_recall": s["front_recall"], f"{key}front_precision": s["front_precision"],
                    f"{key}hv_ratio": s["hv_ratio"], f"{key}gain_over_size": gain})
        print(f"{name}: Spearman {s['spearman']} {s['spearman_ci']} vs size alone {base} (gain {gain})")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`explorer status STUDY`: trial counts by state, time spent, the current Pareto front."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `status` subcommand."""
    p = sub.add_parser("status", help="counts by state, time spent and the Pareto front of a study",
                       description="STUDY is a study file (its name and storage are read from it) "
                                   "or a study name (with --storage, default runs/<name>.journal).")
    p.add_argument("study", help="a study file or a study name")
    p.add_argument("--storage", help="storage URL or path")
    p.set_defaults(func=run)


def resolve_target(study: str, storage: str | None) -> tuple[str, str, list[str]]:
    """(study name, storage URL, objectives) from a study file path or a name."""
    from pathlib import Path

    from explorer.config import load_config
    from explorer.storage import default_storage_url

    if study.endswith((".yaml", ".yml")) or Path(study).is_file():
        config = load_config(study)
        return config.name, storage or config.storage or default_storage_url(config.name), list(config.objectives)
    return study, storage or default_storage_url(study), []


def run(args: argparse.Namespace) -> int:
    """Print the status report."""
    from explorer.storage import load_trials, mask_url, open_storage, load_study_record, OBJECTIVES

    name, url, objectives = resolve_target(args.study, args.storage)
    storage = open_storage(url)
    record = load_study_record(storage, name)
    objectives = record.user_attrs.get(OBJECTIVES) or objectives or ["val_acc", "params"]
    df = load_trials(url, name, storage=storage)
    print(report(df, name, mask_url(url), objectives))
    return 0


def report(df, name: str, url: str, objectives: list[str]) -> str:
    """The whole status text for a trial table."""
    lines = [f"study {name}  ({url})"]
    counts = df["state"].value_counts().to_dict() if len(df) else {}
    lines.append("trials: " + (", ".join(f"{counts[s]} {s.lower()}" for s in
                                         ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING") if s in counts)
                               or "none"))
    if len(df):
        extra = [f"{int(df['infeasible'].sum())} over budget (not trained)",
                 f"{int(df['duplicate_of'].notna().sum())} duplicates (reused)"]
        lines.append("        " + ", ".join(extra))
        # a duplicate carries its original's train_seconds but trained nothing itself
        train_s = df.loc[df["duplicate_of"].isna(), "train_seconds"].fillna(0).sum()
        wall_s = df["duration_s"].fillna(0).sum()
        lines.append(f"time: {wall_s / 60:.1f} min in trials ({train_s / 60:.1f} min training)")
    lines.append("")
    lines.append(front_table(df, objectives))
    return "\n".join(lines)


def front_table(df, objectives: list[str]) -> str:
    """The current Pareto front (feasible, trained COMPLETE trials) as a table with units."""
    import numpy as np

    done = df[(df["state"] == "COMPLETE") & (~df["infeasible"]) & df["duplicate_of"].isna()] if len(df) else df
    if not len(done):
        return "Pareto front: no completed trials yet"
    costs = [o for o in objectives if o != "val_acc"] or ["params"]
    from explorer.pareto import front_mask

    mask = front_mask(done["val_acc"].to_numpy(float, na_value=np.nan),
                      done[costs].to_numpy(float, na_value=np.nan))
    front = done[mask].sort_values(costs[0])
    header = ["trial", "val_acc %", "params", "MACs", "size MB", "stem", "base_e", "incr_e",
              "pct_3x3", "sr", "n_fire", "pools", "bypass"]
    rows = [[f"#{r.number}", f"{100 * r.val_acc:.1f}", f"{int(r.params):,}", _si(r.macs),
             f"{r.size_mb:.3f}", str(r.stem), str(r.base_e), str(r.incr_e), f"{r.pct_3x3:g}",
             f"{r.sr:g}", str(r.n_fire), str(r.pools), str(r.bypass)] for r in front.itertuples()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    title = f"Pareto front (max val_acc, min {', '.join(costs)}): {len(front)} of {len(done)} trained trials"
    return "\n".join([title, fmt.format(*header)] + [fmt.format(*row) for row in rows])


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:g}"

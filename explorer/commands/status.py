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


def run(args: argparse.Namespace) -> int:
    """Print the status report."""
    from explorer.core.util import print_notes
    from explorer.store import attrs, journal_notes, mask_url, open_storage, read_study, trial_table
    from explorer.study.config import resolve_target

    name, url, objectives = resolve_target(args.study, args.storage)
    storage = open_storage(url, skip_bad_lines=True)
    rec = read_study(storage, name, url=url, default_objectives=objectives or attrs.DEFAULT_OBJECTIVES)
    print_notes(journal_notes(storage))
    print(report(trial_table(rec), name, mask_url(url), rec.objectives, plain=not rec.explorer))
    return 0


def report(df, name: str, url: str, objectives: list[str], plain: bool = False) -> str:
    """The whole status text for a trial table."""
    from explorer.store import attrs as A
    from explorer.store import counts_text
    from explorer.store.table import outcome_counts, rung_counts, untrainable

    lines = [f"study {name}  ({url})"]
    if not len(df):
        lines.append("trials: none")
    elif plain:  # no explorer attributes: Optuna's states
        lines.append("trials: " + ", ".join(f"{n} {s.lower()}" for s, n in df["state"].value_counts().items()))
    else:  # duplicates, over-budget, cut and rung-stopped trials apart from the networks trained
        lines.append("trials: " + counts_text(outcome_counts(df)))
    if len(df):
        cut = (df["end"] == A.CUT) & df["state"].isin(("COMPLETE", "PRUNED"))
        dead = int((untrainable(df) & (df["state"] == "COMPLETE") & df["duplicate_of"].isna()).sum())
        if dead:
            lines.append(f"        {dead} dead or diverged (could not train; not on the front)")
        rungs = rung_counts(df)
        if rungs:
            lines.append("rungs: " + "; ".join(f"rung {r['rung']} (epoch {r['epoch']}): {r['judged']} networks "
                                               f"judged, {r['went_on']} went on" for r in rungs)
                         + " (a trial stopped at a rung is never on the front)")
        if cut.any():
            retried = set(df.loc[df["retry_reason"] == A.CUT_RETRY, "retry_of"].dropna().astype(int))
            waiting = sorted(int(n) for n in df.loc[cut, "number"] if int(n) not in retried)
            lines.append(f"        {int(cut.sum())} {A.CUT_RETRY} (stopped before their last epoch; not on "
                         f"the front): " + (f"retry {', '.join(f'#{n}' for n in waiting)} with `explorer run "
                                           f"STUDY --retry-cut`" if waiting else "all retried"))
        # a duplicate carries its original's train_seconds but trained nothing itself
        train_s = df.loc[df["duplicate_of"].isna(), "train_seconds"].fillna(0).sum()
        wall_s = df["duration_s"].fillna(0).sum()
        lines.append(f"time: {wall_s / 60:.1f} min in trials ({train_s / 60:.1f} min training)")
    lines.append("")
    lines.append(objective_front_table(df) if plain else front_table(df, objectives))
    return "\n".join(lines)


def objective_front_table(df) -> str:
    """The front of a plain Optuna study over its own objectives and directions (one objective:
    its best trial)."""
    import numpy as np

    from explorer.results.pareto import front_mask
    from explorer.store.table import OBJECTIVE_PREFIX, knob_names, objective_columns

    objectives = objective_columns(df)
    done = df[df["state"] == "COMPLETE"] if len(df) else df
    if not objectives or not len(done):
        return "Pareto front: no completed trials yet"
    cols = list(objectives)
    signs = np.array([1.0 if objectives[c] == "maximize" else -1.0 for c in cols])
    values = done[cols].to_numpy(float, na_value=np.nan) * signs  # every objective now maximised
    mask = front_mask(values[:, 0], -values[:, 1:] if len(cols) > 1 else np.zeros((len(done), 1)))
    front = done[mask].sort_values(cols[-1])
    knobs = knob_names(df)[:8]
    header = ["trial", *(c.removeprefix(OBJECTIVE_PREFIX) for c in cols), *(k.removeprefix("knob_") for k in knobs)]
    rows = [[f"#{r['number']}", *(f"{r[c]:.6g}" for c in cols), *(_knob(r[k]) for k in knobs)]
            for _, r in front.iterrows()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    goal = ", ".join(f"{objectives[c][:3]} {c.removeprefix(OBJECTIVE_PREFIX)}" for c in cols)
    title = f"Pareto front ({goal}): {len(front)} of {len(done)} complete trials"
    note = ("(a plain Optuna study: costs, budgets and the per-layer table need explorer's attributes, "
            "written by `explorer run`)")
    return "\n".join([title, fmt.format(*header)] + [fmt.format(*row) for row in rows] + [note])


def latency_note(rows, compared: bool) -> list[str]:
    """Which setting the rows' latencies were measured on; a warning when they differ."""
    from explorer.store.table import latency_settings

    settings = latency_settings(rows)
    if len(settings) == 1:
        return [f"latency: median ms per forward pass on {next(iter(settings))}"]
    if not settings:
        return []
    lines = [f"warning: these latencies were measured on {len(settings)} different settings and do "
             "not compare across them" + (" (the front above compares them all the same):" if compared else ":")]
    for label, numbers in settings.items():
        shown = ", ".join(f"#{n}" for n in numbers[:8]) + (", ..." if len(numbers) > 8 else "")
        lines.append(f"  {label}: {len(numbers)} trial(s) ({shown})")
    return lines


def front_table(df, objectives: list[str]) -> str:
    """The current Pareto front (feasible, trained COMPLETE trials) as a table with units."""
    import numpy as np

    from explorer.core.util import si
    from explorer.store.table import comparable

    done = df[comparable(df) & (~df["infeasible"])] if len(df) else df
    if not len(done):
        return "Pareto front: no completed trials yet"
    costs = [o for o in objectives if o != "val_acc"] or ["params"]
    from explorer.results.pareto import front_mask

    mask = front_mask(done["val_acc"].to_numpy(float, na_value=np.nan),
                      done[costs].to_numpy(float, na_value=np.nan))
    front = done[mask].sort_values(costs[0])
    knobs = ("stem", "base_e", "incr_e", "pct_3x3", "sr", "n_fire", "pools", "bypass")
    timed = bool(front["latency_ms"].notna().any())
    header = ["trial", "val_acc %", "params", "MACs", "size MB", *(["latency ms"] if timed else []), *knobs]
    rows = [[f"#{r['number']}", f"{100 * r['val_acc']:.1f}", f"{int(r['params']):,}",
             si(r["macs"], ".2f", small="g"), f"{r['size_mb']:.3f}",
             *([f"{r['latency_ms']:.3g}" if r["latency_ms"] == r["latency_ms"] else "-"] if timed else []),
             *(_knob(r.get(f"knob_{k}")) for k in knobs)] for _, r in front.iterrows()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    title = f"Pareto front (max val_acc, min {', '.join(costs)}): {len(front)} of {len(done)} trained trials"
    table = [title, fmt.format(*header)] + [fmt.format(*row) for row in rows]
    return "\n".join(table + latency_note(done, "latency_ms" in costs))


def _knob(v) -> str:
    """A knob value as the study file spells it (16, not the table's 16.0)."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(v)

"""Choosing trials to export: by number, the Pareto front, the front within a budget; the noise rule;
one trial by name (`--trial best | smallest | N` of export, train and calibrate).

Within noise. Two accuracies a and b whose seed-noise standard deviations are s_a and
s_b are tied when |a - b| <= k * sqrt(s_a**2 + s_b**2) (k = 2 by default: about a 95%
band for the difference of two independent normal estimates). The accuracy compared is
the calibrated mean where the trial was calibrated (a better estimate than one short
run), else its stored val_acc; its std is the trial's calibrated std, else the
study-level estimate (`--noise-std`, else the root mean square of the study's calibrated
stds). Without any std nothing is flagged. The front itself is always drawn with val_acc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from explorer.core.errors import UserError
from explorer.core.util import print_notes, si
from explorer.design.budgets import budget_flag
from explorer.store import StudyRecord, TrialRecord, journal_notes, open_storage, read_study
from explorer.store import attrs as A

# --- the noise rule (pure) ---------------------------------------------------------------


def within_noise(acc_a: float, std_a: float, acc_b: float, std_b: float, k: float = 2.0) -> bool:
    """|acc_a - acc_b| <= k * sqrt(std_a**2 + std_b**2); False when any input is not finite."""
    values = (acc_a, std_a, acc_b, std_b)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return False
    return abs(acc_a - acc_b) <= k * math.sqrt(std_a ** 2 + std_b ** 2)


def noise_ties(size: Sequence[float], acc: Sequence[float], std: Sequence[float],
               k: float = 2.0) -> tuple[list[int | None], int | None]:
    """(tied_with, pick) over a set of trials.

    tied_with[i]: index of the most accurate trial that is larger (size) and more
    accurate than i yet within noise of it (None if none); pick: the smallest trial
    within noise of the most accurate one (None without noise estimates).
    """
    n = len(acc)
    tied: list[int | None] = [None] * n
    for i in range(n):
        bigger = [j for j in range(n) if size[j] > size[i] and acc[j] > acc[i]
                  and within_noise(acc[i], std[i], acc[j], std[j], k)]
        tied[i] = max(bigger, key=lambda j: (acc[j], -size[j]), default=None)
    finite = [i for i in range(n) if math.isfinite(acc[i])]
    if not finite:
        return tied, None
    best = max(finite, key=lambda i: (acc[i], -size[i]))
    ties = [i for i in finite if i == best or within_noise(acc[i], std[i], acc[best], std[best], k)]
    pick = min(ties, key=lambda i: (size[i], -acc[i])) if math.isfinite(std[best]) else None
    return tied, pick


def pooled_std(stds: Sequence[float]) -> float:
    """Root mean square of the finite stds (the study-level estimate); NaN if none."""
    good = [s for s in stds if s is not None and math.isfinite(s)]
    return math.sqrt(sum(s * s for s in good) / len(good)) if good else math.nan


# --- choosing --------------------------------------------------------------------------------

def load_study(name: str, url: str) -> StudyRecord:
    """The stored study `name` (trials, config, calibrations); one-line errors for missing things.
    A journal's unreadable lines are skipped, each named in a note on stderr."""
    storage = open_storage(url, skip_bad_lines=True)
    record = read_study(storage, name, url=url)
    print_notes(journal_notes(storage))
    return record


def select_trials(rec: StudyRecord, *, numbers: Sequence[int] | None = None, pareto: bool = False,
                  budget: dict[str, float] | None = None) -> list[TrialRecord]:
    """The chosen trials, sorted by size: by number, the Pareto front, or the front within a budget."""
    from explorer.results.pareto import front_mask

    if numbers:
        return _by_number(rec, numbers)
    done = [t for t in rec.trials if t.trained]
    if not done:
        raise UserError(f"study {rec.name!r} has no completed, feasible trials to choose from "
                        f"({len(rec.trials)} trials stored); run more trials first")
    pool = done
    if budget:
        pool = [t for t in done if all(t.num(k) <= v for k, v in budget.items())]
        if not pool:
            smallest = min(done, key=lambda t: t.num(rec.size_key))
            have = ", ".join(f"{k}={si(smallest.attrs.get(k))}" for k in budget)
            raise UserError(f"no completed trial of {rec.name!r} meets the budget {budget_flag(budget)} "
                            f"(the smallest, #{smallest.number}, has {have}); raise the budget")
    acc = [t.num(A.VAL_ACC) for t in pool]
    costs = [[t.num(c) for c in rec.costs] for t in pool]
    chosen = [t for t, keep in zip(pool, front_mask(acc, costs)) if keep]
    if not chosen:
        raise UserError(f"the Pareto set of {rec.name!r} is empty: no trial has finite "
                        f"val_acc and {', '.join(rec.costs)}")
    return sorted(chosen, key=lambda t: _size_order(t.num(rec.size_key), t.number))


def _by_number(rec: StudyRecord, numbers: Sequence[int]) -> list[TrialRecord]:
    """The trials with these numbers (each once), sorted by size like a front (no size: last)."""
    by = {t.number: t for t in rec.trials}
    for n in numbers:
        if n not in by:
            have = f"0..{max(by)}" if by else "none"
            raise UserError(f"study {rec.name!r} has no trial #{n} (trials: {have})")
        if by[n].spec is None:
            raise UserError(f"trial #{n} of {rec.name!r} has no stored spec (state "
                            f"{by[n].state}); choose a trained trial")
    chosen = [by[n] for n in dict.fromkeys(numbers)]
    return sorted(chosen, key=lambda t: _size_order(t.num(rec.size_key), t.number))


def _size_order(size: float, number: int) -> tuple:
    """A sort key by size, trials without a finite size last (NaN would scramble a sort)."""
    return (0, size, number) if math.isfinite(size) else (1, 0.0, number)


@dataclass
class Chosen:
    """One chosen trial with the figures the summary and the noise flags need."""

    trial: TrialRecord
    acc: float  # calibrated mean if any, else the stored val_acc
    std: float  # calibrated std, else the study-level estimate, else NaN
    std_source: str  # trial, study, cli or none
    size: float
    tied_with: int | None = None  # trial number
    tied_with_best: bool = False
    pick: bool = False
    file: str = ""


def assess(rec: StudyRecord, trials: list[TrialRecord], *, noise_std: float | None = None,
           k: float = 2.0) -> list[Chosen]:
    """Accuracy, std and the within-noise flags of each chosen trial."""
    study_std = noise_std if noise_std is not None else pooled_std([t.num(A.ACC_STD) for t in rec.trials])
    source = "cli" if noise_std is not None else ("study" if math.isfinite(study_std) else "none")
    out = []
    for t in trials:
        own, mean = t.num(A.ACC_STD), t.num(A.ACC_MEAN)
        acc = mean if math.isfinite(mean) else t.num(A.VAL_ACC)
        std, src = (own, "trial") if math.isfinite(own) else (study_std, source)
        out.append(Chosen(t, acc, std, src, t.num(rec.size_key)))
    tied, pick = noise_ties([c.size for c in out], [c.acc for c in out], [c.std for c in out], k)
    # The most accurate chosen trial, over finite accuracies only (as noise_ties does): a NaN
    # compares False both ways, so letting it in would make `best` depend on the --trial order.
    finite = [i for i, c in enumerate(out) if math.isfinite(c.acc)]
    best = max(finite, key=lambda i: (out[i].acc, -_finite_or(out[i].size, math.inf)), default=None)
    for i, c in enumerate(out):
        c.tied_with = out[tied[i]].trial.number if tied[i] is not None else None
        c.tied_with_best = best is not None and within_noise(c.acc, c.std, out[best].acc, out[best].std, k)
        c.pick = i == pick
    return out


def _finite_or(v: float, default: float) -> float:
    return v if math.isfinite(v) else default


# --- one trial by name: --trial best | smallest | N ------------------------------------------

SELECTORS = ("best", "smallest")


def parse_selector(text: str) -> str | int:
    """'best', 'smallest' or a trial number; UserError (one line) for anything else."""
    t = str(text).strip().lower()
    if t in SELECTORS:
        return t
    if t.isdigit():
        return int(t)
    raise UserError(f"--trial {text!r}: give best, smallest or a trial number such as 12")


def choose(rec: StudyRecord, selector: str | int, *, noise_std: float | None = None,
           k: float = 2.0) -> TrialRecord:
    """The one trial a selector names: a number, the front's most accurate trial (`best`: highest
    val_acc, the smaller on a tie) or the smallest front trial within noise of it (`smallest`)."""
    if isinstance(selector, int):
        return _by_number(rec, [selector])[0]
    front = select_trials(rec, pareto=True)  # trained trials only: never a cut or pruned one
    if selector == "best":
        return max(front, key=lambda t: (t.num(A.VAL_ACC), -_finite_or(t.num(rec.size_key), math.inf)))
    pick = next((c for c in assess(rec, front, noise_std=noise_std, k=k) if c.pick), None)
    if pick is None:
        raise UserError(f"--trial smallest: study {rec.name!r} has no seed-noise estimate to tell which "
                        "trials are within noise of the best; run `explorer calibrate STUDY --trial best "
                        "--seeds 3` first")
    return pick.trial

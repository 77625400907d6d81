"""The rung gate: where a trial of a multi-fidelity study is judged, from TrialRunner's on_epoch_end.

At a rung epoch (explorer.study.schedule) the gate takes the study's claim lock, reads the
rung's results (explorer.store.rungs: one per network), applies the rule, and records the
trial's entry before releasing the lock: decisions are serialised across every worker of
the study, so no network is judged twice at a rung, and a retry (or the same network
trained twice at once) follows the decision already made for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from explorer import store
from explorer.store import attrs as A
from explorer.store.rungs import append_entry, entries, results_at, rung_lock
from explorer.study.config import StudyConfig
from explorer.study.schedule import decide


@dataclass(frozen=True)
class Stop:
    """A trial stopped at a rung: which one, after which epoch, and why."""

    rung: int
    epoch: int
    reason: str


def keep_text(keep: float) -> str:
    """1/3 for 0.333..., 0.25 -> 1/4: the share as the study file most likely wrote it."""
    f = Fraction(keep).limit_denominator(100)
    return f"{f.numerator}/{f.denominator}" if abs(float(f) - keep) < 1e-9 else f"{keep:g}"


class RungGate:
    """Judges a trial at each rung of the study's schedule; `judge` returns a Stop or None (go on)."""

    def __init__(self, study, config: StudyConfig) -> None:
        assert config.schedule is not None
        self.study, self.schedule = study, config.schedule
        self.costs = list(config.objectives[1:])
        self.storage = store.study_storage(study)

    def judge(self, trial, epoch: int, acc: float) -> Stop | None:
        """Record this trial's result at `epoch` if it is a rung, and say whether it stops there."""
        rung = self.schedule.rung_at(epoch)
        if rung is None:
            return None
        tid = store.trial_id(trial)
        with rung_lock(self.study):
            trials = self.study.get_trials(deepcopy=False)
            me = self.storage.get_trial(tid)
            entry, why = self._entry(me, trials, epoch, rung, acc)
            append_entry(self.storage, tid, entries(me), entry)
        return None if entry["go_on"] else Stop(rung, epoch, why)

    def _entry(self, me, trials, epoch: int, rung: int, acc: float) -> tuple[dict, str]:
        """The trial's entry at this rung and, when it stops, the reason."""
        sid = me.user_attrs[A.SPEC_ID]
        results = results_at(trials, epoch)
        first = results.get(sid)
        head = {"epoch": epoch, "rung": rung, "val_acc": float(acc)}
        if first is not None and first.number != me.number:  # this network was judged here already
            why = (f"stopped at rung {rung} (epoch {epoch}) as trial #{first.number} of the same network was "
                   "(each network is judged once per rung)")
            return {**head, "go_on": first.go_on, "follows": first.number}, why
        peers = [r for s, r in results.items() if s != sid]
        costs = np.array([[_num(r.attrs, c) for c in self.costs] for r in peers]
                         + [[_num(me.user_attrs, c) for c in self.costs]], dtype=float).reshape(len(peers) + 1, -1)
        d = decide([r.val_acc for r in peers] + [acc], costs, [r.number for r in peers] + [me.number],
                   len(peers), self.schedule.keep)
        by = " and ".join(["val_acc", *self.costs])
        why = (f"stopped at rung {rung} (epoch {epoch}): val_acc {acc:.4f} places {d.place} of {d.peers} "
               f"networks at this rung (Pareto rank {d.rank + 1} by {by}); the top {d.kept} "
               f"(keep {keep_text(self.schedule.keep)}) and the rung's first front go on")
        return {**head, "go_on": d.go_on, "rank": d.rank, "place": d.place, "peers": d.peers,
                "kept": d.kept}, why


def _num(attrs: dict, key: str) -> float:
    v = attrs.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

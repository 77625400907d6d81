"""A size-aware early-stopping rule for multi-objective studies (pure, no Optuna).

Optuna cannot prune multi-objective studies (Trial.report raises there; optuna#3450).
But a trial's size is known before it trains, so a trial can be judged against its
peers: after each epoch, compare its validation accuracy with finished trials whose
size is within `size_factor` of its own, at the same epoch, and stop it when it falls
below the `quantile` of theirs. Comparing within a size band, not against everyone,
keeps small networks (which learn slower and end lower) from being pruned for being
small: they are the low end of the front, not hopeless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Peer:
    """A finished trial: its size and its validation accuracy after each epoch."""

    size: float
    curve: tuple[float, ...]


@dataclass(frozen=True)
class SizeAwareRule:
    """Stop after `warmup_epochs` if below the `quantile` of >= `min_trials` similar-size peers."""

    warmup_epochs: int = 1
    min_trials: int = 4
    quantile: float = 0.5
    size_factor: float = 2.0
    size_by: str = "params"

    def peers_at(self, size: float, epoch: int, peers: Sequence[Peer]) -> list[float]:
        """Accuracies at `epoch` (0-based) of peers whose size is within the factor of `size`."""
        lo, hi = size / self.size_factor, size * self.size_factor
        return [p.curve[epoch] for p in peers if lo <= p.size <= hi and len(p.curve) > epoch]

    def check(self, size: float, epoch: int, acc: float, peers: Sequence[Peer],
              last_epoch: int | None = None) -> str | None:
        """The reason to stop now, or None to go on. `epoch` is 0-based."""
        if epoch + 1 <= self.warmup_epochs or epoch == last_epoch:
            return None  # stopping after the last epoch would save nothing
        accs = self.peers_at(size, epoch, peers)
        if len(accs) < self.min_trials:
            return None
        bar = quantile(accs, self.quantile)
        if acc >= bar:
            return None
        return (f"val_acc {acc:.4f} after epoch {epoch + 1} is below the {self.quantile:g} quantile "
                f"{bar:.4f} of {len(accs)} finished trials within {self.size_factor:g}x its "
                f"{self.size_by} ({size:.4g})")


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    i = int(pos)
    if i + 1 >= len(xs):
        return xs[-1]
    return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)

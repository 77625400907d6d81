"""The search space of a study: the only code that calls `trial.suggest_*`.

A `Space` turns the study's knobs into Optuna suggestions (or into a grid, or into
plain random draws for checking budgets before a run) and the chosen values into a
`SqueezeSpec`. Pool placements are categorical and travel through Optuna as text
("0,3,7"; "none" for no pool), because Optuna choices must be scalars.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from explorer.core.errors import SpecError
from explorer.design.spec import SqueezeSpec, expand
from explorer.study.config import StudyConfig
from explorer.study.configspace import Knob

DEAD_CHOICE_LIMIT = 4096  # combinations tried per choice (each a few microseconds)


def encode_pools(pools: tuple[int, ...]) -> str:
    """(0, 3, 7) -> '0,3,7'; () -> 'none'."""
    return ",".join(str(p) for p in pools) if pools else "none"


def decode_pools(text: str) -> tuple[int, ...]:
    """'0,3,7' -> (0, 3, 7); 'none' -> ()."""
    return () if text == "none" else tuple(int(p) for p in text.split(","))


def _clean(v: Any) -> Any:
    # Optuna's stepped floats come back as 0.30000000000000004; the spec rounds from the
    # decimal spelling, so keep the spelling the user meant.
    return round(v, 10) if isinstance(v, float) else v


def _encode(knob: Knob, value: Any) -> Any:
    return encode_pools(value) if knob.name == "pools" else value


def _decode(knob: Knob, value: Any) -> Any:
    return decode_pools(value) if knob.name == "pools" else _clean(value)


@dataclass(frozen=True)
class Space:
    """The knobs of one study plus the dataset's classes and resolution."""

    knobs: tuple[Knob, ...]
    num_classes: int
    input_size: int

    @classmethod
    def from_config(cls, config: StudyConfig, num_classes: int = 10) -> "Space":
        """The space of `config` at its data resolution."""
        return cls(config.space, num_classes, config.data.resolution)

    @property
    def searched(self) -> tuple[Knob, ...]:
        """Knobs that vary (ranges and choices), in file order."""
        return tuple(k for k in self.knobs if k.kind != "fixed")

    def suggest(self, trial) -> dict[str, Any]:
        """Ask the trial for every varying knob; returns decoded values by knob name."""
        values = {}
        for k in self.searched:
            if k.kind == "choices":
                raw = trial.suggest_categorical(k.name, [_encode(k, c) for c in k.choices])
            elif k.is_int:
                raw = trial.suggest_int(k.name, k.low, k.high, step=k.step or 1, log=k.log)
            else:
                raw = trial.suggest_float(k.name, k.low, k.high, step=k.step, log=k.log)
            values[k.name] = _decode(k, raw)
        return values

    def spec(self, values: dict[str, Any]) -> SqueezeSpec:
        """The spec for chosen values (fixed knobs and the dataset fill the rest); may raise SpecError."""
        fields = {k.name: k.fixed for k in self.knobs if k.kind == "fixed"}
        fields.update(values)
        fields.update(num_classes=self.num_classes, input_size=self.input_size)
        return SqueezeSpec(**fields)

    def params_of(self, values: dict[str, Any]) -> dict[str, Any]:
        """Knob values as Optuna stores them (pools encoded), e.g. for enqueue_trial."""
        by_name = {k.name: k for k in self.knobs}
        return {n: _encode(by_name[n], v) for n, v in values.items()}

    def grid(self) -> dict[str, list]:
        """Every varying knob's finite list of values, as GridSampler wants them."""
        return {k.name: [_encode(k, v) for v in _values(k)] for k in self.searched}

    def grid_size(self) -> int:
        """Number of grid points (product of the value counts)."""
        return math.prod(len(v) for v in self.grid().values())

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid point as decoded values."""
        names = [k.name for k in self.searched]
        lists = [_values(k) for k in self.searched]
        return [dict(zip(names, combo)) for combo in itertools.product(*lists)]

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniform random draw (no Optuna), for checking budgets before a run."""
        return {k.name: _draw(k, rng) for k in self.searched}

    def dead_choices(self, limit: int = DEAD_CHOICE_LIMIT) -> list[tuple[str, Any, str]]:
        """(knob, choice, why) for each choice no combination of the other knobs makes a valid
        network (a pool position beyond every n_fire allowed, an sr too small for every base_e).
        The others are tried at their choices and range ends, where the spec's constraints are
        loosest; a knob whose others have more than `limit` such combinations is not judged."""
        dead = []
        for k in self.searched:
            others = [o for o in self.searched if o is not k]
            options = [_ends(o) for o in others]
            if k.kind != "choices" or math.prod(len(v) for v in options) > limit:
                continue
            for choice in k.choices:
                why = self._first_error({k.name: choice}, [o.name for o in others], options)
                if why:
                    dead.append((k.name, choice, why))
        return dead

    def _first_error(self, fixed: dict[str, Any], names: list[str], options: list[list]) -> str:
        """'' when some combination of `options` with `fixed` is a valid network; else the error of
        the last one tried (the others at their last choices and high ends: the loosest, mostly)."""
        last = ""
        for combo in itertools.product(*options):
            try:
                expand(self.spec({**dict(zip(names, combo)), **fixed}))
                return ""
            except SpecError as exc:
                last = str(exc)
        return last

    def corners(self) -> list[dict[str, Any]]:
        """The all-low and all-high corners (first / last choice for categorical knobs)."""
        lo = {k.name: (k.choices[0] if k.kind == "choices" else k.low) for k in self.searched}
        hi = {k.name: (k.choices[-1] if k.kind == "choices" else k.high) for k in self.searched}
        return [lo, hi]


def _ends(k: Knob) -> list[Any]:
    """A knob's choices, or its range's two ends."""
    return list(k.choices) if k.kind == "choices" else list(dict.fromkeys([k.low, k.high]))


def _values(k: Knob) -> list[Any]:
    """The finite values of a knob (choices, or a stepped range)."""
    if k.kind == "choices":
        return list(k.choices)
    step = k.step or 1
    n = int(math.floor((k.high - k.low) / step + 1e-9))
    return [_clean(k.low + i * step) for i in range(n + 1)]


def _draw(k: Knob, rng: random.Random) -> Any:
    if k.kind == "choices":
        return rng.choice(k.choices)
    if k.log:
        v = math.exp(rng.uniform(math.log(k.low), math.log(k.high)))
        return min(max(round(v), k.low), k.high) if k.is_int else v
    if k.step is not None or k.is_int:
        return rng.choice(_values(k))
    return rng.uniform(k.low, k.high)

"""One design point of the SqueezeNet family: a frozen spec, its expansion and identity.

This module imports no torch: a spec is validated, expanded and hashed without a
framework, so a stored spec alone can rebuild any network.

Rounding rule (the paper gives none): widths are computed exactly from the ratios as
written in decimal (``0.35`` is 7/20, not the nearest binary float) and rounded half
up to an integer:

    e_i      = base_e + incr_e * floor(i / freq)
    e_i,3x3  = round_half_up(e_i * pct_3x3)
    e_i,1x1  = e_i - e_i,3x3
    s_i,1x1  = round_half_up(e_i * sr)

A squeeze width that rounds to 0 is an error. A zero-width expand branch (pct_3x3 = 0
or 1) is simply absent from the built network.

Pool placement (design principle 3): ``pools`` lists how many Fire modules come before
each 3x3/2 ceil-mode max-pool; 0 means right after the stem. v1.0 is (0, 3, 7): after
conv1, fire4 and fire8; v1.1 is (0, 2, 4): after conv1, fire3 and fire5.

The classifier head (two knobs; the defaults are torchvision's, so the presets load its
weights and keep their spec_ids): torchvision ends with dropout -> conv10 -> ReLU ->
global average pool (``head_bn=False, head_relu=True``). That ReLU dies in short trials:
the features entering conv10 are non-negative with a large shared mean (each simple
bypass adds another ReLU output onto the sum), one SGD step moves every image's class
scores together, all of them go below 0 within a few steps, and no gradient reaches any
layer again. ``head_bn=True`` normalises the features before conv10 (BatchNorm, then
dropout) and ``head_relu=False`` leaves the logits linear, so gradient always flows.
Generated spaces (the study files, the squeezenet_cifar preset) use both; measured in
docs/trainability.md and bench/dead_networks.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from explorer.core import yamlio
from explorer.core.errors import SpecError, UserError

# name -> (kernel, stride, padding, default width); the paper's two stems and CIFAR's.
STEMS: dict[str, tuple[int, int, int, int]] = {
    "v1_0": (7, 2, 0, 96),
    "v1_1": (3, 2, 0, 64),
    "cifar": (3, 1, 1, 64),
}
BYPASSES = ("none", "simple", "complex")
# The classifier head as torchvision builds it (the spec's defaults); see the module docstring.
TORCHVISION_HEAD = {"head_bn": False, "head_relu": True}
POOL_KERNEL, POOL_STRIDE = 3, 2
MAX_FIRE = 64


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric spec field: [low, high], either end open, high None = unbounded."""

    kind: str  # "int" or "float"
    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: str = ""  # what null means, where null is allowed

    def contains(self, v: Any) -> bool:
        """True when `v` has the right type and lies in the range (null: where allowed)."""
        if v is None:
            return bool(self.null)
        if self.kind == "int" and not _is_int(v):
            return False
        if self.kind == "float" and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and math.isfinite(v)):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def text(self) -> str:
        """How the allowed values read in a message: 'an integer >= 1', '(0, 1]', ..."""
        if self.kind == "int":
            what = (f"an integer >= {self.low}" if self.high is None
                    else f"an integer in [{self.low}, {self.high}]")
        else:
            what = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return f"null ({self.null}) or {what}" if self.null else what


# The one statement of each numeric field's range: specs are checked against it here, and
# study files (explorer.study.config) derive their knob limits from it.
RANGES: dict[str, Range] = {
    "base_e": Range("int", 1), "incr_e": Range("int", 0), "freq": Range("int", 1),
    "pct_3x3": Range("float", 0.0, 1.0), "sr": Range("float", 0.0, 1.0, low_open=True),
    "n_fire": Range("int", 1, MAX_FIRE), "stem_width": Range("int", 1, null="the stem's default"),
    "dropout": Range("float", 0.0, 1.0, high_open=True),
    "num_classes": Range("int", 1), "input_size": Range("int", 1),
}


class FireWidths(NamedTuple):
    """The widths of one expanded Fire module and its shortcut."""

    name: str
    in_ch: int
    s1x1: int
    e1x1: int
    e3x3: int
    shortcut: str  # "none", "identity" or "conv"

    @property
    def out_ch(self) -> int:
        """Channels after the expand concat."""
        return self.e1x1 + self.e3x3


@dataclass(frozen=True)
class Expanded:
    """A spec with every width resolved: the network itself, free of metaparameters."""

    stem: str
    stem_kernel: int
    stem_stride: int
    stem_padding: int
    stem_width: int
    fires: tuple[FireWidths, ...]
    pools: tuple[int, ...]
    batchnorm: bool
    dropout: float
    num_classes: int
    input_size: int
    head_bn: bool = False
    head_relu: bool = True

    def canonical(self) -> dict[str, Any]:
        """A plain description used for hashing; torchvision's head is left out (ids predate it)."""
        d = dataclasses.asdict(self)
        for name, torchvision_value in TORCHVISION_HEAD.items():
            if d[name] == torchvision_value:
                del d[name]
        return d


@dataclass(frozen=True)
class SqueezeSpec:
    """One SqueezeNet design point, named as in the paper (defaults: SqueezeNet v1.0)."""

    base_e: int = 128
    incr_e: int = 128
    freq: int = 2
    pct_3x3: float = 0.5
    sr: float = 0.125
    n_fire: int = 8
    stem: str = "v1_0"
    stem_width: int | None = None
    pools: tuple[int, ...] = (0, 3, 7)
    bypass: str = "none"
    batchnorm: bool = False
    dropout: float = 0.5
    num_classes: int = 1000
    input_size: int = 224
    head_bn: bool = False  # BatchNorm on the features entering conv10 (generated spaces: True)
    head_relu: bool = True  # ReLU after conv10, as torchvision (generated spaces: False)

    def __post_init__(self) -> None:
        _normalise(self)
        _validate_fields(self)
        object.__setattr__(self, "_expanded", _expand(self))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (pools as a list), ready for YAML or JSON."""
        d = dataclasses.asdict(self)
        d["pools"] = list(self.pools)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SqueezeSpec":
        """Build from a mapping; unknown keys are an error naming the key."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec field {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self) -> str:
        """Canonical JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SqueezeSpec":
        """Parse JSON text into a spec."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        """YAML text, fields in declaration order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str) -> "SqueezeSpec":
        """Parse YAML text (safely) into a spec."""
        try:
            data = yamlio.plain_dicts(yamlio.load(text))
        except yaml.YAMLError as exc:
            raise SpecError(f"spec is not valid YAML: {_one_line(exc)}") from None
        except UserError as exc:  # an alias, deep nesting, a key given twice
            raise SpecError(f"spec: {exc}") from None
        return cls.from_dict(data)


_INT_FIELDS = tuple(n for n, r in RANGES.items() if r.kind == "int" and not r.null)
_FLOAT_FIELDS = tuple(n for n, r in RANGES.items() if r.kind == "float")


def _normalise(spec: SqueezeSpec) -> None:
    """Coerce harmless spellings: ints for floats, any sequence of pools to a sorted tuple."""
    for name in _FLOAT_FIELDS:
        value = getattr(spec, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(spec, name, float(value))
    pools = spec.pools
    if isinstance(pools, (list, tuple)):
        if not all(_is_int(p) for p in pools):
            raise SpecError(f"pools={list(pools)!r}: every entry must be an integer in [0, n_fire]")
        if len(set(pools)) != len(pools):
            raise SpecError(f"pools={list(pools)!r}: a position may appear only once")
        object.__setattr__(spec, "pools", tuple(sorted(pools)))
    else:
        raise SpecError(f"pools={pools!r}: must be a list of integers in [0, n_fire]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, field: str, value: Any, allowed: str) -> None:
    if not ok:
        raise SpecError(f"{field}={value!r} is out of range: allowed {allowed}")


def _validate_fields(spec: SqueezeSpec) -> None:
    """Type and range checks, each naming the field, the value and what is allowed."""
    for name in _INT_FIELDS:
        value = getattr(spec, name)
        _check(_is_int(value), name, value, "an integer")
    for name in _FLOAT_FIELDS:
        value = getattr(spec, name)
        _check(isinstance(value, float) and math.isfinite(value), name, value, "a number")
    for name, allowed in RANGES.items():
        value = getattr(spec, name)
        _check(allowed.contains(value), name, value, allowed.text())
    _check(spec.stem in STEMS, "stem", spec.stem, "one of " + ", ".join(STEMS))
    _check(spec.bypass in BYPASSES, "bypass", spec.bypass, "one of " + ", ".join(BYPASSES))
    for name in ("batchnorm", *TORCHVISION_HEAD):
        _check(isinstance(getattr(spec, name), bool), name, getattr(spec, name), "true or false")
    for p in spec.pools:
        _check(0 <= p <= spec.n_fire, "pools", list(spec.pools), f"integers in [0, n_fire={spec.n_fire}]")


@lru_cache(maxsize=65536)
def _ratio(value: float) -> tuple[int, int]:
    # The decimal the user wrote, not the binary float: 0.35 * 10 must round to 4.
    exact = Fraction(repr(value))
    return exact.numerator, exact.denominator


def round_half_up(n: int, ratio: float) -> int:
    """n * ratio rounded half up, computed exactly from ratio's decimal spelling."""
    num, den = _ratio(ratio)
    return (2 * n * num + den) // (2 * den)  # floor(n * num / den + 1/2) in integers


def fire_expand_width(spec: SqueezeSpec, i: int) -> int:
    """e_i = base_e + incr_e * floor(i / freq), i counting Fire modules from 0."""
    return spec.base_e + spec.incr_e * (i // spec.freq)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution (floor mode), as torch computes it."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int) -> int:
    """Output side of torchvision's 3x3/2 ceil-mode max-pool, as torch computes it."""
    out = -((-(size - POOL_KERNEL)) // POOL_STRIDE) + 1  # ceil division
    if (out - 1) * POOL_STRIDE >= size:  # the last window must start inside the input
        out -= 1
    return out


def _expand(spec: SqueezeSpec) -> Expanded:
    kernel, stride, padding, default_width = STEMS[spec.stem]
    width = spec.stem_width if spec.stem_width is not None else default_width
    size = conv_out(spec.input_size, kernel, stride, padding)
    if size < 1:
        raise SpecError(f"input_size={spec.input_size} is too small for the {spec.stem} stem "
                        f"(kernel {kernel}, stride {stride}): allowed >= {kernel - 2 * padding}")
    size = _pool_if(spec, 0, size, "the stem")
    fires, in_ch = [], width
    for i in range(spec.n_fire):
        e = fire_expand_width(spec, i)
        e3 = round_half_up(e, spec.pct_3x3)
        s = round_half_up(e, spec.sr)
        if s < 1:
            raise SpecError(f"sr={spec.sr} gives fire{i + 2} a squeeze width of 0 "
                            f"(e_{i}={e}): allowed sr >= {1 / (2 * e):.4g} for this base_e")
        shortcut = _shortcut(spec.bypass, in_ch, e)
        fires.append(FireWidths(f"fire{i + 2}", in_ch, s, e - e3, e3, shortcut))
        in_ch = e
        size = _pool_if(spec, i + 1, size, f"fire{i + 2}")
    return Expanded(spec.stem, kernel, stride, padding, width, tuple(fires), spec.pools,
                    spec.batchnorm, spec.dropout, spec.num_classes, spec.input_size,
                    spec.head_bn, spec.head_relu)


def _pool_if(spec: SqueezeSpec, position: int, size: int, where: str) -> int:
    if position not in spec.pools:
        return size
    out = pool_out(size)
    if out < 1:
        raise SpecError(f"pools={list(spec.pools)!r}: the max-pool after {where} shrinks a "
                        f"{size}x{size} map below 1x1 at input_size={spec.input_size}; "
                        "allowed: fewer or later pools, or a larger input_size")
    return out


def _shortcut(bypass: str, in_ch: int, out_ch: int) -> str:
    """Paper section 6: identity where channels match; complex adds 1x1 convs elsewhere."""
    if bypass == "none":
        return "none"
    if in_ch == out_ch:
        return "identity"
    return "conv" if bypass == "complex" else "none"


def expand(spec: SqueezeSpec) -> Expanded:
    """Every Fire module's squeeze / expand1x1 / expand3x3 widths by the paper's formulas."""
    return spec._expanded  # computed (and so validated) when the spec was made


def spec_id(spec: SqueezeSpec) -> str:
    """A stable hash of the expanded network: metaparameters that round alike share it."""
    return _hash_expanded(expand(spec))


@lru_cache(maxsize=65536)
def _hash_expanded(expanded: Expanded) -> str:
    text = json.dumps(expanded.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(path: str | Path) -> SqueezeSpec:
    """Read a spec from a YAML or JSON file: a bare spec, or an export with a `spec` key."""
    path = Path(path)
    try:
        text = yamlio.read_text(path, "spec file")
    except UserError as exc:
        raise SpecError(str(exc)) from None
    try:
        data = yamlio.load_json(text) if path.suffix == ".json" else yamlio.plain_dicts(yamlio.load(text))
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{_one_line(exc)}") from None
    except UserError as exc:  # an alias, deep nesting, a key given twice
        raise SpecError(f"{path}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]
    try:
        return SqueezeSpec.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())

"""explorer: design-space exploration for compact CNNs of the SqueezeNet family.

Public API (later modules build on these names): `SqueezeSpec`, `preset`, `build_model`,
`estimate_cost`, `load_spec`, `expand`, `spec_id`. Torch is imported only when
`build_model` is first used, so spec and cost work stay light.
"""

from explorer.core.errors import SpecError, UserError
from explorer.design.cost import Cost, estimate_cost
from explorer.design.presets import PRESETS, preset
from explorer.design.spec import SqueezeSpec, expand, load_spec, spec_id

__version__ = "0.1.0"
__all__ = ["Cost", "PRESETS", "SpecError", "SqueezeSpec", "UserError", "build_model",
           "estimate_cost", "expand", "load_spec", "preset", "spec_id"]


def build_model(spec):
    """The torch.nn.Module for `spec` (see explorer.design.model.build_model)."""
    from explorer.design.model import build_model as _build

    return _build(spec)

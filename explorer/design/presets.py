"""Named design points: torchvision's two SqueezeNets and a CIFAR default."""

from __future__ import annotations

from explorer.core.errors import SpecError
from explorer.design.spec import SqueezeSpec

PRESETS: dict[str, SqueezeSpec] = {
    # torchvision.models.squeezenet1_0: conv1 96x7x7/2, pools after conv1, fire4, fire8.
    "squeezenet1_0": SqueezeSpec(stem="v1_0", pools=(0, 3, 7)),
    # torchvision.models.squeezenet1_1: conv1 64x3x3/2, pools after conv1, fire3, fire5.
    "squeezenet1_1": SqueezeSpec(stem="v1_1", pools=(0, 2, 4)),
    # 32x32 inputs: a 3x3/1 stem keeps the full map, two late pools (32 -> 16 -> 8),
    # BatchNorm so that short trials train stably, and the generated spaces' head (BatchNorm
    # before conv10, no ReLU after it): the centre point of the paper sweeps. With
    # torchvision's head it ended 2-epoch quickstart-recipe runs at chance (0.11-0.13 at
    # 8 px over 3 seeds; docs/trainability.md). That network is this spec with
    # head_bn=False, head_relu=True (spec_id 38b5fdf2641931a8).
    "squeezenet_cifar": SqueezeSpec(stem="cifar", stem_width=64, pools=(3, 7), batchnorm=True,
                                    dropout=0.2, num_classes=10, input_size=32,
                                    head_bn=True, head_relu=False),
}


def preset(name: str) -> SqueezeSpec:
    """The named preset spec."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}") from None

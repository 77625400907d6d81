"""The Fire module and build_model(spec): torchvision's SqueezeNet layout, generalised.

Module names follow torchvision (`features` / `classifier`; Fire modules with `squeeze`,
`expand1x1`, `expand3x3`), so torchvision's pretrained state_dicts load into the presets
unchanged and per-layer tables read like the paper's Table 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init

from explorer.design.spec import POOL_KERNEL, POOL_STRIDE, Expanded, FireWidths, SqueezeSpec, expand


def _conv_block(cin: int, cout: int, kernel: int, stride: int, padding: int,
                batchnorm: bool) -> tuple[nn.Conv2d, nn.Module]:
    """A convolution (no bias when BatchNorm follows) and its BatchNorm or Identity."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not batchnorm)
    return conv, (nn.BatchNorm2d(cout) if batchnorm else nn.Identity())


class Fire(nn.Module):
    """squeeze 1x1 -> ReLU -> [expand 1x1, expand 3x3] -> ReLU -> concat (+ shortcut)."""

    def __init__(self, w: FireWidths, batchnorm: bool = False) -> None:
        super().__init__()
        self.inplanes = w.in_ch
        self.squeeze, self.squeeze_bn = _conv_block(w.in_ch, w.s1x1, 1, 1, 0, batchnorm)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = self.expand1x1_bn = self.expand3x3 = self.expand3x3_bn = None
        if w.e1x1:
            self.expand1x1, self.expand1x1_bn = _conv_block(w.s1x1, w.e1x1, 1, 1, 0, batchnorm)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        if w.e3x3:
            self.expand3x3, self.expand3x3_bn = _conv_block(w.s1x1, w.e3x3, 3, 1, 1, batchnorm)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.shortcut = None
        if w.shortcut == "identity":
            self.shortcut = nn.Identity()
        elif w.shortcut == "conv":
            conv, bn = _conv_block(w.in_ch, w.out_ch, 1, 1, 0, batchnorm)
            self.shortcut = nn.Sequential(conv, bn) if batchnorm else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Fire computation; the bypass adds after the concat, as in the paper."""
        s = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        branches = []
        if self.expand1x1 is not None:
            branches.append(self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(s))))
        if self.expand3x3 is not None:
            branches.append(self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(s))))
        out = torch.cat(branches, 1) if len(branches) > 1 else branches[0]
        return out if self.shortcut is None else out + self.shortcut(x)


class SqueezeNet(nn.Module):
    """A generated SqueezeNet; `spec` is kept so that checkpoints can rebuild it."""

    def __init__(self, spec: SqueezeSpec) -> None:
        super().__init__()
        self.spec = spec
        net = expand(spec)
        self.num_classes = net.num_classes
        conv1, bn1 = _conv_block(3, net.stem_width, net.stem_kernel, net.stem_stride,
                                 net.stem_padding, net.batchnorm)
        layers: list[nn.Module] = [conv1] + ([bn1] if net.batchnorm else []) + [nn.ReLU(inplace=True)]
        layers += _pool_if(0, net.pools)
        for i, widths in enumerate(net.fires):
            layers.append(Fire(widths, net.batchnorm))
            layers += _pool_if(i + 1, net.pools)
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(net.fires[-1].out_ch, net.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(*_head(net.fires[-1].out_ch, final_conv, net))
        _init_like_torchvision(self, final_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes)."""
        return torch.flatten(self.classifier(self.features(x)), 1)


def _head(channels: int, final_conv: nn.Conv2d, net: Expanded) -> list[nn.Module]:
    """[BatchNorm] -> dropout -> conv10 -> [ReLU] -> global average pool; torchvision: no BatchNorm, ReLU."""
    # BatchNorm before dropout: dropout ahead of BN would shift its statistics between
    # training and evaluation.
    head: list[nn.Module] = [nn.BatchNorm2d(channels)] if net.head_bn else []
    head += [nn.Dropout(p=net.dropout), final_conv]
    head += [nn.ReLU(inplace=True)] if net.head_relu else []
    return head + [nn.AdaptiveAvgPool2d((1, 1))]


def _pool_if(position: int, pools: tuple[int, ...]) -> list[nn.Module]:
    if position in pools:
        return [nn.MaxPool2d(kernel_size=POOL_KERNEL, stride=POOL_STRIDE, ceil_mode=True)]
    return []


def _init_like_torchvision(model: nn.Module, final_conv: nn.Conv2d) -> None:
    """Kaiming-uniform convs, N(0, 0.01) final conv, zero biases, as torchvision does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m is final_conv:
                init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                init.constant_(m.bias, 0)


def build_model(spec: SqueezeSpec) -> SqueezeNet:
    """The network a spec describes, initialised as torchvision initialises SqueezeNet."""
    return SqueezeNet(spec)


def seeded_model(spec: SqueezeSpec, seed: int) -> SqueezeNet:
    """build_model(spec) with its initial weights drawn from `seed` (trials and retraining agree)."""
    torch.manual_seed(seed)
    return build_model(spec)

"""Exact analytic cost of a spec: parameters, MACs, activations, size; no model is built.

Conventions (fvcore's, so `macs` equals `FlopCountAnalysis(model.eval(), x).total()`
for a batch of one):
- a convolution costs out_h * out_w * c_out * c_in * k * k multiply-adds (bias ignored);
- BatchNorm in eval mode costs 2 per element of its input (scale and shift), as fvcore's
  `batchnorm_flop_jit` counts it; ReLU, concat and dropout cost nothing; the optional
  BatchNorm before conv10 (`head_bn`) is counted in conv10's row;
- the global average pool costs 1 per input element;
- max-pools and the bypass additions are "unsupported" in fvcore and count as zero in
  `macs`. They are reported apart, as `pool_ops` (comparisons: one per window element
  per output element) and `elementwise_ops` (one per added element), so that the effect
  of pool placement stays visible.
`activations` counts convolution output elements, as fvcore's ActivationCountAnalysis.
Model size is fp32 (4 bytes) or int8 (1 byte) per parameter, in MB (1e6) and MiB (2**20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from explorer.design.spec import POOL_KERNEL, POOL_STRIDE, SqueezeSpec, conv_out, expand, pool_out

BN_MACS_PER_ELEMENT = 2  # fvcore: eval-mode batch_norm with affine weights


class LayerCost(NamedTuple):
    """One row of the per-layer table (the paper's Table 1 layout)."""

    name: str
    kind: str  # conv, maxpool, fire, avgpool
    out_shape: tuple[int, int, int]  # channels, height, width
    kernel: str  # e.g. "7x7/2"; "" for Fire modules
    s1x1: int
    e1x1: int
    e3x3: int
    shortcut: str
    params: int
    macs: int
    activations: int
    pool_ops: int
    elementwise_ops: int


@dataclass(frozen=True)
class Cost:
    """Totals for a whole network at batch size 1, and its per-layer rows."""

    params: int
    macs: int
    activations: int
    pool_ops: int
    elementwise_ops: int
    layers: tuple[LayerCost, ...]

    @property
    def size_mb(self) -> float:
        """fp32 model size in MB (10**6 bytes), as the paper's 4.8MB."""
        return self.params * 4 / 1e6

    @property
    def size_mib(self) -> float:
        """fp32 model size in MiB (2**20 bytes)."""
        return self.params * 4 / 2**20

    @property
    def size_mb_int8(self) -> float:
        """int8 model size in MB."""
        return self.params / 1e6

    @property
    def size_mib_int8(self) -> float:
        """int8 model size in MiB."""
        return self.params / 2**20

    def to_dict(self) -> dict[str, float | int]:
        """The scalar figures, named with their units."""
        return {"params": self.params, "macs": self.macs, "activations": self.activations,
                "pool_ops": self.pool_ops, "elementwise_ops": self.elementwise_ops,
                "size_mb": self.size_mb, "size_mib": self.size_mib,
                "size_mb_int8": self.size_mb_int8, "size_mib_int8": self.size_mib_int8}

    def rows(self) -> list[dict]:
        """The per-layer table as plain dicts (for pandas, JSON, Streamlit)."""
        return [layer._asdict() for layer in self.layers]


def _conv(cin: int, cout: int, k: int, hw: int, bn: bool) -> tuple[int, int, int]:
    """(params, macs, activations) of a conv (+ BatchNorm) producing an hw x hw map."""
    out = cout * hw * hw
    params = cout * cin * k * k + (2 * cout if bn else cout)
    macs = out * cin * k * k + (BN_MACS_PER_ELEMENT * out if bn else 0)
    return params, macs, out


def _maxpool(name: str, ch: int, size: int) -> tuple[LayerCost, int]:
    out = pool_out(size)
    ops = ch * out * out * POOL_KERNEL * POOL_KERNEL
    row = LayerCost(name, "maxpool", (ch, out, out), f"{POOL_KERNEL}x{POOL_KERNEL}/{POOL_STRIDE}",
                    0, 0, 0, "", 0, 0, 0, ops, 0)
    return row, out


def _fire(w, size: int, bn: bool) -> LayerCost:
    """A Fire module: squeeze, both expands and its shortcut at a size x size map."""
    params, macs, acts = _conv(w.in_ch, w.s1x1, 1, size, bn)
    for width, k in ((w.e1x1, 1), (w.e3x3, 3)):
        if width:
            p, m, a = _conv(w.s1x1, width, k, size, bn)
            params, macs, acts = params + p, macs + m, acts + a
    if w.shortcut == "conv":
        p, m, a = _conv(w.in_ch, w.out_ch, 1, size, bn)
        params, macs, acts = params + p, macs + m, acts + a
    adds = w.out_ch * size * size if w.shortcut != "none" else 0
    return LayerCost(w.name, "fire", (w.out_ch, size, size), "", w.s1x1, w.e1x1, w.e3x3,
                     w.shortcut, params, macs, acts, 0, adds)


def estimate_cost(spec: SqueezeSpec) -> Cost:
    """Parameters, MACs, activations and per-layer rows, computed from the spec alone."""
    net = expand(spec)
    bn = net.batchnorm
    size = conv_out(net.input_size, net.stem_kernel, net.stem_stride, net.stem_padding)
    p, m, a = _conv(3, net.stem_width, net.stem_kernel, size, bn)
    kernel = f"{net.stem_kernel}x{net.stem_kernel}/{net.stem_stride}"
    rows = [LayerCost("conv1", "conv", (net.stem_width, size, size), kernel, 0, 0, 0, "", p, m, a, 0, 0)]
    ch, n_pool = net.stem_width, 0
    for position in range(len(net.fires) + 1):
        if position in net.pools:
            n_pool += 1
            row, size = _maxpool(f"maxpool{n_pool}", ch, size)
            rows.append(row)
        if position < len(net.fires):
            rows.append(_fire(net.fires[position], size, bn))
            ch = net.fires[position].out_ch
    p, m, a = _conv(ch, net.num_classes, 1, size, False)
    if net.head_bn:  # BatchNorm on conv10's input: counted in conv10's row, as conv1's BN is in its
        p, m = p + 2 * ch, m + BN_MACS_PER_ELEMENT * ch * size * size
    rows.append(LayerCost("conv10", "conv", (net.num_classes, size, size), "1x1/1", 0, 0, 0, "", p, m, a, 0, 0))
    # Global average pool: fvcore counts one per input element.
    gap = net.num_classes * size * size
    rows.append(LayerCost("avgpool10", "avgpool", (net.num_classes, 1, 1), f"{size}x{size}/1",
                          0, 0, 0, "", 0, gap, 0, 0, 0))
    return Cost(sum(r.params for r in rows), sum(r.macs for r in rows),
                sum(r.activations for r in rows), sum(r.pool_ops for r in rows),
                sum(r.elementwise_ops for r in rows), tuple(rows))


def fvcore_cost(model, input_size: int) -> tuple[int, int, int]:
    """(macs, params, activations) of a built model as fvcore counts them, batch of one."""
    import warnings

    import torch

    with warnings.catch_warnings():  # fvcore's import uses the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device)
        flops = FlopCountAnalysis(model, x)
        acts = ActivationCountAnalysis(model, x)
        for counter in (flops, acts):
            counter.unsupported_ops_warnings(False)
            counter.uncalled_modules_warnings(False)
        params = sum(p.numel() for p in model.parameters())
        return int(flops.total()), int(params), int(acts.total())
    finally:
        model.train(was_training)

"""Zero-cost scores: a network's promise read from its initial weights and one batch, no training.

Each takes the network as the trial initialises it (`seeded_model(spec, trainer seed)`) and
one seeded batch of training images, normalised as the trainer normalises them:

- `synflow` (Tanaka et al., NeurIPS 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow"; as a NAS score: Abdelfattah et al., ICLR 2021,
  "Zero-Cost Proxies for Lightweight NAS"): sum over weights of |w * dR/dw|, where R is the
  summed output of the network with every weight replaced by its absolute value, on an
  all-ones input, in float64, BatchNorm in eval mode (at initialisation: a near-identity).
- `naswot` (Mellor et al., ICML 2021, "Neural Architecture Search without Training"): log|K|
  where K[i, j] counts the ReLUs on which images i and j agree (both active or both not).
- `grad_norm` (Abdelfattah et al. 2021): sum over weights of the L2 norm of the loss gradient.
- `snip` (Lee et al., ICLR 2019, "SNIP: single-shot network pruning"; as a NAS score:
  Abdelfattah et al. 2021): sum over weights of |w * dL/dw|.

Written here (no maintained library ships them for arbitrary torch modules: the authors'
repositories are research code for NAS-Bench's own model classes); each is a few lines.
Deterministic for a given network, seed and batch on one thread.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 64  # images per score (Mellor et al. and Abdelfattah et al. use 64-128)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The convolution weights (the scores sum over these, as the papers do)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def synflow(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Tanaka et al.'s synaptic flow of the initialised network (see the module docstring)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones((1, *shape[1:]), dtype=torch.float64)).sum().backward()
    return float(sum((w.detach() * w.grad).abs().sum() for w in _weights(net) if w.grad is not None))


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """Mellor et al.'s log-determinant of the ReLU agreement kernel on the batch."""
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module, _inputs, out):
        code = (out.detach().flatten(1) > 0).double()
        k.add_(code @ code.T + (1 - code) @ (1 - code).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    was = model.training
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return float(torch.linalg.slogdet(k)[1])


def gradient_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """grad_norm and snip from one backward pass of the cross-entropy loss on the batch."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    ws = [w for w in _weights(net) if w.grad is not None]
    return {"grad_norm": float(sum(w.grad.norm() for w in ws)),
            "snip": float(sum((w.detach() * w.grad).abs().sum() for w in ws))}


def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Every score of one initialised network on one batch."""
    return {"synflow": synflow(model, tuple(x.shape)), "naswot": naswot(model, x), **gradient_scores(model, x, y)}


def batch(data, seed: int, size: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of training images, normalised as the trainer does (float NCHW)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train.y), generator=g)[:size]
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    x = (data.train.x[idx].float() / 255 - mean) / std
    return x, data.train.y[idx]


def score_rows(config, rows: list[dict[str, Any]], *, data_path: str | None = None, progress: bool = True,
               out=sys.stderr) -> dict[str, Any]:
    """Add the scores to the bench rows in place (each network as its trial initialised it); a summary."""
    from explorer.core.runtime import use_threads
    from explorer.design.model import seeded_model
    from explorer.design.spec import spec_id
    from explorer.study.loop import load_data_for
    from explorer.study.space import Space
    from explorer.training.datasource import default_archive, require, resolve_source

    path = require(resolve_source(data_path, config.data.source, missing=(
        f"no data for the zero-cost scores: pass --data PATH or place the archive at {default_archive()}")))
    data = load_data_for(config, path)
    use_threads(1)
    x, y = batch(data, config.trainer.seed)
    bench = [r for r in rows if r["stage"] == "bench"]
    space = Space.from_config(config, data.num_classes)
    start = time.perf_counter()
    for i, r in enumerate(bench, 1):
        spec = _spec_of(space, r)
        if spec_id(spec) != r["spec_id"]:
            raise ValueError(f"row {r['spec_id']}: its knobs build network {spec_id(spec)}")
        r.update(scores(seeded_model(spec, config.trainer.seed), x, y))
        if progress and (i % 100 == 0 or i == len(bench)):
            left = (time.perf_counter() - start) / i * (len(bench) - i)
            print(f"zero-cost scores: {i}/{len(bench)} networks, about {left:.0f} s left", file=out)
    return {"batch": BATCH, "seed": config.trainer.seed, "names": ["synflow", "naswot", "grad_norm", "snip"],
            "networks": len(bench)}


def _spec_of(space, r: dict[str, Any]):
    """The row's network: the space's fixed knobs and the row's knob values."""
    from explorer.study.space import decode_pools

    values = {k.name: r[k.name] for k in space.searched}
    if "pools" in values:
        values["pools"] = decode_pools(values["pools"])
    return space.spec(values)

"""A fast short-trial trainer: `train(model, data, **settings) -> TrainResult`; no Optuna.

In the style of KellerJordan/cifar10-airbench: the images stay on the device as uint8;
each batch is gathered, randomly cropped (reflect padding) and flipped in one gather of
whole pixels, then normalised on the device, so the step loop does no per-sample Python work.
SGD with Nesterov momentum, linear warm-up then linear decay to 0 per step, label
smoothing, optional EMA of the weights and flip test-time augmentation. A non-finite
loss ends the run as "diverged" (never an exception); a network whose every output is
exactly 0 on the whole validation split after an epoch ends it as "dead" (SqueezeNet's
ReLU after the final convolution can die: no gradient reaches anything any more, so
further epochs cannot help); `time_budget_s` is checked every step;
`on_epoch_end(epoch, metrics)` returning True stops the run ("stopped"); `pause()`, if
given, is called between steps and evaluation batches and returns the seconds it waited
(explorer.latency.quiet: a latency measurement elsewhere on the machine), which are kept out of the
time budget and of train_seconds. Deterministic on CPU for a given seed and thread count
(`threads`), whatever else runs on the machine. Prints nothing.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from explorer.core.runtime import use_threads
from explorer.training.config import TrainSettings

ENDS = ("completed", "time_budget", "diverged", "dead", "stopped")


@dataclass
class TrainResult:
    """What a run measured; `end` is one of ENDS."""

    val_acc: list[float] = field(default_factory=list)  # per evaluation (epoch; last may be partial)
    val_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # mean training loss per epoch run
    train_loss_sum: float = 0.0  # their sum: Ru et al. 2021's training-speed estimate (lower: better)
    final_acc: float = 0.0  # last evaluation; 0.0 when diverged (the weights are not finite)
    best_acc: float = 0.0
    train_seconds: float = 0.0  # optimisation only: excludes evaluation
    images_per_s: float = 0.0  # training images per train second
    end: str = "completed"
    epochs: float = 0.0  # epochs run, fractional when the time budget cut one
    steps: int = 0
    seed: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def train(model: nn.Module, data, *, device: str | torch.device = "cpu",
          on_epoch_end: Callable[[int, dict], bool | None] | None = None,
          progress: Callable[[int, int, float], None] | None = None,
          pause: Callable[[], float] | None = None, **settings: Any) -> TrainResult:
    """Train `model` on `data.train`, evaluating on `data.val` after every epoch.

    `data` needs `train` and `val` (x uint8 (N, 3, H, W), y) plus `mean` and `std`.
    `settings` are fields of explorer.training.config.TrainSettings (epochs, batch_size, lr,
    ..., threads, warmup, crop_pad, ema, ...); one left out has its default there.
    `progress(step, total_steps, loss)` is called every step if given (it forces a sync on
    CUDA). The time budget counts wall time since the start, evaluation included; the last
    evaluation runs after it. On CPU the result depends on `threads`.
    """
    s = TrainSettings(**settings)
    use_threads(s.threads)
    device = torch.device(device)
    torch.manual_seed(s.seed)  # dropout draws from the global generator
    g = torch.Generator(device=device).manual_seed(s.seed)  # shuffles and augmentation
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    net = torch.compile(model) if s.compile else model
    averaged = _EMA(model, s.ema) if s.ema else None
    norm = _Normalise(data.mean, data.std, device)
    x_train = data.train.x.to(device).permute(0, 2, 3, 1).contiguous()  # NHWC: gathers whole pixels
    y_train = data.train.y.to(device)
    x_val, y_val = data.val.x, data.val.y
    n = len(y_train)
    bs = min(s.batch_size, n)
    steps_per_epoch = n // bs  # full batches only: constant shapes, stable BatchNorm
    total_steps = s.epochs * steps_per_epoch
    pad = s.crop_pad if s.crop_pad is not None else max(1, round(4 * x_train.shape[1] / 32))
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=s.momentum > 0,
                          weight_decay=s.weight_decay)
    schedule = _warmup_linear_decay(total_steps, s.warmup)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    check_every = 16 if cuda else 1  # a .item() per step would stall the CUDA queue

    result = TrainResult(seed=s.seed, device=str(device))
    start = time.perf_counter()
    step = 0
    for epoch in range(1, s.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=g)
        bad = torch.zeros((), dtype=torch.bool, device=device)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        first = step
        for i in range(steps_per_epoch):
            if pause is not None:
                waited = pause()
                start, t0 = start + waited, t0 + waited  # a pause is not training time
            idx = perm[i * bs:(i + 1) * bs]
            xb = norm(augment(x_train, pad, s.flip, g, idx), fmt)
            for group in opt.param_groups:
                group["lr"] = s.lr * schedule(step)
            with autocast:
                loss = F.cross_entropy(net(xb), y_train[idx], label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averaged:
                averaged.update()
            step += 1
            bad |= ~torch.isfinite(loss.detach())
            loss_sum += loss.detach().float()
            if progress:
                progress(step, total_steps, loss.item())
            if (step % check_every == 0 or i == steps_per_epoch - 1) and bad.item():
                result.end = "diverged"
                break
            if s.time_budget_s is not None and step < total_steps \
                    and time.perf_counter() - start >= s.time_budget_s:
                result.end = "time_budget"
                break
        if cuda:
            torch.cuda.synchronize()  # the epoch's time must include its queued work
        result.train_seconds += time.perf_counter() - t0
        result.steps = step
        result.epochs = step / steps_per_epoch if steps_per_epoch else 0.0
        if step > first:
            result.train_loss.append(float(loss_sum) / (step - first))
        if result.end == "diverged":
            break
        eval_model = averaged.model if averaged else model
        stats: dict[str, float] = {}
        acc, loss_val = evaluate(eval_model, x_val, y_val, mean=data.mean, std=data.std,
                                 batch_size=s.eval_batch_size, device=device, tta=s.tta,
                                 channels_last=s.channels_last, stats=stats, pause=pause)
        start += stats["paused_s"]
        result.val_acc.append(acc)
        result.val_loss.append(loss_val)
        if result.end == "time_budget":
            break
        if stats.get("max_abs_output") == 0.0:
            result.end = "dead"
            break
        metrics = {"epoch": epoch, "val_acc": acc, "val_loss": loss_val,
                   "train_seconds": result.train_seconds, "steps": step}
        if on_epoch_end and on_epoch_end(epoch, metrics) and epoch < s.epochs:
            result.end = "stopped"
            break
    result.final_acc = result.val_acc[-1] if result.val_acc and result.end != "diverged" else 0.0
    result.best_acc = max(result.val_acc, default=0.0)
    result.train_loss_sum = math.fsum(result.train_loss)
    result.images_per_s = step * bs / result.train_seconds if result.train_seconds else 0.0
    return result


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, mean, std,
             batch_size: int = TrainSettings.eval_batch_size, device: str | torch.device = "cpu",
             tta: bool = TrainSettings.tta, channels_last: bool = TrainSettings.channels_last,
             stats: dict | None = None, pause: Callable[[], float] | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on uint8 images; `tta` averages flips.

    `stats`, if given, receives `max_abs_output`: the largest |logit| seen (0.0: a dead network),
    and `paused_s`: the seconds `pause()` (called between batches, see `train`) waited.
    """
    device = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    was_training = model.training
    model.eval()
    norm = _Normalise(mean, std, device)
    correct, loss_sum = 0, 0.0
    max_abs = torch.zeros((), device=device)
    paused = 0.0
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(0, len(y), batch_size):
            paused += pause() if pause is not None else 0.0
            xb = norm(x[i:i + batch_size].to(device).permute(0, 2, 3, 1), fmt)
            yb = y[i:i + batch_size].to(device)
            logits = model(xb).float()
            if tta:
                logits = (logits + model(xb.flip(3)).float()) / 2
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
            max_abs = torch.maximum(max_abs, logits.abs().max())
    model.train(was_training)
    if stats is not None:
        stats["max_abs_output"] = float(max_abs)
        stats["paused_s"] = paused
    n = max(len(y), 1)
    return correct / n, loss_sum / n


def augment(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator,
            idx: torch.Tensor | None = None) -> torch.Tensor:
    """Images `idx` of `x` (default: all), NHWC uint8, randomly cropped with reflect padding and
    randomly flipped, in one gather of whole pixels.

    Measured on the bench/train_throughput.py batch (128 x 16 x 16 px, one thread, CPU time):
    picking the batch, then indexing (image, row, column), took 750 us; this one index_select of
    3-byte pixel rows, coordinates included, 313 us. The pixels and the generator's draws are
    the same (tests/test_train.py compares them).
    """
    n, h, w, c = x.shape
    dev = x.device
    idx = torch.arange(n, device=dev) if idx is None else idx
    b = len(idx)
    dy = torch.randint(-pad, pad + 1, (b, 1), device=dev, generator=g) if pad else 0
    dx = torch.randint(-pad, pad + 1, (b, 1), device=dev, generator=g) if pad else 0
    rows = _reflect(torch.arange(h, device=dev) + dy, h).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        mirrored = torch.rand(b, 1, device=dev, generator=g) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    cols = _reflect(cols + dx, w)
    pixel = ((idx[:, None] * h + rows) * w)[:, :, None] + cols[:, None, :]  # (b, h, w) into x's pixels
    return x.reshape(n * h * w, c).index_select(0, pixel.view(-1)).view(b, h, w, c)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices mirrored into [0, size) without repeating the edge (as F.pad 'reflect')."""
    i = i.abs()
    return torch.where(i > size - 1, 2 * (size - 1) - i, i)


class _Normalise:
    """NHWC uint8 -> normalised float NCHW in the chosen memory format, on the device."""

    def __init__(self, mean, std, device: torch.device) -> None:
        self.scale = (1 / (255 * torch.tensor(std, device=device))).view(1, 3, 1, 1)
        self.shift = (-torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, 3, 1, 1)

    def __call__(self, x_nhwc: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
        x = x_nhwc.permute(0, 3, 1, 2).float()  # a permuted NHWC tensor is channels_last
        return torch.addcmul(self.shift, x, self.scale).contiguous(memory_format=fmt)


class _EMA:
    """An exponential moving average of a model's weights and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.source, self.decay = model, decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights; copy integer buffers."""
        for avg, cur in zip(self.model.state_dict().values(), self.source.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(cur, 1 - self.decay)
            else:
                avg.copy_(cur)


def _warmup_linear_decay(total_steps: int, warmup: float) -> Callable[[int], float]:
    """A multiplier per step: linear 0 -> 1 over the warm-up, then linear down to 0."""
    warm = max(1, math.ceil(warmup * total_steps)) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor

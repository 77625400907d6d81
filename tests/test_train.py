"""The trainer: augmentation, schedule, evaluation, how runs end, determinism, real data."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explorer import SqueezeSpec, build_model
from explorer.training.config import TrainerConfig
from explorer.training.data import load_data
from explorer.training.datasource import default_archive
from explorer.training.train import ENDS, _Normalise, _reflect, _warmup_linear_decay, augment, evaluate
from explorer.training.train import train as train_with_defaults

# These tests were written for airbench's learning rate and label smoothing, on torch's own threads.
train = functools.partial(train_with_defaults, lr=0.2, label_smoothing=0.1, threads=None)

ARCHIVE = default_archive()


def tiny_spec(size: int = 16) -> SqueezeSpec:
    """A four-Fire SqueezeNet small enough for CPU tests (about 30k parameters)."""
    return SqueezeSpec(base_e=32, incr_e=32, n_fire=4, stem="cifar", stem_width=32, pools=(1, 3),
                       batchnorm=True, dropout=0.0, num_classes=10, input_size=size)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The synthetic source at 16 px, 40 train images per class."""
    return load_data("synthetic", per_class=40, val_per_class=8, resolution=16,
                     cache_dir=tmp_path_factory.mktemp("cache"))


def fresh(seed: int = 0) -> nn.Module:
    """A tiny model initialised from `seed`."""
    torch.manual_seed(seed)
    return build_model(tiny_spec())


def test_reflect_matches_pad_reflect():
    x = torch.arange(6.0).view(1, 1, 6)
    ref = F.pad(x, (3, 3), mode="reflect")[0, 0]
    assert torch.equal(x[0, 0, _reflect(torch.arange(-3, 9), 6)], ref)


def test_augment_is_a_reflect_padded_crop_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8)
    out = augment(x, 2, True, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="reflect")
    flips = 0
    for b in range(len(x)):
        crops = [padded[b, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        got = out[b].permute(2, 0, 1).float()
        plain = any(torch.equal(got, c) for c in crops)
        mirrored = any(torch.equal(got, c.flip(2)) for c in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 10 < flips < 54  # about half the batch is flipped
    assert torch.equal(augment(x, 0, False, g), x)


def _indexed_augment(x, pad, flip, g):
    """The crop and flip as three index tensors over (image, row, column), the trainer's first form."""
    b, h, w, _ = x.shape
    dy = torch.randint(-pad, pad + 1, (b, 1), generator=g)
    dx = torch.randint(-pad, pad + 1, (b, 1), generator=g)
    rows = _reflect(torch.arange(h) + dy, h).expand(b, h)
    cols = torch.arange(w).expand(b, w)
    if flip:
        mirrored = torch.rand(b, 1, generator=g) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    cols = _reflect(cols + dx, w)
    return x[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def test_augment_gathers_the_same_pixels_with_the_same_draws():
    # Studies under way must stay reproducible: picking a batch and cropping it in one gather
    # gives the pixels the three-index form gives, and leaves the generator where it left it.
    x = torch.randint(0, 256, (300, 12, 10, 3), dtype=torch.uint8)
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for pad, flip in ((3, True), (1, False), (2, True)):
        for idx in torch.randperm(300, generator=torch.Generator().manual_seed(pad)).split(64):
            assert torch.equal(augment(x, pad, flip, ga, idx), _indexed_augment(x[idx], pad, flip, gb))
    assert torch.equal(ga.get_state(), gb.get_state())


def test_normalise_by_hand():
    norm = _Normalise((0.5, 0.25, 0.0), (0.5, 0.25, 1.0), torch.device("cpu"))
    x = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    out = norm(x, torch.channels_last)
    assert out.shape == (1, 3, 2, 2) and out.is_contiguous(memory_format=torch.channels_last)
    assert out[0, :, 0, 0].tolist() == pytest.approx([1.0, 3.0, 1.0])  # (1 - m) / s


def test_schedule_by_hand():
    f = _warmup_linear_decay(10, 0.2)  # 2 warm-up steps, then 8 steps down to 0
    assert [f(s) for s in range(10)] == pytest.approx([0.5, 1, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


class Constant(nn.Module):
    """Logits [0, log 3] for every input: p = (1/4, 3/4)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.tensor([0.0, math.log(3)]).expand(len(x), 2) + self.w


def test_evaluate_by_hand():
    x = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([1, 1, 0, 1])
    acc, loss = evaluate(Constant(), x, y, mean=(0, 0, 0), std=(1, 1, 1), batch_size=3, tta=True)
    assert acc == 0.75 and loss == pytest.approx((3 * -math.log(0.75) - math.log(0.25)) / 4)


def test_completed_run_learns_synthetic_data(synthetic):
    seen = []
    r = train(fresh(), synthetic, epochs=3, batch_size=64, lr=0.1,
              on_epoch_end=lambda e, m: seen.append((e, sorted(m))))
    assert r.end == "completed" and len(r.val_acc) == len(r.val_loss) == 3
    assert [e for e, _ in seen] == [1, 2, 3]
    assert {"epoch", "val_acc", "val_loss", "train_seconds"} <= set(seen[0][1])
    assert r.steps == 3 * (400 // 64) and r.epochs == 3
    assert r.images_per_s == pytest.approx(r.steps * 64 / r.train_seconds)
    assert r.final_acc == r.val_acc[-1] > 0.3 and r.best_acc == max(r.val_acc)  # chance is 0.1


def test_cpu_runs_are_deterministic(synthetic):
    kw = dict(epochs=2, batch_size=64, lr=0.1, seed=5)
    a, b = fresh(), fresh()
    ra, rb = train(a, synthetic, **kw), train(b, synthetic, **kw)
    assert ra.val_acc == rb.val_acc and ra.val_loss == rb.val_loss
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    rc = train(fresh(), synthetic, **{**kw, "seed": 6})
    assert rc.val_loss != ra.val_loss


def test_huge_lr_diverges_without_raising(synthetic):
    r = train(fresh(), synthetic, epochs=3, batch_size=64, lr=1e6)
    assert r.end == "diverged" and r.final_acc == 0.0 and r.steps < 3 * (400 // 64)


class NaNAfter(nn.Module):
    """A model whose output turns NaN from its third call on."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.lin(x.mean((2, 3)))
        return out * float("nan") if self.calls >= 3 else out


def test_nan_model_reports_diverged(synthetic):
    r = train(NaNAfter(), synthetic, epochs=2, batch_size=64)
    assert r.end == "diverged" and r.steps == 3 and r.val_acc == []


def test_time_budget_cuts_a_partial_epoch(synthetic):
    r = train(fresh(), synthetic, epochs=50, batch_size=64, time_budget_s=0.0)
    assert r.end == "time_budget" and r.steps == 1 and len(r.val_acc) == 1
    assert r.epochs == pytest.approx(1 / (400 // 64))


def test_on_epoch_end_can_stop(synthetic):
    r = train(fresh(), synthetic, epochs=5, batch_size=64, on_epoch_end=lambda e, m: e == 2)
    assert r.end == "stopped" and len(r.val_acc) == 2 and r.end in ENDS


def test_ema_and_tta_run(synthetic):
    model = fresh()
    r = train(model, synthetic, epochs=1, batch_size=64, ema=0.9, tta=True)
    assert r.end == "completed" and 0.0 <= r.final_acc <= 1.0
    plain = train(fresh(), synthetic, epochs=1, batch_size=64)
    assert r.val_loss != plain.val_loss  # the averaged weights, not the live ones, were scored


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.exists(), reason=f"CIFAR-10 archive not found at {ARCHIVE}")
def test_real_cifar10_learns_well_above_chance(tmp_path):
    d = load_data(ARCHIVE, per_class=200, val_per_class=50, resolution=16, cache_dir=tmp_path)
    r = train(fresh(0), d, epochs=15, batch_size=128, lr=0.2, seed=0)
    # Measured (2,000 images at 16 px, 15 epochs, about 6 s): 0.396, 0.380, 0.348 for seeds
    # 0, 1, 2 (final val acc); chance is 0.10.
    assert r.end == "completed" and r.final_acc > 0.25


def test_dead_squeezenet_stops_after_one_epoch(synthetic):
    # A final-conv bias of -1000 makes every logit ReLU(negative) = 0 for every image: no
    # gradient reaches any weight, so the run ends "dead" after the first evaluation, at chance.
    from explorer.design.model import build_model
    from explorer.design.spec import SqueezeSpec

    spec = SqueezeSpec(stem="cifar", stem_width=8, base_e=8, incr_e=8, n_fire=2, pools=(1,),
                       batchnorm=True, dropout=0.0, num_classes=10, input_size=16)
    model = build_model(spec)
    with torch.no_grad():
        model.classifier[1].bias.fill_(-1000.0)
    r = train(model, synthetic, epochs=4, batch_size=64)
    assert r.end == "dead" and len(r.val_acc) == 1 and r.val_loss[0] == pytest.approx(math.log(10))
    # a live network of the same shape is not called dead
    assert train(build_model(spec), synthetic, epochs=1, batch_size=64).end == "completed"


def test_train_loss_sum_is_the_sum_of_per_epoch_mean_losses(synthetic):
    """With lr 0 the network never changes (no BatchNorm, no dropout, no augmentation), so every
    epoch's mean training loss is the cross-entropy evaluate() measures on the training split."""
    spec = SqueezeSpec(base_e=16, incr_e=16, n_fire=2, stem="cifar", stem_width=16, pools=(1,),
                       batchnorm=False, dropout=0.0, num_classes=10, input_size=16)
    torch.manual_seed(0)
    model = build_model(spec)
    _, want = evaluate(model, synthetic.train.x, synthetic.train.y, mean=synthetic.mean, std=synthetic.std)
    res = train(model, synthetic, epochs=3, batch_size=len(synthetic.train.y) // 4, lr=0.0, momentum=0.0,
                weight_decay=0.0, label_smoothing=0.0, crop_pad=0, flip=False, channels_last=False)
    assert res.train_loss == pytest.approx([want] * 3, rel=1e-4)
    assert res.train_loss_sum == pytest.approx(3 * want, rel=1e-4)
    learnt = train(fresh(), synthetic, epochs=3, batch_size=32, lr=0.05)
    assert len(learnt.train_loss) == 3 and learnt.train_loss[-1] < learnt.train_loss[0]


def test_a_setting_left_out_is_the_study_default(synthetic):
    # 400 training images: TrainerConfig's 3 epochs of batches of 128 are 3 x 3 full batches.
    assert (TrainerConfig().epochs, TrainerConfig().batch_size) == (3, 128)
    r = train_with_defaults(fresh(), synthetic)
    assert r.steps == 9 and len(r.val_acc) == 3 and r.seed == 0
    with pytest.raises(TypeError, match="warm_up"):
        train_with_defaults(fresh(), synthetic, warm_up=0.2)

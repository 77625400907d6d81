"""Trainer throughput, side by side: ours vs the model's own limit vs a naive DataLoader loop.

(a) ours: explorer.training.train.train, images/s over whole epochs (evaluation excluded);
(b) limit: forward + backward + SGD step on normalised batches already in memory;
(c) naive: torchvision-style DataLoader over PIL images with per-sample
    RandomCrop + RandomHorizontalFlip + ToTensor + Normalize;
(d) pipeline: (a)'s batch preparation alone (pick, crop, flip, normalise), no model.
Same model, batch size and images; medians over interleaved repeats. `pipeline_share` is the
part of a step (a) would spend preparing batches if its model ran at (b)'s speed:
limit / (limit + pipeline), in images/s; (a) cannot beat 1 - pipeline_share of (b).
Trials train on one thread (`trainer.threads: 1`): `--threads 1` measures their setting; the
default is torch's own (one per core), where the model's kernels are parallel.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from explorer import SqueezeSpec, build_model, preset
from explorer.training.data import load_data
from explorer.training.datasource import default_archive
from explorer.training.train import _Normalise, augment, train

ARCHIVE = default_archive()


def model_spec(name: str, size: int) -> SqueezeSpec:
    """'tiny' (four Fire modules, ~30k parameters) or a preset, at `size` pixels."""
    if name == "tiny":
        return SqueezeSpec(base_e=32, incr_e=32, n_fire=4, stem="cifar", stem_width=32, pools=(1, 3),
                           batchnorm=True, dropout=0.0, num_classes=10, input_size=size)
    return SqueezeSpec.from_dict({**preset(name).to_dict(), "input_size": size})


# The recipe (b) and (c) train with: its learning rate and label smoothing, on torch's own threads.
RECIPE = dict(lr=0.2, label_smoothing=0.1, threads=None)


def ours(spec, data, bs, device) -> float:
    """Images/s of one epoch of our trainer."""
    torch.manual_seed(0)
    return train(build_model(spec), data, epochs=1, batch_size=bs, device=device, **RECIPE).images_per_s


def limit(spec, data, bs, device) -> float:
    """Images/s of forward+backward+step on batches already normalised on the device."""
    torch.manual_seed(0)
    model = build_model(spec).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    x = ((data.train.x.to(device).float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
    y = data.train.y.to(device)
    steps = len(y) // bs
    cuda = torch.device(device).type == "cuda"
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x[i * bs:(i + 1) * bs]), y[i * bs:(i + 1) * bs], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * bs / (time.perf_counter() - t)


def pipeline(data, bs, device) -> float:
    """Images/s of (a)'s batch preparation alone: an epoch's batches picked, cropped, flipped, normalised."""
    dev = torch.device(device)
    x = data.train.x.to(dev).permute(0, 2, 3, 1).contiguous()  # as the trainer holds them
    norm, g = _Normalise(data.mean, data.std, dev), torch.Generator(device=dev).manual_seed(0)
    steps, pad = len(x) // bs, max(1, round(4 * x.shape[1] / 32))
    _sync(device)
    t = time.perf_counter()
    perm = torch.randperm(len(x), device=dev, generator=g)
    for i in range(steps):
        norm(augment(x, pad, True, g, perm[i * bs:(i + 1) * bs]), torch.channels_last)
    _sync(device)
    return steps * bs / (time.perf_counter() - t)


def naive(spec, data, bs, device, workers: int) -> float:
    """Images/s of a per-sample PIL transform pipeline through a DataLoader."""
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    size = data.resolution
    pad = max(1, round(4 * size / 32))
    tf = T.Compose([T.RandomCrop(size, padding=pad, padding_mode="reflect"), T.RandomHorizontalFlip(),
                    T.ToTensor(), T.Normalize(data.mean, data.std)])
    images = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in data.train.x]
    labels = data.train.y.tolist()
    ds = [(im, lab) for im, lab in zip(images, labels)]
    loader = DataLoader(_Mapped(ds, tf), batch_size=bs, shuffle=True, drop_last=True, num_workers=workers)
    torch.manual_seed(0)
    model = build_model(spec).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    cuda = torch.device(device).type == "cuda"
    n = 0
    _sync(device)
    t = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(yb)
    _sync(device)
    return n / (time.perf_counter() - t)


class _Mapped(torch.utils.data.Dataset):
    """(PIL image, label) pairs with a per-sample transform."""

    def __init__(self, items, tf) -> None:
        self.items, self.tf = items, tf

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        im, lab = self.items[i]
        return self.tf(im), lab


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run(device="cpu", model="tiny", resolution=16, per_class=200, batch_size=128, repeats=3,
        workers=0, data=None, threads=None) -> dict:
    """Measure (a) to (d) with interleaved repeats after one warm-up of each; a dict."""
    if threads:
        torch.set_num_threads(threads)
    source = data or (ARCHIVE if ARCHIVE.exists() else "synthetic")
    d = load_data(source, per_class=per_class, val_per_class=10, resolution=resolution)
    spec = model_spec(model, resolution)
    fns = {"ours": lambda: ours(spec, d, batch_size, device),
           "limit": lambda: limit(spec, d, batch_size, device),
           "naive": lambda: naive(spec, d, batch_size, device, workers),
           "pipeline": lambda: pipeline(d, batch_size, device)}
    runs = {k: [] for k in fns}
    for rep in range(repeats + 1):  # repeat 0 warms up kernels and allocators
        for k, fn in fns.items():
            v = fn()
            if rep:
                runs[k].append(v)
                print(f"repeat {rep} {k:8s} {v:9.1f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"bench": "train_throughput", "device": device, "model": model, "resolution": resolution,
            "train_images": len(d.train.y), "batch_size": batch_size, "repeats": repeats,
            "data": str(source), "naive_workers": workers, "torch_threads": torch.get_num_threads(),
            "ours_img_s": round(med["ours"], 1), "limit_img_s": round(med["limit"], 1),
            "naive_img_s": round(med["naive"], 1), "pipeline_img_s": round(med["pipeline"], 1),
            "pipeline_share": round(med["limit"] / (med["limit"] + med["pipeline"]), 3),
            "ours_vs_limit": round(med["ours"] / med["limit"], 3),
            "ours_vs_naive": round(med["ours"] / med["naive"], 3)}


def main(argv=None) -> dict:
    """Parse options, run, print the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="tiny", help="'tiny' or a preset name, e.g. squeezenet_cifar")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--per-class", type=int, default=300, help="training images per class")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the naive loop")
    p.add_argument("--data", default=None, help="data source (default: the CIFAR-10 archive)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads for every loop (default: torch's own, one per core; trials use 1)")
    a = p.parse_args(argv)
    out = run(a.device, a.model, a.resolution, a.per_class, a.batch_size, a.repeats, a.workers, a.data, a.threads)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

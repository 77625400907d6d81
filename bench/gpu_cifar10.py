"""One command for a GPU: throughput side by side, then squeezenet_cifar on full CIFAR-10.

Goal on one H100: >= 50,000 img/s and >= 88% test accuracy in <= 20 s of training
(10 epochs). Runs on CPU too, slowly: e.g. `--device cpu --epochs 1 --per-class 100`.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput  # noqa: E402  (the sibling benchmark)

from explorer import build_model, preset  # noqa: E402
from explorer.training.data import load_data  # noqa: E402
from explorer.training.train import evaluate, train  # noqa: E402


def main(argv=None) -> dict:
    """Run the throughput benchmark, then train and test; print and return the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default=str(train_throughput.ARCHIVE))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--per-class", type=int, default=None, help="training images per class (default all)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-throughput", action="store_true")
    a = p.parse_args(argv)
    out = {"bench": "gpu_cifar10", "device": a.device,
           "device_name": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"}
    if not a.skip_throughput:
        cuda = a.device.startswith("cuda")
        tp = train_throughput.run(a.device, "squeezenet_cifar", 32, 5000 if cuda else 20,
                                  a.batch_size if cuda else 64, 3 if cuda else 1, data=a.data)
        out.update({f"throughput_{k}": v for k, v in tp.items() if k.endswith(("img_s", "vs_limit", "vs_naive"))})
    t = time.perf_counter()
    d = load_data(a.data, per_class=a.per_class, val_per_class=500 if a.per_class is None else 10)
    out["load_seconds"] = round(time.perf_counter() - t, 2)
    torch.manual_seed(a.seed)
    model = build_model(preset("squeezenet_cifar"))
    r = train(model, d, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device,
              label_smoothing=0.1, threads=None)
    print(f"val acc per epoch: {[round(v, 4) for v in r.val_acc]}")
    test = d.test()
    acc, loss = evaluate(model, test.x, test.y, mean=d.mean, std=d.std, device=a.device)
    out.update({"epochs": a.epochs, "train_images": len(d.train.y), "batch_size": a.batch_size, "lr": a.lr,
                "train_seconds": round(r.train_seconds, 2), "images_per_s": round(r.images_per_s, 1),
                "val_acc": round(r.final_acc, 4), "test_acc": round(acc, 4), "test_loss": round(loss, 4),
                "end": r.end, "goal": ">=50000 img/s, >=0.88 test acc, <=20 s on one H100"})
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""A quickstart-sized trial alone and beside a CPU hog: our thread rule against torch's defaults.

Each measurement is a fresh process training one quickstart-sized network (base_e 32,
6 Fire modules, 16 px, batch 32; the quickstart's data settings, fewer images) for one
epoch, timed around `explorer.training.train.train`:
  ours:    one intra-op thread (`trainer.threads: 1`) and OMP_WAIT_POLICY=PASSIVE, as
           `explorer run` sets them;
  default: what a bare torch process does: one thread per core, OMP_WAIT_POLICY unset.
Each alone and beside a hog (one `while 1: pass` process per core), interleaved, medians
over repeats. Keys: ours_slowdown_under_load (wall time with the hog / without; goal <=
2.0), default_slowdown_under_load, identical_accuracy (ours: every per-epoch accuracy and
loss bit-identical with and without the hog, across all repeats). The machine's load
average is printed with the figures (other users' processes are load we do not control).
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from explorer.training.datasource import default_archive

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = default_archive()


def child(mode: str, source: str, per_class: int, epochs: int) -> dict:
    """One measurement in this (fresh) process; the environment was set by the parent."""
    import torch

    from explorer import SqueezeSpec, build_model
    from explorer.training.data import load_data
    from explorer.training.train import train

    data = load_data(source, per_class=per_class, val_per_class=50, resolution=16, seed=0)
    spec = SqueezeSpec(base_e=32, incr_e=0, n_fire=6, stem="cifar", stem_width=32, pools=(2, 4),
                       batchnorm=True, head_bn=True, head_relu=False, dropout=0.1, num_classes=10, input_size=16)
    torch.manual_seed(0)
    model = build_model(spec)
    start = time.perf_counter()
    res = train(model, data, epochs=epochs, batch_size=32, lr=0.05, label_smoothing=0.1, seed=0,
                threads=1 if mode == "ours" else None)
    return {"seconds": time.perf_counter() - start, "images_per_s": res.images_per_s,
            "val_acc": res.val_acc, "val_loss": res.val_loss, "threads": torch.get_num_threads()}


def measure(mode: str, source: str, per_class: int, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    if mode == "ours":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--data", source, "--per-class", str(per_class),
                          "--epochs", str(epochs)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(source: str, per_class: int, epochs: int, repeats: int) -> dict:
    cores = len(os.sched_getaffinity(0))
    measure("ours", source, per_class, epochs)  # warm the decoded-image cache and the page cache
    times: dict[tuple[str, bool], list[float]] = {}
    curves: dict[tuple[str, bool], list] = {}
    loads = []
    for r in range(repeats):
        for hog in (False, True):
            hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(cores)] if hog else []
            try:
                for mode in ("ours", "default"):
                    loads.append(os.getloadavg()[0])
                    m = measure(mode, source, per_class, epochs)
                    times.setdefault((mode, hog), []).append(m["seconds"])
                    curves.setdefault((mode, hog), []).append((m["val_acc"], m["val_loss"]))
                    print(f"repeat {r + 1}: {mode:7s} {'with hog' if hog else 'alone   '} {m['seconds']:7.1f} s "
                          f"{m['images_per_s']:7.0f} img/s  {m['threads']} thread(s)  val_acc {m['val_acc']}  "
                          f"load {loads[-1]:.1f}", flush=True)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med[("ours", True)] / med[("ours", False)]
    default = med[("default", True)] / med[("default", False)]
    same = len({json.dumps(c) for c in curves[("ours", False)] + curves[("ours", True)]}) == 1
    print(f"medians over {repeats} repeats: ours {med[('ours', False)]:.1f} s alone, {med[('ours', True)]:.1f} s "
          f"with the hog ({ours:.2f}x); torch defaults {med[('default', False)]:.1f} s alone, "
          f"{med[('default', True)]:.1f} s with the hog ({default:.2f}x); ours/default alone "
          f"{med[('ours', False)] / med[('default', False)]:.2f}; load average during the run "
          f"{min(loads):.1f}-{max(loads):.1f} on {cores} cores")
    return {"ours_slowdown_under_load": round(ours, 3), "default_slowdown_under_load": round(default, 3),
            "identical_accuracy": same, "ours_alone_s": round(med[("ours", False)], 2),
            "ours_hog_s": round(med[("ours", True)], 2), "default_alone_s": round(med[("default", False)], 2),
            "default_hog_s": round(med[("default", True)], 2), "repeats": repeats, "cores": cores,
            "per_class": per_class, "epochs": epochs, "load_min": round(min(loads), 2),
            "load_max": round(max(loads), 2)}


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ARCHIVE) if ARCHIVE.exists() else "synthetic")
    p.add_argument("--per-class", type=int, default=200, help="training images per class (quickstart: 500)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", choices=("ours", "default"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.data, a.per_class, a.epochs)))
        return None
    out = run(a.data, a.per_class, a.epochs, a.repeats)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

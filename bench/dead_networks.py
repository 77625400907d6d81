"""Dead or at-chance networks in the shipped study spaces: torchvision's head vs the fix.

Every network is trained twice per seed, identical but for the classifier head: "before"
is torchvision's (dropout -> conv10 -> ReLU -> average pool; head_bn=False,
head_relu=True), "after" is the generated spaces' (BatchNorm -> dropout -> conv10 ->
average pool; head_bn=True, head_relu=False). Same initial weights for the
shared layers, same batches.

The networks are the spaces' own points, built by explorer.study.config.load_config +
explorer.study.space.Space at the recipe's resolution:
- quickstart: --pairs random draws of studies/quickstart.yaml's space, each trained with
  bypass none and bypass simple (the space's two choices);
- sweeps: every distinct grid point of sweep_sr, sweep_pct3x3, sweep_pools and
  sweep_bypass (24 networks; the sweeps' centre is one point of several grids); all
  are bypass none except sweep_bypass's simple and complex points.
Recipe: studies/quickstart.yaml's trainer (batch 32, lr 0.05, momentum 0.9, Nesterov,
weight decay 5e-4, label smoothing 0.1) for --epochs 2, on --per-class training images
per class of the CIFAR-10 archive (50 validation images per class) at 16 px. The sweep
networks cost 13 to 400 M MACs per 16 px image (the quickstart's 0.3 to 10 M): 2 epochs
of all 24 at 16 px, 3 seeds, 2 heads would take about 3 hours of one core. They run at
--sweep-resolution 8 px instead, with the same number of images and steps (200 per
class, 124 steps): 300 runs in 43 minutes. Fewer images would not keep the
question: with 10 per class at 16 px (6 steps, seed 0) all 22 no-bypass sweep networks
ended at chance under either head.

A run FAILS if the trainer ends it `dead` (every output exactly 0) or `diverged`, or if
its final validation accuracy is at chance: <= AT_CHANCE = 0.15 for 10 classes. On 500
validation images a guesser scores 0.10 +- 0.0134; 0.15 is 3.7 of those away.

    python bench/dead_networks.py [--pairs 13] [--seeds 3] [--per-class 200]
                                  [--sweep-per-class 200] [--sweep-resolution 8]
    python bench/dead_networks.py --diagnose    # the cause: activations, final ReLU, gradients

One thread (torch.set_num_threads(1)): the cores are shared. Prints one line per run with
the time left; the last line is one JSON object with the counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.core.errors import SpecError  # noqa: E402
from explorer.design.cost import estimate_cost  # noqa: E402
from explorer.design.model import seeded_model  # noqa: E402
from explorer.design.spec import SqueezeSpec, spec_id  # noqa: E402
from explorer.study.config import load_config  # noqa: E402
from explorer.study.space import Space  # noqa: E402
from explorer.training.data import load_data  # noqa: E402
from explorer.training.datasource import default_archive  # noqa: E402
from explorer.training.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = default_archive()
SWEEPS = ("sweep_sr", "sweep_pct3x3", "sweep_pools", "sweep_bypass")
HEADS = {"before": {"head_bn": False, "head_relu": True}, "after": {"head_bn": True, "head_relu": False}}
AT_CHANCE = 0.15  # 10 classes: chance is 0.10; see the module docstring
VAL_PER_CLASS = 50


@dataclass(frozen=True)
class Case:
    """One network of a space (its head is set per run) and where it came from."""

    group: str  # quickstart/none, quickstart/simple, sweeps/none, sweeps/simple, sweeps/complex
    label: str
    spec: SqueezeSpec


def quickstart_cases(pairs: int, resolution: int, seed: int = 0) -> list[Case]:
    """`pairs` distinct draws of the quickstart space, each with bypass none and simple."""
    config = load_config(REPO / "studies/quickstart.yaml")
    space, budgets = Space(config.space, 10, resolution), dict(config.budgets)
    rng, seen, cases = random.Random(seed), set(), []
    while len(cases) < 2 * pairs:
        values = space.sample(rng)
        try:
            specs = [space.spec({**values, "bypass": b}) for b in ("none", "simple")]
        except SpecError:
            continue
        over = any(getattr(estimate_cost(s), k) > v for s in specs for k, v in budgets.items())
        if over or spec_id(specs[0]) in seen:  # the study never trains an over-budget network
            continue
        seen.add(spec_id(specs[0]))
        label = " ".join(f"{k}={v}" for k, v in sorted(values.items()) if k != "bypass")
        cases += [Case(f"quickstart/{s.bypass}", label, s) for s in specs]
    return cases


def sweep_cases(resolution: int) -> list[Case]:
    """Every distinct grid point of the four paper sweeps."""
    seen, cases = set(), []
    for name in SWEEPS:
        space = Space(load_config(REPO / f"studies/{name}.yaml").space, 10, resolution)
        for values in space.grid_points():
            spec = space.spec(values)
            if spec_id(spec) not in seen:
                seen.add(spec_id(spec))
                label = name + " " + " ".join(f"{k}={v}" for k, v in values.items())
                cases.append(Case(f"sweeps/{spec.bypass}", label, spec))
    return cases


def with_head(spec: SqueezeSpec, head: str) -> SqueezeSpec:
    """The same network with the `before` (torchvision) or `after` head."""
    return dataclasses.replace(spec, **HEADS[head])


def run_one(case: Case, head: str, seed: int, data, trainer: dict) -> dict:
    """Train one network once; what ended it and its accuracy."""
    model = seeded_model(with_head(case.spec, head), seed)
    t = time.perf_counter()
    r = train(model, data, **{**trainer, "seed": seed})
    failed = r.end in ("dead", "diverged") or r.final_acc <= AT_CHANCE
    return {"group": case.group, "label": case.label, "head": head, "seed": seed, "end": r.end,
            "val_acc": round(r.final_acc, 4), "failed": failed, "seconds": round(time.perf_counter() - t, 2)}


def summarise(rows: list[dict]) -> dict:
    """Counts of failed runs (dead, diverged, at chance) and the mean accuracy."""
    n = len(rows)
    dead = sum(r["end"] == "dead" for r in rows)
    diverged = sum(r["end"] == "diverged" for r in rows)
    failed = sum(r["failed"] for r in rows)
    mean = sum(r["val_acc"] for r in rows) / n if n else 0.0
    return {"runs": n, "failed": failed, "dead": dead, "diverged": diverged,
            "at_chance": failed - dead - diverged, "mean_val_acc": round(mean, 4)}


def report(rows: list[dict], heads: list[str]) -> dict:
    """Per head: totals and per group."""
    out = {}
    for head in heads:
        mine = [r for r in rows if r["head"] == head]
        groups = sorted({r["group"] for r in mine})
        out[head] = {"total": summarise(mine),
                     **{g: summarise([r for r in mine if r["group"] == g]) for g in groups}}
    return out


def plan(cases_by_data: list[tuple[list[Case], object]], heads: list[str], seeds: int) -> list[tuple]:
    """Every run, the two heads of one network and seed side by side, with a cost weight."""
    runs = []
    for cases, data in cases_by_data:
        images = len(data.train.y)
        for case in cases:
            # Measured on one core: a run takes about (MACs + 16 M) x images; 16 M MACs is
            # the per-step overhead of a small network.
            weight = (estimate_cost(case.spec).macs + 16e6) * images
            runs += [(case, head, seed, data, weight) for seed in range(seeds) for head in heads]
    return runs


def measure(args) -> None:
    """The before/after count over every planned run."""
    torch.set_num_threads(1)
    quick = load_data(args.data, per_class=args.per_class, val_per_class=VAL_PER_CLASS,
                      resolution=args.resolution, seed=0)
    sweep = load_data(args.data, per_class=args.sweep_per_class, val_per_class=VAL_PER_CLASS,
                      resolution=args.sweep_resolution, seed=0) if args.sweep_per_class else None
    recipe = load_config(REPO / "studies/quickstart.yaml").trainer
    trainer = {**dataclasses.asdict(recipe), "epochs": args.epochs, "time_budget_s": None}
    heads = args.heads.split(",")
    sets = [(quickstart_cases(args.pairs, args.resolution), quick)]
    sets += [(sweep_cases(args.sweep_resolution), sweep)] if sweep else []
    runs = plan(sets, heads, args.seeds)
    print(f"{len(runs)} runs; recipe {trainer}; quickstart {args.per_class}/class at {args.resolution} px, "
          f"sweeps {args.sweep_per_class}/class at {args.sweep_resolution} px; at chance: "
          f"val_acc <= {AT_CHANCE}", flush=True)
    rows, start, total_w, done_w = [], time.perf_counter(), sum(r[-1] for r in runs), 0.0
    for i, (case, head, seed, data, weight) in enumerate(runs, 1):
        row = run_one(case, head, seed, data, trainer)
        rows.append(row)
        done_w += weight
        left = (time.perf_counter() - start) / done_w * (total_w - done_w)
        print(f"[{i:3d}/{len(runs)}] {head:6s} {case.group:17s} seed {seed}  {row['end']:9s} "
              f"val_acc {row['val_acc']:.3f}{'  FAILED' if row['failed'] else '':8s} {row['seconds']:6.1f}s  "
              f"left ~{left / 60:.0f} min  {case.label}", flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {"recipe": {**trainer, "epochs": args.epochs, "per_class": args.per_class,
                         "resolution": args.resolution, "sweep_per_class": args.sweep_per_class,
                         "sweep_resolution": args.sweep_resolution, "val_per_class": VAL_PER_CLASS,
                         "seeds": args.seeds, "at_chance": AT_CHANCE},
              "networks": len({(r["group"], r["label"]) for r in rows}),
              "seconds": round(time.perf_counter() - start, 1), **report(rows, heads)}
    for head in heads:
        t = result[head]["total"]
        print(f"{head}: {t['failed']} of {t['runs']} runs failed ({t['dead']} dead, {t['diverged']} diverged, "
              f"{t['at_chance']} at chance); mean val_acc {t['mean_val_acc']:.3f}")
    print(json.dumps(result))


def diagnose(args) -> None:
    """Quickstart trial #0's network: why torchvision's head dies, measured."""
    import torch.nn.functional as F

    from explorer.training.train import _Normalise

    torch.set_num_threads(1)
    data = load_data(args.data, per_class=args.per_class, val_per_class=VAL_PER_CLASS,
                     resolution=args.resolution, seed=0)
    x = _Normalise(data.mean, data.std, torch.device("cpu"))(data.train.x[:256].permute(0, 2, 3, 1),
                                                             torch.contiguous_format)
    y = data.train.y[:256]
    trial0 = dict(base_e=48, incr_e=0, freq=2, n_fire=6, stem="cifar", stem_width=32, pct_3x3=0.25, sr=0.5,
                  pools=(2, 4), batchnorm=True, dropout=0.1, num_classes=10, input_size=args.resolution)
    out: dict = {}
    for bypass in ("none", "simple"):
        out[bypass] = _scales(seeded_model(SqueezeSpec(**trial0, bypass=bypass), 0).train(), x, y, F)
        print(f"bypass {bypass}: rms of each Fire's output at init {out[bypass]['fire_rms']}; "
              f"features into conv10: mean {out[bypass]['conv10_in_mean']}, |x|^2 per position "
              f"{out[bypass]['conv10_in_sq']}; one SGD step at the peak lr 0.05 moves conv10's output by "
              f"{out[bypass]['step_change_std']} (its own std {out[bypass]['conv10_out_std']})", flush=True)
    recipe = load_config(REPO / "studies/quickstart.yaml").trainer
    trainer = {**dataclasses.asdict(recipe), "epochs": 1, "time_budget_s": None}
    for head in HEADS:
        spec = with_head(SqueezeSpec(**trial0, bypass="simple"), head)
        out[f"simple/{head}"] = trace = _trace(spec, data, trainer)
        print(f"simple bypass, {head} head: positive conv10 outputs at steps 1..10 {trace['positive']}; "
              f"conv1 gradient norm {trace['conv1_grad']}; end {trace['end']}, val_acc {trace['val_acc']}",
              flush=True)
    print(json.dumps(out))


def _scales(model, x, y, F) -> dict:
    """Activation scale after each Fire at init, conv10's input and one SGD step's effect."""
    h, rms = x, []
    for layer in model.features:
        h = layer(h)
        if type(layer).__name__ == "Fire":
            rms.append(round(h.pow(2).mean().sqrt().item(), 2))
    conv = next(m for m in model.classifier if isinstance(m, torch.nn.Conv2d))
    z = conv(h)
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()
    step = F.conv2d(h.detach(), -0.05 * conv.weight.grad, -0.05 * conv.bias.grad)
    return {"fire_rms": rms, "conv10_in_mean": round(h.mean().item(), 3),
            "conv10_in_sq": round(h.pow(2).sum(1).mean().item(), 1),
            "conv10_out_std": round(z.std().item(), 3), "step_change_std": round(step.std().item(), 3)}


def _trace(spec: SqueezeSpec, data, trainer: dict) -> dict:
    """Share of positive conv10 outputs and conv1's gradient norm over the first 10 steps."""
    model = seeded_model(spec, 0)
    conv = next(m for m in model.classifier if isinstance(m, torch.nn.Conv2d))
    seen: dict = {}
    conv.register_forward_hook(lambda m, i, o: seen.update(pos=(o > 0).float().mean().item()))
    positive, grads = [], []

    def progress(step: int, total: int, loss: float) -> None:
        if step <= 10:
            positive.append(round(seen["pos"], 3))
            grads.append(float(f"{model.features[0].weight.grad.norm().item():.2g}"))

    r = train(model, data, **trainer, progress=progress)
    return {"positive": positive, "conv1_grad": grads, "end": r.end, "val_acc": r.final_acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ARCHIVE))
    ap.add_argument("--pairs", type=int, default=13, help="quickstart draws (each: bypass none and simple)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--sweep-per-class", type=int, default=200, help="0: leave the sweeps out")
    ap.add_argument("--sweep-resolution", type=int, default=8)
    ap.add_argument("--heads", default="before,after")
    ap.add_argument("--out", help="also write every run as a JSON line to this file")
    ap.add_argument("--diagnose", action="store_true", help="measure the cause on quickstart trial #0")
    args = ap.parse_args()
    diagnose(args) if args.diagnose else measure(args)


if __name__ == "__main__":
    main()

"""Record or recompute the trainer's exact numbers on real CIFAR-10 (see tests/test_trainer_bits.py).

`python tests/_trainer_bits.py OUT.json` writes them; the test recomputes them and compares with ==.
Two small networks trained directly for 2 epochs with the quickstart recipe, and a 2-trial quickstart
study (the objective's path from the study file's trainer section to the trainer).
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {  # quickstart-space networks: a simple bypass, and one with dropout and no bypass
    "bypass": dict(base_e=48, incr_e=0, n_fire=6, stem="cifar", stem_width=32, pct_3x3=0.25, sr=0.5,
                   bypass="simple", pools=(2, 4), batchnorm=True, dropout=0.1, num_classes=10,
                   input_size=16, head_bn=True, head_relu=False),
    "plain": dict(base_e=32, incr_e=16, n_fire=4, stem="cifar", stem_width=16, pct_3x3=0.5, sr=0.25,
                  pools=(1, 3), batchnorm=True, dropout=0.1, num_classes=10, input_size=16,
                  head_bn=True, head_relu=False),
}
DATA = dict(per_class=100, val_per_class=20, resolution=16, seed=0)


def environment() -> dict:
    """What the numbers depend on besides the code: torch's version and the CPU kernels it picked."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def compute(archive: Path) -> dict:
    """The figures: per case val_acc, val_loss, train_loss of train(); per study trial its stored curve."""
    import optuna
    import torch

    from explorer.design.model import seeded_model
    from explorer.design.spec import SqueezeSpec
    from explorer.study.config import load_config
    from explorer.study.loop import run_study
    from explorer.training.data import load_data
    from explorer.training.train import train

    torch.set_num_threads(1)
    data = load_data(str(archive), **DATA)
    quick = load_config(REPO / "studies/quickstart.yaml")
    recipe = {**dataclasses.asdict(quick.trainer), "epochs": 2}
    out: dict = {"environment": environment(), "train": {}, "study": {}}
    for name, spec in CASES.items():
        r = train(seeded_model(SqueezeSpec(**spec), 0), data, **recipe)
        out["train"][name] = {"val_acc": r.val_acc, "val_loss": r.val_loss, "train_loss": r.train_loss,
                              "end": r.end, "steps": r.steps}
    cfg = dataclasses.replace(quick, trainer=dataclasses.replace(quick.trainer, epochs=2), n_trials=2,
                              data=dataclasses.replace(quick.data, **DATA, source=str(archive)))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "bits.journal")
        run_study(cfg, storage_url=url, data=data, device="cpu", progress=False, out=io.StringIO())
        from explorer.store import open_storage

        for t in optuna.load_study(study_name=cfg.name, storage=open_storage(url)).get_trials():
            a = t.user_attrs
            out["study"][str(t.number)] = {k: a.get(k) for k in ("spec_id", "val_acc", "curve", "val_loss",
                                                                 "train_loss", "train_loss_sum", "end")}
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from conftest import CIFAR_ARCHIVE  # noqa: E402

    Path(sys.argv[1]).write_text(json.dumps(compute(CIFAR_ARCHIVE), indent=1) + "\n")

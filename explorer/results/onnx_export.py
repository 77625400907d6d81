"""A checkpoint (explorer train) -> ONNX, checked against PyTorch with onnxruntime when installed.

Needs the optional extra: pip install -e '.[onnx]' (onnx, onnxruntime). Uses torch's
TorchScript-based exporter (dynamo=False), which needs no onnxscript; the batch axis is
dynamic. Without onnx the export is skipped with a one-line message, never an error.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

OPSET = 17
TOLERANCE = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch (fp32)


def export_onnx(checkpoint: str | Path, path: str | Path) -> str:
    """Write `path` from `checkpoint`; a one-line report (skipped, exported, checked or mismatch)."""
    if importlib.util.find_spec("onnx") is None:
        return "ONNX export skipped: onnx is not installed (pip install -e '.[onnx]')"
    import torch

    from explorer.results.retrain import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    size = ckpt["spec"]["input_size"]
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    if importlib.util.find_spec("onnxruntime") is None:
        return f"wrote {path} (not checked: onnxruntime is not installed)"
    return f"wrote {path}; " + check_onnx(model, path, x)


def check_onnx(model, path: str | Path, x) -> str:
    """Compare onnxruntime's logits with PyTorch's on `x`; a one-line verdict."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    diff = float(abs(got - want).max())
    verdict = "agrees with" if diff <= TOLERANCE else "DIFFERS from"
    # A barely trained SqueezeNet can output all-zero logits (ReLU before the pool): say so.
    return (f"onnxruntime {verdict} PyTorch (max |logit difference| {diff:.2e}, tolerance "
            f"{TOLERANCE:g}; max |logit| {float(abs(want).max()):.3g} over {len(want)} images)")

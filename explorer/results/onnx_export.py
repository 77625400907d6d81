"""A checkpoint (explorer train) -> ONNX, checked against PyTorch with onnxruntime when installed.

Needs the optional extra: pip install -e '.[onnx]' (onnx, onnxruntime). Uses torch's
TorchScript-based exporter (dynamo=False), which needs no onnxscript; the batch axis is
dynamic. Without onnx the export is skipped with a one-line message, never an error.

Files are written with short tensor names (`compact_names`): they are deployment files, and the
exporter's and onnxruntime's quantizer's long derived names ('/features/features.3/squeeze/
Conv_output_0_quantized_scale') were measured at a third of a small network's int8 file
(docs/export.md#int8). Op types, shapes, weights and the input and output names are unchanged.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

OPSET = 17
TOLERANCE = 1e-4  # max |logit difference| allowed between onnxruntime and PyTorch (fp32)
INPUT, OUTPUT = "images", "logits"


class OnnxExportError(Exception):
    """torch's exporter cannot write the network (an op without an ONNX form): one line naming it."""


def export_onnx(checkpoint: str | Path, path: str | Path) -> str:
    """Write `path` from `checkpoint`; a one-line report (skipped, exported, checked or mismatch)."""
    if importlib.util.find_spec("onnx") is None:
        return "ONNX export skipped: onnx is not installed (pip install -e '.[onnx]')"
    from explorer.results.retrain import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    try:
        x = write_onnx(model, path, ckpt["spec"]["input_size"])
    except OnnxExportError as exc:
        return f"ONNX export failed: {exc}"
    if importlib.util.find_spec("onnxruntime") is None:
        return f"wrote {path} (not checked: onnxruntime is not installed)"
    return f"wrote {path}; " + check_onnx(model, path, x)


def write_onnx(model, path: str | Path, input_size: int):
    """Export `model` (eval mode) to `path` atomically with compact names; the seeded sample input it
    was traced with. OnnxExportError (one line, naming the op) when torch cannot export it."""
    import copy

    import onnx
    import torch

    from explorer.core.util import atomic_write

    x = torch.randn(8, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    net = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()  # the caller's stays as it is
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (x,), buf, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - torch raises UnsupportedOperatorError, RuntimeError, ...
        raise OnnxExportError(first_line(exc)) from None
    proto = compact_names(onnx.load_from_string(buf.getvalue()))
    atomic_write(Path(path), lambda f: f.write(proto.SerializeToString()), binary=True)
    return x


def compact_names(proto):
    """The model with every tensor named by a short counter (input and output names kept), node names,
    doc strings and shape annotations dropped; checked by onnx.checker. Written here because onnx
    and onnxruntime ship no such pass (onnx.compose only adds prefixes)."""
    import onnx

    g = proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name == "" or name in keep:
            return name
        return names.setdefault(name, format(len(names), "x"))

    for t in g.initializer:
        t.name, t.doc_string = short(t.name), ""
    for node in g.node:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    del g.value_info[:]  # shapes onnxruntime infers again on load
    proto.doc_string = ""
    onnx.checker.check_model(proto)
    return proto


def first_line(exc: BaseException) -> str:
    """An exception's first line, whitespace folded, at most 300 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return " ".join(text.split())[:300]


def check_onnx(model, path: str | Path, x) -> str:
    """Compare onnxruntime's logits with PyTorch's on `x`; a one-line verdict."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    diff = float(abs(got - want).max())
    verdict = "agrees with" if diff <= TOLERANCE else "DIFFERS from"
    # A barely trained SqueezeNet can output all-zero logits (ReLU before the pool): say so.
    return (f"onnxruntime {verdict} PyTorch (max |logit difference| {diff:.2e}, tolerance "
            f"{TOLERANCE:g}; max |logit| {float(abs(want).max()):.3g} over {len(want)} images)")

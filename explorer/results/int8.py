"""Post-training static int8 quantization of a trained network, measured as it will be deployed.

The fp32 network is written as ONNX (explorer.results.onnx_export) and quantized by
onnxruntime's static quantization (`onnxruntime.quantization.quantize_static`): QOperator
format (QLinearConv and friends), int8 weights per tensor, uint8 activations whose ranges
(MinMax) come from a seeded sample of training images. Both files are then measured the
same way, through onnxruntime: size on disk, validation and test accuracy, and latency with
explorer.latency.measure's hygiene (warm-up, fixed threads, median to a stated spread,
every training of ours paused). docs/export.md#int8 says why onnxruntime and not PT2E.

What cannot be quantized is one line naming the op (`QuantizeError`): an op torch cannot
export, an op whose weights the quantizer left in fp32 (it has no int8 form of it), or an
int8 graph onnxruntime cannot run. Ops without weight matrices that stay fp32 between
int8 neighbours (BatchNormalization) are listed in the result, not refused.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from explorer.core.util import plain
from explorer.results.onnx_export import INPUT, OnnxExportError, check_onnx, first_line, write_onnx

CALIBRATION_IMAGES = 500  # a seeded sample of the training split (50 per class on CIFAR-10, on average)
METHOD = {"library": "onnxruntime", "format": "QOperator", "weights": "int8, per tensor",
          "activations": "uint8, per tensor", "calibration": "MinMax"}
FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
EVAL_BATCH = 500
LATENCY_ROUNDS = 5  # fp32 and int8 timed in turn this many times (a few seconds for these networks)
_NO_KERNEL = re.compile(r"implementation for (\w+)\(")  # onnxruntime: "Could not find an implementation for X(1) node"


class QuantizeError(Exception):
    """The network cannot be quantized: one line naming the op and why."""


def missing() -> str:
    """'' when onnx and onnxruntime are installed, else the one line saying how to install them."""
    absent = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    return f"int8 needs {' and '.join(absent)}: pip install -e '.[onnx]'" if absent else ""


def quantize_network(model, data, out: Path, *, seed: int, threads: int = 1, n_calibration: int = CALIBRATION_IMAGES,
                     latency: bool = True) -> dict[str, Any]:
    """Write out/model.onnx and out/model.int8.onnx; their sizes, accuracies and latencies.

    `data` is the network's dataset (explorer.training.data.Data: train, val, test(), mean, std);
    calibration draws `n_calibration` training images with `seed`. QuantizeError when it cannot.
    """
    import copy

    size = data.resolution
    fp32, int8 = out / FP32_FILE, out / INT8_FILE
    int8.unlink(missing_ok=True)  # an int8 file beside a new fp32 one would not be its own
    try:
        x = write_onnx(model, fp32, size)
    except OnnxExportError as exc:
        raise QuantizeError(f"torch cannot export it to ONNX: {exc}") from None
    onnx_check = check_onnx(copy.deepcopy(model).cpu().eval(), fp32, x)
    calib = normalised(calibration_sample(data.train.x, n_calibration, seed), data.mean, data.std)
    left_fp32 = quantize_file(fp32, int8, calib)
    test = data.test()
    result = {"fp32_file": FP32_FILE, "int8_file": INT8_FILE,
              "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size}
    for name, path in (("fp32", fp32), ("int8", int8)):
        result[f"{name}_val_acc"] = accuracy(path, data.val.x, data.val.y, data.mean, data.std)
        result[f"{name}_test_acc"] = accuracy(path, test.x, test.y, data.mean, data.std)
    result.update(val_acc_drop=result["fp32_val_acc"] - result["int8_val_acc"],
                  test_acc_drop=result["fp32_test_acc"] - result["int8_test_acc"],
                  size_ratio=result["int8_bytes"] / result["fp32_bytes"], fp32_ops=left_fp32, onnx_check=onnx_check,
                  val_images=len(data.val.y), test_images=len(test.y),
                  calibration={"images": len(calib), "seed": seed, "split": "train"},
                  method={**METHOD, "version": ort_version()},
                  quantized_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    if latency:
        result.update(measure_latency(out, size, threads=threads))
    return plain(result)


def calibration_sample(x, n: int, seed: int):
    """`n` training images (uint8 NCHW) drawn without replacement with `seed`: the same sample for the same seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(len(x), generator=g)[:n]]


def normalised(x, mean, std):
    """uint8 NCHW images -> float32 NCHW numpy, normalised as the trainer normalises them."""
    import torch

    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x.float() / 255 - m) / s).contiguous().numpy()


def quantize_file(fp32: Path, int8: Path, calib) -> dict[str, int]:
    """Quantize `fp32` into `int8` (atomically, compact names); the op types left in fp32 and how many.

    QuantizeError naming the op when the quantizer fails, leaves weights in fp32, or onnxruntime
    cannot run the result.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from explorer.core.util import atomic_write
    from explorer.results.onnx_export import compact_names

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib[i:i + 100] for i in range(0, len(calib), 100))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch}

    with tempfile.TemporaryDirectory(prefix="explorer-int8-") as tmp:
        pre, raw = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(fp32), str(pre))  # shape inference and graph clean-up, as onnxruntime advises
            quantize_static(str(pre), str(raw), Reader(), quant_format=QuantFormat.QOperator, per_channel=False,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibration_providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - the quantizer raises anything from KeyError to RuntimeError
            raise QuantizeError(f"onnxruntime's quantizer failed: {first_line(exc)}") from None
        proto = compact_names(onnx.load(str(raw)))
    unquantized = fp32_weight_ops(proto)
    if unquantized:
        raise QuantizeError(f"onnxruntime's quantizer has no int8 form of {unquantized[0]}: its weights stay "
                            "fp32, so the file would not be an int8 network")
    atomic_write(int8, lambda f: f.write(proto.SerializeToString()), binary=True)
    try:
        session(int8)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail / NotImplemented
        int8.unlink(missing_ok=True)
        op = _NO_KERNEL.search(str(exc))
        raise QuantizeError(f"onnxruntime has no int8 kernel for {op.group(1)}" if op else
                            f"onnxruntime cannot run the int8 graph: {first_line(exc)}") from None
    return fp32_ops(proto)


def fp32_weight_ops(proto) -> list[str]:
    """Op types that still take an fp32 weight matrix (an initializer of rank >= 2): not quantized."""
    from onnx import TensorProto

    matrices = {t.name for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2}
    return sorted({n.op_type for n in proto.graph.node if any(i in matrices for i in n.input)})


def fp32_ops(proto) -> dict[str, int]:
    """Op types computing in fp32 between int8 neighbours (their input is a DequantizeLinear's output)."""
    dequantized = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dequantized for i in n.input):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def session(path: Path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads, one inter-op thread, sequential."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only: no notices on the user's terminal
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def accuracy(path: Path, x, y, mean, std) -> float:
    """Top-1 accuracy of the ONNX file on uint8 images x (N, 3, H, W) with labels y."""
    s = session(path)
    correct = 0
    for i in range(0, len(y), EVAL_BATCH):
        logits = s.run(None, {INPUT: normalised(x[i:i + EVAL_BATCH], mean, std)})[0]
        correct += int((logits.argmax(1) == y[i:i + EVAL_BATCH].numpy()).sum())
    return correct / max(len(y), 1)


def measure_latency(out: Path, input_size: int, *, threads: int = 1, rounds: int = LATENCY_ROUNDS) -> dict[str, Any]:
    """Latency of out/model.onnx and out/model.int8.onnx in one quiet window: batch 1, `threads` threads,
    explorer.latency.measure's warm-up and stopping rule, fp32 and int8 measured in turn `rounds` times.

    Each file's figure is its median round; the ratio is the median of the rounds' ratios, each
    round's two measurements taken back to back, so a load that drifts between rounds cancels out
    of it (measured: single fp32-then-int8 pairs at load 4 gave ratios from 0.48 to 1.36 for one
    network); `latency_ratio_range` is the rounds' lowest and highest ratio.
    """
    import statistics

    import numpy as np

    from explorer.latency import quiet
    from explorer.latency.measure import time_calls

    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size), dtype=np.float32)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # others' processes: noise quiet cannot stop
    runs: dict[str, list] = {"fp32": [], "int8": []}
    with quiet.measuring() as calm:
        sessions = {"fp32": session(out / FP32_FILE, threads), "int8": session(out / INT8_FILE, threads)}
        for _ in range(rounds):
            for name, s in sessions.items():
                runs[name].append(time_calls(lambda s=s: s.run(None, {INPUT: x}),
                                             ort_setting(name, input_size, threads), quiet=calm))
    ratios = [q.ms / f.ms for f, q in zip(runs["fp32"], runs["int8"])]
    cpu = [q.cpu_ms / f.cpu_ms for f, q in zip(runs["fp32"], runs["int8"]) if f.cpu_ms > 0]
    lat = {name: sorted(ms, key=lambda m: m.ms)[len(ms) // 2] for name, ms in runs.items()}  # the median round
    return {"fp32_latency_ms": lat["fp32"].ms, "int8_latency_ms": lat["int8"].ms,
            "latency_ratio": statistics.median(ratios), "latency_ratio_range": [min(ratios), max(ratios)],
            "cpu_ratio": statistics.median(cpu) if cpu else None, "latency_rounds": rounds,
            "latency_setting": lat["int8"].setting.label(), "load_1min": load,
            "fp32_latency": lat["fp32"].to_dict(), "int8_latency": lat["int8"].to_dict()}


def ort_setting(precision: str, input_size: int, threads: int):
    """The latency Setting of an onnxruntime CPU session: `precision` names the runtime and its version."""
    import socket

    import torch

    from explorer.latency.measure import Setting, describe_device

    return Setting(device="cpu", device_name=describe_device("cpu"), host=socket.gethostname(), threads=threads,
                   batch_size=1, input_size=input_size, channels_last=False,
                   precision=f"{precision} onnxruntime {ort_version()}", torch=torch.__version__.split("+")[0])


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__

"""int8 results where users find them: beside the trained model (int8.json, the model card's int8
section, train.json), in the study (user attr `int8/N`), and the trained models that
`explorer export --int8` quantizes (an `explorer train` output folder per trial).

`explorer train --int8` quantizes the network it has just trained; `explorer export --int8`
has no weights of its own (a study's trials keep none), so it quantizes the models `explorer
train` wrote under `--models`, matched to the chosen trials by study, trial and spec_id; a
model already quantized (int8.json naming its model.pt's digest and this method) is reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from pathlib import Path
from typing import Any, Callable

from explorer.core.errors import UserError
from explorer.core.util import plain, write_atomic
from explorer.design.spec import SqueezeSpec, spec_id
from explorer.results import int8
from explorer.results.exportfile import Export
from explorer.store import StudyRecord, mask_url, open_storage
from explorer.store import attrs as A

INT8_JSON = "int8.json"
CARD_HEADING = "## int8 (onnxruntime static quantization)"
MAX_TRAIN_JSON = 2000  # train.json files read when looking for trained models: a guard against a huge tree


# --- after `explorer train` ------------------------------------------------------------------

def quantize_trained(out: Path, model, data, *, seed: int, metrics: dict[str, Any], exp: Export,
                     storage_url: str | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """Quantize the network `explorer train` wrote into `out`; (the result or None, lines to print).

    Never raises for the int8 step's sake: the fp32 model is already complete.
    """
    label = exp.label
    if int8.missing():
        return None, [f"explorer: warning: int8 skipped: {int8.missing()}"]
    try:
        result = int8.quantize_network(model, data, out, seed=seed)
    except int8.QuantizeError as exc:
        return None, [cannot_line(label, exc, out)]
    record = finish(out, result, epochs=metrics.get("epochs"), trained_test_acc=metrics.get("test_acc"),
                    spec=exp.spec, provenance=exp.provenance)
    return record, [summary_line(label, record), store_in_study(exp, record, storage_url)]


def quantizer(exp: Export, *, seed: int, storage_url: str | None = None,
              say: Callable[[str], None] = lambda line: None) -> Callable[..., list[str]]:
    """The `after` step of explorer.results.retrain.train_export for `explorer train --int8`: quantize the
    network just trained and written; the lines to print."""
    def after(out: Path, model, data, metrics: dict[str, Any]) -> list[str]:
        say(f"int8: quantizing {exp.label} (onnxruntime; calibration, evaluation and timing take about a minute)")
        return quantize_trained(out, model, data, seed=seed, metrics=metrics, exp=exp, storage_url=storage_url)[1]

    return after


def cannot_line(label: str, exc: Exception, out: Path) -> str:
    """The one line for a network that cannot be quantized (the fp32 files written are named)."""
    done = [f for f in ("model.pt", int8.FP32_FILE) if (out / f).exists()]
    return (f"explorer: warning: int8: {label} cannot be quantized: {exc}; the fp32 export is complete "
            f"({', '.join(str(out / f) for f in done) or 'nothing else was written'})")


def finish(out: Path, result: dict[str, Any], *, epochs: Any, trained_test_acc: Any, spec: SqueezeSpec,
           provenance: dict[str, Any]) -> dict[str, Any]:
    """The stored record (result + the model it belongs to), written to int8.json, train.json and the card."""
    record = plain({**result, "model": str(out.resolve()), "model_sha256": digest(out / "model.pt"),
                    "spec_id": spec_id(spec), "epochs": epochs, "trained_test_acc": trained_test_acc,
                    "study": provenance.get("study"), "trial": provenance.get("trial")})
    write_record(out, record)
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    """int8.json, `int8` in train.json, and the model card's int8 section (each atomically, where present)."""
    write_atomic(out / INT8_JSON, json.dumps(plain(record), indent=2) + "\n")
    train_json = out / "train.json"
    if train_json.exists():
        doc = json.loads(train_json.read_text(encoding="utf-8"))
        write_atomic(train_json, json.dumps({**doc, "int8": plain(record)}, indent=2) + "\n")
    card = out / "model_card.md"
    if card.exists():
        write_atomic(card, with_card_section(card.read_text(encoding="utf-8"), record))


def digest(path: Path) -> str:
    """sha256 of a file (int8.json names the model.pt it was made from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def store_in_study(exp: Export, record: dict[str, Any], storage_url: str | None) -> str:
    """Store the record as the study's user attr int8/N when the file's trial is there; a one-line note."""
    from explorer.results.calibration import study_target

    if "study" not in exp.provenance or "trial" not in exp.provenance:
        return "int8: not stored in a study: the file names none (int8.json and the model card hold the result)"
    try:
        target, why = study_target(exp, storage_url)
        if target is None:  # calibrate's reasons, which end in where its result went instead
            why = why.removesuffix(": stored in the file only")
            return f"int8: {why}" if why.startswith("not stored") else f"int8: not stored in the study: {why}"
        return _set(target.storage, target.url, exp.provenance["study"], exp.provenance["trial"], record)
    except Exception as exc:  # noqa: BLE001 - a foreign trial, a read-only or vanished storage, ...
        url = storage_url or exp.provenance.get("storage")
        return f"int8: not stored in the study ({mask_url(' '.join(str(exc).split()), url)[:300]})"


def _set(storage, url: str, study: str, trial: int, record: dict[str, Any]) -> str:
    storage.set_study_user_attr(storage.get_study_id_from_name(study), A.int8_key(trial), plain(record))
    return f"int8: stored in {mask_url(url)} as study {study!r} user attr {A.int8_key(trial)}"


# --- the text: model card section and one summary line ---------------------------------------

def card_lines(r: dict[str, Any]) -> list[str]:
    """The model card's int8 section."""
    m, cal = r["method"], r["calibration"]
    lines = [CARD_HEADING, "", "| | fp32 | int8 | int8 vs fp32 |", "|---|---|---|---|",
             f"| ONNX file | {r['fp32_file']}, {r['fp32_bytes']:,} bytes | {r['int8_file']}, {r['int8_bytes']:,} bytes "
             f"| {r['size_ratio']:.2f}x |",
             *(f"| {split} accuracy ({r[f'{key}_images']:,} images) | {_pct(r[f'fp32_{key}_acc'])} | "
               f"{_pct(r[f'int8_{key}_acc'])} | {_points(-r[f'{key}_acc_drop'])} |"
               for split, key in (("validation", "val"), ("test", "test")))]
    if r.get("int8_latency_ms") is not None:
        f, q = r["fp32_latency"], r["int8_latency"]
        low, high = r.get("latency_ratio_range") or (r["latency_ratio"],) * 2
        lines.append(f"| latency, median ms per image | {_ms(f)} | {_ms(q)} | {r['latency_ratio']:.2f}x "
                     f"({low:.2f}x to {high:.2f}x over {r.get('latency_rounds', 1)} rounds) |")
    lines += ["", f"- {m['library']} {m['version']} `quantize_static`: {m['format']} format, weights {m['weights']}, "
              f"activations {m['activations']}, {m['calibration']} ranges from {cal['images']} training images drawn "
              f"with seed {cal['seed']}",
              "- accuracies and latencies of both files through onnxruntime on the same images and setting"]
    if r.get("fp32_ops"):
        lines.append("- computed in fp32 between int8 neighbours (no int8 form in onnxruntime's quantizer): "
                     + ", ".join(f"{op} ({n})" for op, n in r["fp32_ops"].items()))
    if r.get("int8_latency_ms") is not None:
        quiet = "every training of ours paused" if r["int8_latency"].get("quiet") else "NOT quiet (another " \
            "measurement held the machine)"
        lines.append(f"- latency on {r['latency_setting']} (fp32: the same with fp32); {quiet}; load average "
                     f"{_num(r.get('load_1min'))}, process CPU share {r['int8_latency'].get('cpu_share')} (below 1: "
                     "other processes took turns); the study's `latency_ms` is PyTorch's and compares only with "
                     "PyTorch's")
    return lines + [""]


def with_card_section(card: str, r: dict[str, Any]) -> str:
    """The card with its int8 section replaced, or added before '## Network'."""
    section = "\n".join(card_lines(r)) + "\n"
    if CARD_HEADING in card:
        head, _, rest = card.partition(CARD_HEADING)
        nxt = rest.find("\n## ")
        return head + section + (rest[nxt + 1:] if nxt >= 0 else "")
    if "\n## Network" in card:
        head, _, rest = card.partition("\n## Network")
        return head + "\n" + section + "## Network" + rest
    return card.rstrip("\n") + "\n\n" + section


def summary_line(label: str, r: dict[str, Any]) -> str:
    """One line: int8 test accuracy beside fp32's, sizes, latencies."""
    line = (f"int8: {label}: test accuracy {_pct(r['int8_test_acc'])} (fp32 {_pct(r['fp32_test_acc'])}, "
            f"{_points(-r['test_acc_drop'])}), {r['int8_bytes']:,} bytes ({r['size_ratio']:.2f}x the fp32 ONNX "
            f"file's {r['fp32_bytes']:,})")
    if r.get("int8_latency_ms") is not None:
        line += (f", {r['int8_latency_ms']:.3g} ms ({r['latency_ratio']:.2f}x fp32's {r['fp32_latency_ms']:.3g} ms, "
                 "onnxruntime, 1 thread, batch 1)")
    return line + f"; wrote {Path(r['model']) / r['int8_file']}"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "unknown"


def _points(v: float) -> str:
    return f"{100 * v:+.2f} points"


def _ms(lat: dict[str, Any]) -> str:
    return f"{lat['ms']:.3g} (±{100 * lat['spread']:.1f}%)" if math.isfinite(lat.get("spread", math.inf)) \
        else f"{lat['ms']:.3g}"


# --- `explorer export --int8`: the trained models of chosen trials -------------------------------

def find_models(models: Path, study: str, spec_ids: dict[int, str],
                storage: str | None = None) -> tuple[dict[int, Path], list[str]]:
    """(trial number -> the folder of its newest `explorer train` output under `models`, notes).

    A folder matches a trial when its train.json's provenance names the study and trial and its
    spec_id is the trial's (a re-created study's models do not match)."""
    found: dict[int, Path] = {}
    seen = 0
    for tj in sorted(Path(models).rglob("train.json")):
        seen += 1
        if seen > MAX_TRAIN_JSON:
            break
        prov = _provenance(tj)
        n = prov.get("trial")
        if prov.get("study") != study or n not in spec_ids or not (tj.parent / "model.pt").exists():
            continue
        if prov.get("spec_id") not in (None, spec_ids[n]):
            continue
        if n not in found or _mtime(tj.parent) > _mtime(found[n]):
            found[n] = tj.parent
    where = f" --storage {shlex.quote(mask_url(storage))}" if storage else ""
    notes = [f"int8: trial #{n} has no trained model under {models} (train it: explorer train {study}{where} --trial "
             f"{n} --epochs 10 --out {Path(models) / f'{study}-{n}'}); its int8 figures are left empty"
             for n in spec_ids if n not in found]
    return found, notes


def _provenance(train_json: Path) -> dict[str, Any]:
    try:
        doc = json.loads(train_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    prov = doc.get("provenance") if isinstance(doc, dict) else None
    return prov if isinstance(prov, dict) else {}


def _mtime(folder: Path) -> float:
    return (folder / "model.pt").stat().st_mtime


def quantize_models(rec: StudyRecord, found: dict[int, Path], *, data_cli: str | None = None,
                    remeasure: bool = False, say: Callable[[str], None] = print) -> dict[int, dict[str, Any]]:
    """Trial number -> int8 record for each trained model in `found` (reused from int8.json when it
    is this model's and this method's; `remeasure` times the reused files again), stored in the study."""
    results: dict[int, dict[str, Any]] = {}
    cache: dict[tuple, Any] = {}
    for i, (n, folder) in enumerate(sorted(found.items()), 1):
        label = f"{rec.name} #{n}"
        record = reusable(folder)
        if record is not None and not remeasure:
            say(f"int8 {i}/{len(found)}: {label}: reusing {folder / INT8_JSON}")
        elif record is not None:
            say(f"int8 {i}/{len(found)}: {label}: timing {folder} again")
            record = plain({**record, **int8.measure_latency(folder, _input_size(folder))})
            write_record(folder, record)
        else:
            say(f"int8 {i}/{len(found)}: {label}: quantizing {folder / 'model.pt'} (about a minute)")
            try:
                record = quantize_folder(folder, data_cli, cache)
            except int8.QuantizeError as exc:
                say(cannot_line(label, exc, folder))
                continue
        results[n] = record
        say(summary_line(label, record))
    if results:
        say(_store_all(rec, results))
    return results


def _input_size(folder: Path) -> int:
    """The network's input size, from the train.json `explorer train` wrote beside it."""
    doc = json.loads((folder / "train.json").read_text(encoding="utf-8"))
    return int(doc["preprocess"]["input_size"])


def quantize_folder(folder: Path, data_cli: str | None, cache: dict[tuple, Any]) -> dict[str, Any]:
    """Quantize the model.pt `explorer train` wrote into `folder` with its own data and seed; the record."""
    from explorer.results.retrain import load_checkpoint

    model, ckpt = load_checkpoint(folder / "model.pt")
    exp = Export(folder / "model.pt", model.spec, {"spec": ckpt["spec"], "provenance": ckpt.get("provenance") or {}},
                 "yaml")
    seed = int((ckpt.get("trainer") or {}).get("seed", 0))
    result = int8.quantize_network(model, _data(exp, data_cli, cache), folder, seed=seed)
    metrics = ckpt.get("metrics") or {}
    return finish(folder, result, epochs=metrics.get("epochs"), trained_test_acc=metrics.get("test_acc"),
                  spec=model.spec, provenance=exp.provenance)


def reusable(folder: Path) -> dict[str, Any] | None:
    """The folder's int8.json when it belongs to its model.pt and this quantization method, else None."""
    try:
        record = json.loads((folder / INT8_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("model_sha256") != digest(folder / "model.pt"):
        return None
    method = {**int8.METHOD, "version": int8.ort_version()}
    same = record.get("method") == method and (record.get("calibration") or {}).get("images") == int8.CALIBRATION_IMAGES
    return record if same and (folder / int8.INT8_FILE).exists() else None


def _data(exp: Export, data_cli: str | None, cache: dict[tuple, Any]):
    """The model's dataset (all training images, the study's val split), loaded once per recipe."""
    from explorer.results import retrain as rt

    source = rt.data_source(data_cli, exp)
    key = (source, json.dumps(rt.data_settings(exp, per_class=None), sort_keys=True))
    if key not in cache:
        cache[key] = rt.load_export_data(exp, source, per_class=None)
    return cache[key]


def _store_all(rec: StudyRecord, results: dict[int, dict[str, Any]]) -> str:
    """Store every record in the study; a one-line note."""
    try:
        storage = open_storage(rec.url)
        for n, record in results.items():
            _set(storage, rec.url, rec.name, n, record)
    except Exception as exc:  # noqa: BLE001 - a read-only or vanished storage: the files keep the results
        return f"int8: not stored in the study ({mask_url(' '.join(str(exc).split()), rec.url)[:300]})"
    return (f"int8: stored in {mask_url(rec.url)} as study {rec.name!r} user attrs "
            f"{', '.join(A.int8_key(n) for n in results)}")


def require_models(found: dict[int, Path], numbers: list[int], models: Path, study: str) -> None:
    """UserError (before anything is written) when none of the chosen trials has a trained model."""
    if found:
        return
    first = numbers[0] if numbers else 0
    where = f"{models} does not exist" if not Path(models).exists() else f"none under {models}"
    raise UserError(f"--int8 needs trained weights and a study keeps none: {where} for the {len(numbers)} chosen "
                    f"trial(s); train them first (explorer train {study} --trial {first} --epochs 10 --out "
                    f"{Path(models) / f'{study}-{first}'}), or pass --models DIR")

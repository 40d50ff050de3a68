"""The calibration suite of ``benchmarks/int8_methods.py --suite calibration``: post-training calibrations with no
layer in float, side by side on fine-tuned runs. ONNX Runtime's ``quantize_static`` (per-channel; uint8 asymmetric or
int8 symmetric activations; reduce_range) against NNCF's ``nncf.quantize`` on the same ONNX graph (fast or full bias
correction; symmetric or asymmetric activations). Every int8 model is one QDQ ONNX file, scored and timed in ONNX
Runtime and in OpenVINO against the same engine's fp32.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from int8_methods import latency, load_batches

from edgetransfer.backends.base import LoadOptions
from edgetransfer.backends.openvino import compile_model
from edgetransfer.backends.ort import _OrtSession, ort_session
from edgetransfer.builtin_data import materialize_digits
from edgetransfer.evaluation import top1
from edgetransfer.export import ExportConfig, export
from edgetransfer.finetune import FinetuneConfig, finetune
from edgetransfer.machine import machine_info, usable_cores
from edgetransfer.quantize import Int8Config, calibration_subset, prepare

CALIBRATIONS = {  # label -> ("ort", quantize_static keyword arguments) or ("nncf", nncf_quantize_onnx's)
    "ORT per-channel, u8 asymmetric activations (export default)": ("ort", {}),
    "ORT per-channel, s8 symmetric activations": (
        "ort",
        {"activation_type": "QInt8", "extra_options": {"ActivationSymmetric": True}},
    ),
    "ORT per-channel, u8 activations, reduce_range": ("ort", {"reduce_range": True}),
    "NNCF ONNX, symmetric activations, fast bias correction": ("nncf", {}),
    "NNCF ONNX, symmetric activations, full bias correction": ("nncf", {"fast_bias_correction": False}),
    "NNCF ONNX, asymmetric activations (mixed), fast bias correction": ("nncf", {"preset": "mixed"}),
}


def _ort_quantize(prepared: Path, out: Path, calibration, pre, **options) -> None:
    """ONNX Runtime's quantize_static as the export calls it (QDQ, per-channel s8 weights, u8 activations, per-batch
    ranges averaged), with ``options`` changed."""
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    from edgetransfer.quantize import _input_name, _Reader

    extra = {"CalibMovingAverage": True} | options.pop("extra_options", {})
    activation = getattr(QuantType, options.pop("activation_type", "QUInt8"))
    ort_quantize_static(
        str(prepared),
        str(out),
        _Reader(calibration, pre, _input_name(prepared)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=activation,
        weight_type=QuantType.QInt8,
        extra_options=extra,
        **options,
    )


def calibration_suite(name: str, run, work: Path, *, rounds: int, runs: int) -> list[dict]:
    """Every calibration of :data:`CALIBRATIONS` on one run's fp32 ONNX model: val and test top-1 in ONNX Runtime,
    test top-1 in OpenVINO, latency ratio to the same engine's fp32 at 1 thread and all cores, time taken."""
    from edgetransfer.evaluation import decoded
    from edgetransfer.quantize_nncf_onnx import nncf_quantize_onnx

    card = run.load_card()
    pre = card.preprocessing
    splits = run.load_splits(card)
    fp32_path = run.file("model.onnx")
    if not fp32_path.is_file():
        export(run, ExportConfig(int8=Int8Config(mode="none"), openvino=False))
    prepared = work / f"{name}.prepared.onnx"
    prepare(fp32_path, prepared)
    calibration = decoded(calibration_subset(splits.train, Int8Config()), pre)
    val, test = decoded(splits.val, pre), decoded(splits.test, pre)
    files, seconds = {"fp32": fp32_path}, {}
    for label, (kind, options) in CALIBRATIONS.items():
        files[label] = work / f"{name}.{len(files)}.onnx"
        t0 = time.perf_counter()
        if kind == "ort":
            _ort_quantize(prepared, files[label], calibration, pre, **options)
        else:
            nncf_quantize_onnx(fp32_path, files[label], calibration, pre, **options)
        seconds[label] = time.perf_counter() - t0
        print(f"{name}: {label} in {seconds[label]:.0f} s", flush=True)

    def ort(path, threads=None):
        return _OrtSession(ort_session(path, threads=threads), "int8")

    def ov(path, threads=None):
        return compile_model(path, LoadOptions(threads=threads, batch=1 if threads else None), int8=True)

    acc = {k: (top1(ort(p), val), top1(ort(p), test), top1(ov(p), test)) for k, p in files.items()}
    sample = next(iter(load_batches(splits.test, pre)))
    ratios: dict[tuple[str, str, int], float] = {}
    for threads in (1, usable_cores()):
        for engine, make in (("ORT", ort), ("OpenVINO", ov)):
            medians = latency({k: make(p, threads) for k, p in files.items()}, sample, rounds, runs)
            ratios |= {(k, engine, threads): ms / medians["fp32"] for k, ms in medians.items()}
    rows = []
    for label in files:
        rows.append(
            {
                "dataset": name,
                "method": label,
                "val_top1": acc[label][0],
                "test_top1": acc[label][1],
                "openvino_test_top1": acc[label][2],
                "val_drop": 100 * (acc["fp32"][0] - acc[label][0]),
                "test_drop": 100 * (acc["fp32"][1] - acc[label][1]),
                "openvino_test_drop": 100 * (acc["fp32"][2] - acc[label][2]),
                "latency_ratio": {f"{e} {t}t": r for (k, e, t), r in ratios.items() if k == label},
                "seconds": seconds.get(label),
                "bytes": files[label].stat().st_size,
                "images": {"calibration": len(calibration), "val": len(val), "test": len(test)},
            }
        )
    return rows


def calibration_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"flags {', '.join(meta['machine']['flags'])}. Command: `{meta['command']}`; wall time {meta['wall_s']:.0f} s.",
        "Drops in points of top-1 against fp32 in the same engine; latency: ratio of medians to the same engine's "
        "fp32, batch 1, measured in interleaved rounds in one process.",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        images = sub[0]["images"]
        keys = list(sub[0]["latency_ratio"])
        lines += [f"### {dataset} ({images['val']} val, {images['test']} test, {images['calibration']} calibration)"]
        lines += ["", "| method | val drop (ORT) | test drop (ORT) | test drop (OpenVINO) | "]
        lines[-1] += " | ".join(f"latency vs fp32, {k}" for k in keys) + " | time | size MB |"
        lines.append("|" + "---|" * (6 + len(keys)))
        for r in sub:
            head = f"| {r['method']} | "
            if r["method"] == "fp32":
                accs = (r["val_top1"], r["test_top1"], r["openvino_test_top1"])
                head += " | ".join(f"{100 * a:.2f}%" for a in accs) + " | "
            else:
                head += f"{r['val_drop']:+.2f} | {r['test_drop']:+.2f} | {r['openvino_test_drop']:+.2f} | "
            cells = " | ".join(f"{r['latency_ratio'][k]:.2f}x" for k in keys)
            took = "-" if r["seconds"] is None else f"{r['seconds']:.0f} s"
            lines.append(head + cells + f" | {took} | {r['bytes'] / 1e6:.1f} |")
        lines.append("")
    return "\n".join(lines)


def run_calibration_suite(args) -> list[dict]:
    """The calibration suite on the runs named by ``--run``, else on the digits and photo crops fine-tuned here."""
    from edgetransfer.rundir import RunDir

    sys.path.insert(0, str(Path(__file__).parent))
    from datasets import photo_crops

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        named = dict(item.split("=", 1) for item in args.run)
        if not named:
            for name, data in (("digits", materialize_digits()), ("photo-crops", photo_crops(work / "photos"))):
                config = FinetuneConfig(data=str(data), out=str(work / name), size=args.size, epochs=args.epochs)
                named[name] = finetune(config).path
        for name, folder in named.items():
            rows += calibration_suite(name, RunDir(Path(folder)), work, rounds=args.rounds, runs=args.runs)
    return rows


def calibration_main(args, started: float) -> None:
    rows = run_calibration_suite(args)
    meta = {
        "machine": machine_info(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "wall_s": time.perf_counter() - started,
    }
    text = calibration_markdown(rows, meta)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(text)

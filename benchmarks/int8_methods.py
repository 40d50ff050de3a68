"""Compare int8 methods on two datasets: top-1 drop vs fp32, model size, CPU latency relative to fp32 ONNX Runtime.

Fine-tunes MobileNetV2 (ImageNet weights, offline) once per dataset — the built-in digits and a generated
10-class "shapes" set — exports fp32 ONNX, then quantizes it with each method:

- ORT per-tensor minmax (ONNX Runtime's default weight granularity), ORT per-channel minmax / entropy / percentile
- NNCF (OpenVINO IR, default PTQ with fast bias correction)
- accuracy-aware ORT (the export default: per-channel minmax; and from per-tensor minmax): layers kept in float
  until the 0.5-point validation budget holds

Latency: batch 1, 1 thread and all cores, measured in interleaved rounds in one process so every ratio compares
numbers taken side by side. Run it on a quiet machine:

    .venv/bin/python benchmarks/int8_methods.py --out benchmarks/results/int8_methods.md

``--suite calibration`` compares post-training calibrations with no layer in float, side by side on fine-tuned runs
(``--run NAME=DIR`` reuses one; else the digits and a photo-crop set are fine-tuned here): ONNX Runtime's
``quantize_static`` (per-channel; uint8 asymmetric or int8 symmetric activations; reduce_range) against NNCF's
``nncf.quantize`` on the same ONNX graph (fast or full bias correction; symmetric or asymmetric activations). Every
int8 model is one QDQ ONNX file, scored and timed in ONNX Runtime and in OpenVINO against the same engine's fp32:

    .venv/bin/python benchmarks/int8_methods.py --suite calibration --run digits=/tmp/qat_run --out /tmp/calib.md

(the suite's code: ``benchmarks/int8_calibration.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgetransfer.backends.base import LoadOptions
from edgetransfer.backends.openvino import compile_model
from edgetransfer.backends.ort import _OrtSession, ort_session
from edgetransfer.builtin_data import materialize_digits
from edgetransfer.data import load_splits
from edgetransfer.evaluation import top1
from edgetransfer.export import ExportConfig, export
from edgetransfer.finetune import FinetuneConfig, finetune
from edgetransfer.machine import machine_info, usable_cores
from edgetransfer.quantize import Int8Config, calibration_subset, prepare, quantize_accuracy_aware, quantize_static
from edgetransfer.quantize_openvino import nncf_quantize


def make_shapes(root: Path, per_class: int = 80, size: int = 64, seed: int = 0) -> Path:
    """10 classes of drawn shapes (circle, square, triangle, cross, ring, bars, ...) with random colour, position,
    scale and background noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    kinds = ["circle", "square", "triangle", "cross", "ring", "hbars", "vbars", "diamond", "dots", "star"]
    for kind in kinds:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            img = Image.fromarray(bg)
            draw = ImageDraw.Draw(img)
            color = tuple(int(c) for c in rng.integers(120, 256, 3))
            r = int(rng.integers(size // 6, size // 3))
            cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
            box = (cx - r, cy - r, cx + r, cy + r)
            if kind == "circle":
                draw.ellipse(box, fill=color)
            elif kind == "square":
                draw.rectangle(box, fill=color)
            elif kind == "triangle":
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
            elif kind == "cross":
                draw.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=color)
                draw.rectangle((cx - r // 4, cy - r, cx + r // 4, cy + r), fill=color)
            elif kind == "ring":
                draw.ellipse(box, outline=color, width=max(2, r // 3))
            elif kind == "hbars":
                for k in range(-r, r, max(3, r // 2)):
                    draw.rectangle((cx - r, cy + k, cx + r, cy + k + max(1, r // 5)), fill=color)
            elif kind == "vbars":
                for k in range(-r, r, max(3, r // 2)):
                    draw.rectangle((cx + k, cy - r, cx + k + max(1, r // 5), cy + r), fill=color)
            elif kind == "diamond":
                draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
            elif kind == "dots":
                for _ in range(6):
                    x, y = (int(v) for v in rng.integers(-r, r, 2))
                    draw.ellipse((cx + x - 3, cy + y - 3, cx + x + 3, cy + y + 3), fill=color)
            else:  # star
                pts = []
                for k in range(10):
                    rad = r if k % 2 == 0 else r // 2
                    ang = np.pi / 5 * k - np.pi / 2
                    pts.append((cx + rad * np.cos(ang), cy + rad * np.sin(ang)))
                draw.polygon(pts, fill=color)
            noise = rng.normal(0, 12, (size, size, 3))
            pixels = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def latency(sessions: dict, images: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    """Median ms per variant, measured in interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        for _ in range(10):
            session.run(images)
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                session.run(images)
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def evaluate_dataset(name: str, data: Path, work: Path, *, size: int, epochs: int, rounds: int, runs: int) -> list:
    run = finetune(FinetuneConfig(data=str(data), out=str(work / name), size=size, epochs=epochs, overwrite=True))
    export(run, ExportConfig(int8=Int8Config(mode="none"), openvino=False))
    card = run.load_card()
    pre = card.preprocessing
    splits = load_splits(card.dataset["path"], seed=card.dataset["seed"])
    fp32_path = run.file("model.onnx")
    prepared = work / f"{name}.prepared.onnx"
    prepare(fp32_path, prepared)
    calibration = calibration_subset(splits.train, Int8Config())
    fp32_ort = _OrtSession(ort_session(fp32_path), "fp32")
    fp32_test = top1(fp32_ort, splits.test, pre)
    fp32_val = top1(fp32_ort, splits.val, pre)

    files: dict[str, Path] = {}
    notes: dict[str, str] = {}
    ort_methods = {
        "ORT per-tensor minmax": Int8Config(per_channel=False),
        "ORT per-channel minmax": Int8Config(),
        "ORT per-channel entropy": Int8Config(method="entropy"),
        "ORT per-channel percentile": Int8Config(method="percentile"),
    }
    for label, config in ort_methods.items():
        files[label] = work / f"{name}.{len(files)}.onnx"
        t0 = time.perf_counter()
        quantize_static(prepared, files[label], calibration, pre, config)
        notes[label] = f"{time.perf_counter() - t0:.0f}s"
    for label, config in {
        "accuracy-aware ORT (per-channel: the export default)": Int8Config(),
        "accuracy-aware ORT (per-tensor start)": Int8Config(per_channel=False),
    }.items():
        files[label] = work / f"{name}.aa{len(files)}.onnx"
        t0 = time.perf_counter()
        try:
            record = quantize_accuracy_aware(
                prepared,
                files[label],
                calibration,
                splits.val,
                pre,
                config,
                fp32_accuracy=fp32_val,
                accuracy=lambda p: top1(_OrtSession(ort_session(p), "int8"), splits.val, pre),
            )
            notes[label] = f"{time.perf_counter() - t0:.0f}s, {len(record['kept_in_float'])} layers in float"
        except Exception as exc:  # noqa: BLE001 - reported in the table
            notes[label] = f"failed: {exc}"
            files.pop(label)

    import openvino as ov

    ov_fp32 = ov.convert_model(str(fp32_path))
    t0 = time.perf_counter()
    ov_int8 = nncf_quantize(ov_fp32, calibration, pre)
    notes["NNCF (OpenVINO IR)"] = f"{time.perf_counter() - t0:.0f}s"
    ov_path = work / f"{name}.nncf.xml"
    ov.save_model(ov_int8, str(ov_path))

    rows = []
    sample = next(iter(load_batches(splits.test, pre)))
    for threads in (1, usable_cores()):
        sessions = {"fp32 ONNX Runtime": _OrtSession(ort_session(fp32_path, threads=threads), "fp32")}
        sessions |= {k: _OrtSession(ort_session(p, threads=threads), "int8") for k, p in files.items()}
        sessions["NNCF (OpenVINO IR)"] = compile_model(ov_path, LoadOptions(threads=threads, batch=1), int8=True)
        # compile_model reshapes the model it is given: hand it a copy
        sessions["fp32 OpenVINO (f32)"] = compile_model(
            ov_fp32.clone(), LoadOptions(threads=threads, batch=1, precision="fp32")
        )
        medians = latency(sessions, sample, rounds, runs)
        for key, ms in medians.items():
            rows.append(
                {
                    "dataset": name,
                    "method": key,
                    "threads": threads,
                    "ms": ms,
                    "ratio": ms / medians["fp32 ONNX Runtime"],
                }
            )
    acc = {"fp32 ONNX Runtime": fp32_test}
    sizes = {"fp32 ONNX Runtime": fp32_path.stat().st_size}
    for key, path in files.items():
        acc[key] = top1(_OrtSession(ort_session(path), "int8"), splits.test, pre)
        sizes[key] = path.stat().st_size
    # scored as it was timed (OpenVINO's own precision for the layers left in float: bf16 on a CPU with AVX-512 BF16
    # or AMX); it was scored with them in f32 while timed in bf16, one row from two configurations
    acc["NNCF (OpenVINO IR)"] = top1(compile_model(ov_path, LoadOptions(), int8=True), splits.test, pre)
    sizes["NNCF (OpenVINO IR)"] = ov_path.stat().st_size + ov_path.with_suffix(".bin").stat().st_size
    acc["fp32 OpenVINO (f32)"] = top1(compile_model(ov_fp32, LoadOptions(precision="fp32")), splits.test, pre)
    sizes["fp32 OpenVINO (f32)"] = sizes["fp32 ONNX Runtime"]
    for key, note in notes.items():
        if note.startswith("failed"):
            for threads in sorted({r["threads"] for r in rows}):
                rows.append({"dataset": name, "method": key, "threads": threads, "ms": None, "ratio": None})
            acc[key], sizes[key] = None, None
    for row in rows:
        row.update(
            test_top1=acc[row["method"]],
            drop=None if acc[row["method"]] is None else 100 * (fp32_test - acc[row["method"]]),
            bytes=sizes[row["method"]],
            note=notes.get(row["method"], ""),
            test_images=len(splits.test),
        )
    return rows


def load_batches(samples, pre):
    from edgetransfer.data import batches

    for images, _ in batches(samples[:1], pre):
        yield images[:1]


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"flags {', '.join(meta['machine']['flags'])}.",
        f"Command: `{meta['command']}`; wall time {meta['wall_s']:.0f} s.",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == dataset]
        threads = sorted({r["threads"] for r in sub})
        lines += [f"### {dataset} ({sub[0]['test_images']} test images)", ""]
        header = (
            "| method | test top-1 | drop (points) | size MB | "
            + " | ".join(f"latency vs fp32 ORT, {t} thread{'s' if t > 1 else ''} (ms)" for t in threads)
            + " | note |"
        )
        lines += [header, "|" + "---|" * (5 + len(threads))]
        for method in dict.fromkeys(r["method"] for r in sub):
            per = {r["threads"]: r for r in sub if r["method"] == method}
            first = per[threads[0]]
            if first["ms"] is None:
                lines.append(f"| {method} | - | - | - | " + " | ".join("-" for _ in threads) + f" | {first['note']} |")
                continue
            cells = " | ".join(f"{per[t]['ratio']:.2f}× ({per[t]['ms']:.2f})" for t in threads)
            lines.append(
                f"| {method} | {100 * first['test_top1']:.2f}% | {first['drop']:+.2f} | "
                f"{first['bytes'] / 1e6:.1f} | {cells} | {first['note']} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_results(out: Path, rows: list[dict], started: float, markdown) -> None:
    """``out`` (the table ``markdown(rows, meta)`` makes) and ``out``.json (meta and rows), printed too."""
    import os
    import sys

    meta = {
        "machine": machine_info(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "wall_s": time.perf_counter() - started,
    }
    text = markdown(rows, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(text)


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_methods.md"))
    parser.add_argument("--suite", choices=["methods", "calibration"], default="methods")
    parser.add_argument("--run", action="append", default=[], help="calibration suite: NAME=RUN_DIR to reuse")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.suite == "calibration":  # in its own file: int8_calibration.py
        from int8_calibration import calibration_main

        calibration_main(args, started)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = evaluate_dataset(
            "digits", materialize_digits(), work, size=args.size, epochs=args.epochs, rounds=args.rounds, runs=args.runs
        )
        rows += evaluate_dataset(
            "shapes",
            make_shapes(work / "shapes-data"),
            work,
            size=args.size,
            epochs=args.epochs,
            rounds=args.rounds,
            runs=args.runs,
        )
    write_results(args.out, rows, started, markdown)


if __name__ == "__main__":
    main()

"""int8 kernels against int8 arithmetic on this CPU, with 8-bit and with 7-bit weights.

On an x86 CPU without VNNI (AVX2 only) ONNX Runtime multiplies uint8 activations by int8 weights and adds pairs of
products in 16 bits (VPMADDUBSW), which saturates with 8-bit weights (2 x 255 x 127 > 32767); 7-bit weights
(``reduce_range``) cannot. For each run given, the run's fp32 ONNX model is quantized both ways (the export's static
settings: per-channel weights, uint8 activations, min-max calibration with a moving average, the run's training
split), and each int8 model is scored on the validation and test splits twice: by ONNX Runtime's int8 kernels
(every optimization on, as deployed) and by the same model computed exactly (every optimization off: each
QuantizeLinear/DequantizeLinear pair in float). On a CPU with VNNI the two agree to rounding.

    .venv/bin/python benchmarks/int8_overflow.py RUN [RUN ...] --out benchmarks/results/int8_overflow.md
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def scores(path: Path, images: np.ndarray, exact: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    levels = ort.GraphOptimizationLevel
    options.graph_optimization_level = levels.ORT_DISABLE_ALL if exact else levels.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i : i + 64]})[0] for i in range(0, len(images), 64)])


def one_run(folder: Path) -> list[str]:
    from edgetransfer import runtime
    from edgetransfer.quantize import Int8Config, calibration_subset, prepare, quantize_static
    from edgetransfer.rundir import RunDir

    run = RunDir.open(folder)
    card = run.load_card()
    splits = run.load_splits(card)
    pre = card.preprocessing
    calibration = calibration_subset(splits.train, Int8Config())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        prepare(run.file("model.onnx"), prepared)
        models = {}
        for bits in (8, 7):
            models[bits] = Path(tmp) / f"int8-{bits}.onnx"
            quantize_static(prepared, models[bits], calibration, pre, Int8Config(weights=f"{bits}bit"))
        for split in ("val", "test"):
            samples = getattr(splits, split)
            images = runtime.preprocess([s.path for s in samples], pre)
            labels = np.array([s.label for s in samples])
            fp32 = (scores(run.file("model.onnx"), images, False).argmax(1) == labels).mean()
            cells = [
                f"{folder.name} ({Path(card.dataset['path']).name}, {card.backbone})",
                split,
                str(len(samples)),
                f"{100 * fp32:.2f}",
            ]
            for bits in (8, 7):
                kernels = scores(models[bits], images, False).argmax(1)
                exact = scores(models[bits], images, True).argmax(1)
                cells += [
                    f"{100 * (kernels == labels).mean():.2f}",
                    f"{100 * (exact == labels).mean():.2f}",
                    str(int((kernels != exact).sum())),
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="exported run folders")
    parser.add_argument("--out", type=Path, help="append the Markdown table here")
    args = parser.parse_args()
    from edgetransfer.machine import int8_overflows, machine_info

    info = machine_info()
    header = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {info['cpu']} ({platform.machine()}: "
        f"{', '.join(info['flags']) or 'no listed flags'}; int8 overflow possible: {int8_overflows()})",
        "",
        "| run | split | images | fp32 top-1 % | 8-bit: kernels % | 8-bit: exact % | 8-bit: top-1 changed by "
        "the kernels | 7-bit: kernels % | 7-bit: exact % | 7-bit: top-1 changed by the kernels |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = header + [line for run in args.runs for line in one_run(run)]
    print("\n".join(lines))
    if args.out:
        with args.out.open("a") as out:
            out.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()

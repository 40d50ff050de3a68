"""The four offline backbones side by side: parameters, ImageNet top-5 on two real photos, fp32 ONNX Runtime latency
relative to MobileNetV2, each at its own input size, measured in one run.

    .venv/bin/python benchmarks/backbone_ladder.py --out benchmarks/results/backbone_ladder.md

Latency: batch 1, fp32 ONNX (the 1000-class ImageNet model, exported and simplified as ``export`` does), ONNX
Runtime at 1 thread, in interleaved rounds (every model once per round, the order rotated) so each ratio compares
numbers taken side by side; the ratio is of medians. Absolute times are not reported: on a shared machine they say
little.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LADDER = ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
PHOTOS = {"chelsea": "cat (281-285)", "coffee": "coffee mug 504 / espresso 967 / cup 968"}


def imagenet_model(name: str):
    from edgetransfer import backbones

    spec = backbones.get(name)
    state, _ = backbones.load_pretrained(spec)
    model = spec.make_model()
    model.load_state_dict(state)
    return spec, model.eval()


def top5(spec, model, photo: str) -> list[tuple[int, float]]:
    import skimage.data
    import torch
    from PIL import Image

    from edgetransfer.data import default_preprocessing, eval_transform

    pre = default_preprocessing(spec.input_size, mean=spec.mean, std=spec.std)
    x = eval_transform(pre)(Image.fromarray(getattr(skimage.data, photo)()))[None]
    with torch.no_grad():
        top = model(x).softmax(1)[0].topk(5)
    return list(zip(top.indices.tolist(), top.values.tolist(), strict=True))


def latency_ratios(paths: dict[str, tuple[Path, int]], *, rounds: int, runs: int) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    sessions = {name: ort.InferenceSession(str(p), options, providers=cpu) for name, (p, _) in paths.items()}
    inputs = {name: np.random.default_rng(0).random((1, 3, s, s), dtype=np.float32) for name, (_, s) in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for name in names:  # warm-up
        for _ in range(5):
            sessions[name].run(None, {"input": inputs[name]})
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(runs):
                sessions[name].run(None, {"input": inputs[name]})
            times[name].append((time.perf_counter() - start) / runs)
    base = statistics.median(times[LADDER[0]])
    return {name: statistics.median(t) / base for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/backbone_ladder.md"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    import torchvision

    from edgetransfer.machine import machine_info
    from edgetransfer.onnx_convert import simplify, torch_to_onnx

    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    rows, preds, paths = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LADDER:
            spec, model = imagenet_model(name)
            params = sum(p.numel() for p in model.parameters())
            path = Path(tmp) / f"{name}.onnx"
            torch_to_onnx(model, spec.input_size, path, 17)
            simplify(path)
            paths[name] = (path, spec.input_size)
            rows.append((name, spec.input_size, params, path.stat().st_size))
            for photo in PHOTOS:
                preds.append((name, photo, top5(spec, model, photo)))
        ratios = latency_ratios(paths, rounds=args.rounds, runs=args.runs)

    info = machine_info()
    lines = [
        "# Offline backbone ladder",
        "",
        f"`benchmarks/backbone_ladder.py`, one run on {info.get('cpu', 'this CPU')} (shared machine; ratios only).",
        "fp32 ONNX (1000-class ImageNet heads), ONNX Runtime, batch 1, 1 thread, "
        f"{args.rounds} interleaved rounds of {args.runs} runs; ratio of medians to MobileNetV2.",
        "",
        "| backbone | input | parameters | fp32 ONNX size | fp32 ORT latency vs MobileNetV2 |",
        "|---|---|---|---|---|",
    ]
    for name, size, params, nbytes in rows:
        lines.append(f"| {name} | {size} px | {params / 1e6:.2f} M | {nbytes / 2**20:.1f} MiB | {ratios[name]:.2f}x |")
    lines += ["", "## ImageNet top-5 on two real photos (scikit-image's `chelsea` and `coffee`)", ""]
    lines += ["| backbone | photo (expected) | top-5 (class index, name, probability) |", "|---|---|---|"]
    for name, photo, top in preds:
        shown = "; ".join(f"{i} {categories[i]} {p:.3f}" for i, p in top)
        lines.append(f"| {name} | {photo} ({PHOTOS[photo]}) | {shown} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Fine-tuning benchmark: the tool's default recipe vs a careful hand-written PyTorch loop, and domain adaptation.

1. Recipe vs hand loop, on the built-in digits and on generated shapes (benchmarks/int8_methods.make_shapes):
   MobileNetV2 (ImageNet, offline), 96 px, the same number of epochs for both; test top-1, wall time, images/s.
   The hand loop is what a careful engineer writes: full fine-tune, AdamW, one-cycle LR, label smoothing,
   random resized crops.
2. Domain adaptation on digits: the test and val images as a cheap camera sees them (low light, blur, sensor
   noise). Target test top-1 for: source-only; AdaBN on the unlabelled shifted test images; AdaBN + our
   self-training (per-domain BatchNorm statistics, guarded by the shifted val split); and AdaBN + naive
   self-training (mixed source/target batches through the same BatchNorm layers), for comparison.

    .venv/bin/python benchmarks/finetune_recipes.py --out benchmarks/results/finetune.md
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).parent))
from int8_methods import make_shapes  # noqa: E402

from edgetransfer import backbones  # noqa: E402
from edgetransfer.adapt import SelfTrainConfig, _cycle, _loader, adapt_bn, pseudo_labels, self_train  # noqa: E402
from edgetransfer.builtin_data import materialize_digits  # noqa: E402
from edgetransfer.checkpoint import evaluate, load_model  # noqa: E402
from edgetransfer.data import ImageDataset, Sample, default_preprocessing, load_splits, train_transform  # noqa: E402
from edgetransfer.finetune import FinetuneConfig, finetune  # noqa: E402
from edgetransfer.machine import machine_info  # noqa: E402


def hand_loop(data: Path, size: int, epochs: int, seed: int = 0) -> dict:
    """Full fine-tune, AdamW 1e-3, one-cycle, label smoothing 0.1, random resized crops, batch 32."""
    torch.manual_seed(seed)
    splits = load_splits(data, seed=seed)
    model, _ = backbones.build("mobilenet_v2", len(splits.labels))
    pre = default_preprocessing(size)
    loader = torch.utils.data.DataLoader(
        ImageDataset(splits.train, train_transform(pre, augment="light")),
        batch_size=32,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=epochs * len(loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    started, seen, best, best_state = time.perf_counter(), 0, -1.0, None
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(labels)
        val = evaluate(model, splits.val, pre, "cpu")
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    return {"test_top1": evaluate(model, splits.test, pre, "cpu"), "seconds": seconds, "images_per_s": seen / seconds}


def recipe(data: Path, out: Path, size: int, epochs: int, seed: int = 0) -> dict:
    started = time.perf_counter()
    config = FinetuneConfig(data=str(data), out=str(out), size=size, epochs=epochs, seed=seed, overwrite=True)
    run = finetune(config)
    seconds = time.perf_counter() - started
    card = run.load_card()
    history = card.training["history"]
    seen = len(history) * card.dataset["sizes"]["train"]
    return {"test_top1": card.metrics["torch"]["test_top1"], "seconds": seconds, "images_per_s": seen / seconds}


def camera(samples: tuple[Sample, ...], root: Path, seed: int) -> tuple[Sample, ...]:
    """The images as a cheap camera at night sees them: upscaled, blurred, dark, noisy."""
    rng = np.random.default_rng(seed)
    shifted = []
    for sample in samples:
        img = Image.open(sample.path).convert("RGB").resize((32, 32), Image.BILINEAR)
        pixels = np.asarray(img.filter(ImageFilter.GaussianBlur(1.2)), np.float32) * 0.35 + 10
        pixels += rng.normal(0, 18, pixels.shape)
        folder = root / str(sample.label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / sample.path.name)
        shifted.append(Sample(folder / sample.path.name, sample.label))
    return tuple(shifted)


def naive_self_train(model, source, target, pre, rounds=2, threshold=0.9, lam=0.5, lr=9e-5) -> None:
    """Pseudo-labels with source and target batches through the same (training-mode) BatchNorm layers."""
    loss_fn = torch.nn.CrossEntropyLoss()
    for round_index in range(rounds):
        labelled = pseudo_labels(model, target, pre, "cpu", threshold)
        if not labelled:
            continue
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        src = _loader(source, train_transform(pre), 32, shuffle=True, seed=round_index)
        tgt = _loader(labelled, train_transform(pre), 32, shuffle=True, seed=round_index + 1)
        model.train()
        for (xs, ys), (xt, yt) in zip(src, _cycle(tgt), strict=False):
            loss = lam * loss_fn(model(xs), ys) + (1 - lam) * loss_fn(model(xt), yt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()


def adaptation(run_dir: Path, work: Path) -> dict:
    from edgetransfer.rundir import RunDir

    run = RunDir.open(run_dir)
    card = run.load_card()
    pre = card.preprocessing
    splits = load_splits(card.dataset["path"], seed=card.dataset["seed"])
    target_test = camera(splits.test, work / "shifted-test", 1)
    target_val = camera(splits.val, work / "shifted-val", 2)
    results = {}
    model = load_model(run, card)
    results["source-only"] = (evaluate(model, target_test, pre, "cpu"), evaluate(model, splits.test, pre, "cpu"))
    adapt_bn(model, target_test, pre, "cpu")
    results["+ AdaBN"] = (evaluate(model, target_test, pre, "cpu"), None)
    adabn_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    self_train(
        model,
        splits.train,
        target_test,
        pre,
        "cpu",
        SelfTrainConfig(lr=9e-5),
        evaluate_target=lambda m: evaluate(m, target_val, pre, "cpu"),
    )
    results["+ AdaBN + self-training (per-domain BN, ours)"] = (evaluate(model, target_test, pre, "cpu"), None)
    ours_seconds = time.perf_counter() - started
    model.load_state_dict(adabn_state)
    naive_self_train(model, splits.train, target_test, pre)
    results["+ AdaBN + naive self-training (shared BN)"] = (
        evaluate(model, target_test, pre, "cpu"),
        evaluate(model, splits.test, pre, "cpu"),
    )
    return {"results": results, "self_training_seconds": ours_seconds, "target_images": len(target_test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2", help="each loop runs once per seed (data split and init)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune.md"))
    args = parser.parse_args()
    lines = [
        f"Machine: {machine_info()['cpu']}, {machine_info()['cores']} cores. "
        f"MobileNetV2, {args.size} px, {args.epochs} epochs each, seeds {args.seeds} (the seed also draws the "
        "train/val/test split); figures are means over the seeds, each seed's top-1 in brackets.",
        "",
    ]
    raw: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        datasets = {"digits": materialize_digits(), "shapes": make_shapes(work / "shapes")}
        lines += ["| dataset | loop | test top-1 | wall time (s) | images/s |", "|---|---|---|---|---|"]
        seeds = [int(s) for s in args.seeds.split(",")]
        for name, data in datasets.items():
            raw[name] = {"edgetransfer default recipe": [], "hand-written loop": []}
            for seed in seeds:  # the two loops alternate, so a change in machine load hits both
                ours = recipe(data, work / f"run-{name}-{seed}", args.size, args.epochs, seed)
                raw[name]["edgetransfer default recipe"].append(ours)
                raw[name]["hand-written loop"].append(hand_loop(data, args.size, args.epochs, seed))
            for label, runs in raw[name].items():
                top1 = [100 * r["test_top1"] for r in runs]
                each = ", ".join(f"{t:.2f}" for t in top1)
                seconds = float(np.mean([r["seconds"] for r in runs]))
                speed = float(np.mean([r["images_per_s"] for r in runs]))
                lines.append(f"| {name} | {label} | {np.mean(top1):.2f}% ({each}) | {seconds:.1f} | {speed:.0f} |")
        adapt = adaptation(work / f"run-digits-{seeds[0]}", work)
        raw["adaptation"] = adapt
        lines += [
            "",
            f"Domain adaptation (digits; target = {adapt['target_images']} shifted test images):",
            "",
            "| method | target test top-1 | clean test top-1 |",
            "|---|---|---|",
        ]
        for label, (target, clean) in adapt["results"].items():
            clean_text = "-" if clean is None else f"{100 * clean:.2f}%"
            lines.append(f"| {label} | {100 * target:.2f}% | {clean_text} |")
        lines.append(f"\nSelf-training took {adapt['self_training_seconds']:.0f} s.")
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    print(text)


if __name__ == "__main__":
    main()

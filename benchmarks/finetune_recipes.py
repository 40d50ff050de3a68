"""Fine-tuning benchmark: the default recipe of ``edgetransfer finetune`` vs a careful hand-written PyTorch loop, on
the eight sets of benchmarks/datasets.py (SUITE), half of which chose the defaults ("choose") and half of which
only report on them ("report").

The hand loop (as issue 15 describes it): MobileNetV2 (ImageNet, offline), full fine-tune, AdamW lr 1e-3 weight
decay 1e-4, one-cycle to 2e-3, label smoothing 0.1, horizontal flips, batch 32, 3 epochs, images decoded by a
DataLoader every epoch, float32; the final model is tested. Ours is the whole command, as a user runs it
(``edgetransfer finetune --data DIR --size S --seed N``, a fresh process: import, scan, decode, train, test,
card, plots). Each arm runs in its own process, the arms alternate (their order swaps every seed), so a change in
machine load hits both; the process CPU seconds are recorded beside the wall time, because other jobs share the
CPU. Results are written after every run.

    .venv/bin/python benchmarks/finetune_recipes.py --half all --seeds 0,1 --out benchmarks/results/finetune_recipes.md
    .venv/bin/python benchmarks/finetune_recipes.py --half choose --variant hflip=--hflip --variant nohflip=--no-hflip
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))


def hand_loop(data: Path, size: int, seed: int, epochs: int = 3) -> dict:
    """The hand-written loop; its training time excludes imports and the folder scan."""
    import torch
    from torchvision.transforms import v2

    from edgetransfer import backbones
    from edgetransfer.checkpoint import evaluate
    from edgetransfer.data import ImageDataset, default_preprocessing, load_splits

    torch.manual_seed(seed)
    splits = load_splits(data, seed=seed)
    model, _ = backbones.build("mobilenet_v2", len(splits.labels))
    pre = default_preprocessing(size)
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)),
        ]
    )
    loader = torch.utils.data.DataLoader(
        ImageDataset(splits.train, transform),
        batch_size=32,
        shuffle=True,
        drop_last=len(splits.train) > 32,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * len(loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(labels)
    seconds = time.perf_counter() - started
    return {
        "test_top1": evaluate(model, splits.test, pre, "cpu"),
        "train_seconds": seconds,
        "images_per_s": seen / seconds,
        "epochs": epochs,
    }


def _timed(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result, wall, cpu


def run_ours(data: Path, out: Path, size: int, seed: int, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "edgetransfer", "finetune", "--data", str(data), "--out", str(out)]
    command += ["--size", str(size), "--seed", str(seed), "--overwrite", *extra]
    result, wall, cpu = _timed(command)
    card = json.loads((out / "card.json").read_text())
    history = card["training"]["history"]
    return {
        "test_top1": card["metrics"]["torch"]["test_top1"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "train_seconds": card["training"].get("training_seconds"),
        # every epoch sees as many images: their time-weighted rate (total images / total seconds, the hand
        # loop's measure) is the harmonic mean; the plain mean let a fast head-only epoch count as much as a slow one
        "images_per_s": _harmonic([h["images_per_s"] for h in history]),
        "body_images_per_s": _harmonic([h["images_per_s"] for h in history if h.get("phase") == "body"]),
        "epochs": len(history),
        "stopped": card["training"].get("stopped"),
        "log": [line for line in result.stderr.splitlines() if line.startswith(("fine-tuning", "epoch", "best"))],
    }


def run_hand(data: Path, size: int, seed: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        command = [sys.executable, __file__, "--hand", str(data), "--size", str(size), "--seed", str(seed)]
        _, wall, cpu = _timed([*command, "--json", tmp.name])
        record = json.loads(Path(tmp.name).read_text())
    return {**record, "wall_seconds": wall, "cpu_seconds": cpu}


def camera(samples, labels, root: Path, seed: int) -> Path:
    """``samples`` as a cheap camera at night sees them (blurred, dark, noisy), as ``root/<class>/`` images."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    for sample in samples:
        img = Image.open(sample.path).convert("RGB")
        pixels = np.asarray(img.filter(ImageFilter.GaussianBlur(1.2)), np.float32) * 0.35 + 10
        pixels += rng.normal(0, 18, pixels.shape)
        folder = root / labels[sample.label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / (sample.path.stem + ".png"))
    return root


def adaptation(data: Path, work: Path, size: int) -> dict:
    """Fine-tune with the defaults, then AdaBN + self-training on the shifted test images (unlabelled), guarded
    and measured on the shifted validation images: the card's adaptation record."""
    from edgetransfer.data import load_splits

    splits = load_splits(data, seed=0)
    target = camera(splits.test, splits.labels, work / "shifted-test", 1)
    target_val = camera(splits.val, splits.labels, work / "shifted-val", 2)
    flags = ["--adapt-bn", str(target), "--unlabeled", str(target), "--target-val", str(target_val)]
    result = run_ours(data, work / "run", size, 0, flags)
    card = json.loads((work / "run" / "card.json").read_text())
    return {
        **card["training"]["adaptation"],
        "clean_test_top1_after": result["test_top1"],
        "wall": result["wall_seconds"],
    }


def _harmonic(rates) -> float:
    rates = [r for r in rates if r]
    return len(rates) / sum(1.0 / r for r in rates) if rates else float("nan")


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


# The halves no default was chosen on. Run 14 chose its batch-size rule on the test figures of every set seen
# before it (report, fresh, fresh2 and fresh3 among them): from then on fresh4 is held out; fresh5 (run 15) was too
# until run 16 chose its early-stopping change on it; fresh6 (run 16), fresh7 (run 19) and fresh8 (run 20) chose
# nothing.
HELD_OUT = ("fresh4", "fresh6", "fresh7", "fresh8")


def half_of(name: str, asked: str) -> str:
    """A set's half in this run: its own (datasets.SUITE), except that ``--half choose-mid`` chooses on
    RUN12_CHOOSE, two of which were run 11's fresh sets."""
    from datasets import RUN12_CHOOSE, SUITE

    return "choose-mid" if asked == "choose-mid" and name in RUN12_CHOOSE else SUITE[name][1]


def report(raw: dict, args, machine: str) -> str:

    lines = [
        "# Fine-tuning defaults vs a hand-written loop",
        "",
        f"Machine: {machine}. Command: `{' '.join(sys.argv)}`. Seeds {args.seeds} (the seed also draws the split, "
        "except for sets with their own train/val/test folders, such as low-shot's); "
        f"every run at --size {args.size}. The CPU is shared with other jobs (load average at the start: "
        f"{raw.get('_load', '?')}): wall times and images/s are noisy; CPU seconds beside them. **held out** marks "
        "the sets the defaults were not chosen on.",
        "",
        "| set | half | arm | test top-1 per seed | mean | epochs | command wall s | hand train s | "
        "wall / hand train | img/s | img/s ratio | body-epoch img/s ratio | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict = {}
    for name, arms in raw.items():
        if name.startswith("_"):
            continue
        half = half_of(name, args.half)
        hand = arms.get("hand", [])
        hand_top1 = _mean([r["test_top1"] for r in hand])
        hand_train = _mean([r["train_seconds"] for r in hand])
        hand_speed = _mean([r["images_per_s"] for r in hand])
        for arm, runs in arms.items():
            if not runs:
                continue
            top1 = _mean([r["test_top1"] for r in runs])
            wall = _mean([r["wall_seconds"] for r in runs])
            speed = _mean([r["images_per_s"] for r in runs])
            each = ", ".join(f"{100 * r['test_top1']:.1f}" for r in runs)
            ratio_wall = wall / hand_train if arm != "hand" and hand else float("nan")
            ratio_speed = speed / hand_speed if arm != "hand" and hand else float("nan")
            # the epochs in which the body learns (all of the hand loop's): the fair speed comparison
            body = _mean([r.get("body_images_per_s", float("nan")) for r in runs])
            ratio_body = body / hand_speed if arm != "hand" and hand else float("nan")
            label = f"{half} (**held out**)" if half in HELD_OUT else half
            lines.append(
                f"| {name} | {label} | {arm} | {each} | {100 * top1:.1f}% | {_mean([r['epochs'] for r in runs]):.1f} "
                f"| {wall:.0f} | {hand_train:.0f} | {ratio_wall:.2f} | {speed:.0f} | {ratio_speed:.2f} "
                f"| {ratio_body:.2f} | {_mean([r['cpu_seconds'] for r in runs]):.0f} |"
            )
            if arm != "hand" and hand:
                summary.setdefault((half, arm), []).append(
                    (100 * (top1 - hand_top1), ratio_wall, ratio_speed, ratio_body)
                )
    lines += [
        "",
        "Per half, against the hand loop (targets on the held-out half: mean top-1 >= hand + 1.0 point, "
        "no set below hand by more than 0.5 point, command wall <= 1.0x the hand loop's training time, "
        "training img/s >= 1.5x):",
        "",
        "| half | arm | sets | mean top-1 gain (points) | worst set (points) | mean wall / hand train | "
        "mean img/s ratio | mean body-epoch img/s ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (half, arm), rows in sorted(summary.items()):
        gains = [row[0] for row in rows]
        held_out = " (held out)" if half in HELD_OUT else ""
        lines.append(
            f"| {half}{held_out} | {arm} | {len(rows)} | {_mean(gains):+.1f} "
            f"| {min(gains):+.1f} | {_mean([row[1] for row in rows]):.2f} | {_mean([row[2] for row in rows]):.2f} "
            f"| {_mean([row[3] for row in rows]):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hand", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--half",
        choices=[
            "choose",
            "report",
            "scale",
            "fresh",
            "choose-mid",
            "fresh2",
            "fresh3",
            "fresh4",
            "fresh5",
            "fresh6",
            "fresh7",
            "fresh8",
            "all",
        ],
        default="all",
    )
    parser.add_argument("--sets", default="", help="comma-separated names from benchmarks/datasets.SUITE")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fp32-sets", default="", help="sets where the default recipe also runs with --amp off")
    parser.add_argument("--hand-sets", default="all", help="sets where the hand loop runs (all, or names)")
    parser.add_argument("--no-default", action="store_true", help="run only the --variant arms (and the hand loop)")
    parser.add_argument("--merge", type=Path, nargs="*", help="write one report from these results .json files")
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: an arm's name in --merge")
    parser.add_argument("--adaptation", default="", help="comma-separated sets: re-measure AdaBN + self-training")
    parser.add_argument("--variant", action="append", default=[], help="NAME=--flag,value,... an extra arm")
    parser.add_argument("--data-root", type=Path, default=Path(tempfile.gettempdir()) / "edgetransfer-suite")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_recipes.md"))
    args = parser.parse_args()
    if args.hand:
        args.json.write_text(json.dumps(hand_loop(args.hand, args.size, args.seed)))
        return
    if args.merge:
        from edgetransfer.machine import machine_info

        raw: dict = {"_load": []}
        rename = dict(pair.split("=", 1) for pair in args.rename)
        for path in args.merge:  # the runs of each set and arm, from every file, together
            for name, arms in json.loads(path.read_text()).items():
                if name == "_load":
                    raw["_load"].append(arms)
                    continue
                for arm, runs in arms.items():
                    raw.setdefault(name, {}).setdefault(rename.get(arm, arm), []).extend(runs)
        raw["_load"] = ", ".join(raw["_load"])
        info = machine_info()
        args.out.write_text(report(raw, args, f"{info['cpu']}, {info['cores']} cores"))
        print(args.out.read_text())
        return
    from datasets import SUITE, make_suite

    from edgetransfer.machine import machine_info

    info = machine_info()
    machine = f"{info['cpu']}, {info['cores']} cores"
    names = [
        n
        for n in SUITE
        if half_of(n, args.half) == args.half or (args.half == "all" and SUITE[n][1] in ("choose", "report"))
    ]
    names = [n for n in names if not args.sets or n in args.sets.split(",")]
    sets = make_suite(args.data_root, names=names)
    variants = {} if args.no_default else {"default": []}
    for spec in args.variant:
        label, _, flags = spec.partition("=")
        variants[label] = [f for f in flags.split(",") if f]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.adaptation:
        adapt_sets = make_suite(args.data_root, names=args.adaptation.split(","))
        lines = [
            "| set | target val: source-only | after AdaBN | after self-training | clean test after | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for name, data in adapt_sets.items():
            with tempfile.TemporaryDirectory() as tmp:
                r = adaptation(data, Path(tmp), args.size)
            lines.append(
                f"| {name} | {100 * r['target_val_top1_source_only']:.1f}% | {100 * r['target_val_top1_adabn']:.1f}% "
                f"| {100 * r.get('target_val_top1_final', float('nan')):.1f}% "
                f"| {100 * r['clean_test_top1_after']:.1f}% | {r['wall']:.0f} |"
            )
            print(lines[-1], flush=True)
            args.out.write_text("\n".join(lines) + "\n")
        return
    raw: dict = {"_load": f"{os.getloadavg()[0]:.1f}"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            with_hand = args.hand_sets == "all" or name in args.hand_sets.split(",")
            fp32 = name in args.fp32_sets.split(",")
            raw[name] = {**({"hand": []} if with_hand else {}), **{v: [] for v in variants}}
            base = "default" if "default" in variants else next(iter(variants), None)
            if fp32:
                raw[name][f"{base}, --amp off"] = []
            for seed in seeds:
                arms = [("hand", None)] if with_hand else []
                arms += list(variants.items())
                if fp32 and seed == seeds[0]:
                    arms.append((f"{base}, --amp off", [*variants[base], "--amp", "off"]))
                if seed % 2:
                    arms.reverse()  # alternate which arm goes first
                for arm, flags in arms:
                    if arm == "hand":
                        result = run_hand(sets[name], args.size, seed)
                    else:
                        result = run_ours(sets[name], Path(tmp) / f"{name}-{arm}-{seed}", args.size, seed, flags)
                    raw[name][arm].append(result)
                    print(
                        f"{name} seed {seed} {arm}: top-1 {100 * result['test_top1']:.1f}% "
                        f"wall {result['wall_seconds']:.0f}s img/s {result['images_per_s']:.0f}",
                        flush=True,
                    )
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(report(raw, args, machine))  # partial results as it goes
                    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()

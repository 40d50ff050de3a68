"""QAT's training recipe (issue 16): the run's own augmentation, horizontal flip and label smoothing (what
``--int8-method qat`` does since this script's commit) against the fixed recipe it used before (light
augmentation, no flip, no label smoothing, whatever the run trained with), side by side on the same fine-tuned
runs, QAT seeds 0 and 1. Per set: fp32 ONNX validation/test top-1 and each arm's int8 ONNX (ONNX Runtime) top-1
and drop; the same graph either way, so no latency is taken.

    .venv/bin/python benchmarks/qat_recipe.py --out benchmarks/results/qat_recipe.md

Sets: the digits, photo-crops and fifty-regions (``int8_escalation.py``'s three, seen by issue 16's earlier work)
and two generated with a seed never used before (mixed-sizes and grey-textures, seed 4242: held out). Every run is
the default fine-tune at 96 px, seed 0 (MobileNetV2 unless ``--backbone``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import datasets  # noqa: E402
from qat_grid import _Session  # noqa: E402

from edgetransfer.builtin_data import materialize_digits  # noqa: E402
from edgetransfer.evaluation import decoded, evaluate  # noqa: E402
from edgetransfer.export import ExportConfig, export  # noqa: E402
from edgetransfer.finetune import FinetuneConfig, finetune  # noqa: E402
from edgetransfer.qat import QatConfig, qat_to_onnx  # noqa: E402
from edgetransfer.quantize import Int8Config  # noqa: E402

ARMS = {
    "before: light, no flip, no smoothing": {"augment": "light", "hflip": False, "label_smoothing": 0.0},
    "now: the run's recipe": {},
}
SEEN = {"digits", "photo-crops", "fifty-regions"}


def make_set(name: str, work: Path) -> Path:
    if name == "digits":
        return materialize_digits()
    if name == "photo-crops":
        return datasets.photo_crops(work / name, per_class=60)
    if name == "fifty-regions":
        return datasets.fifty_regions(work / name, per_class=16)
    if name == "mixed-sizes":
        return datasets.mixed_sizes(work / name, per_class=60, seed=4242)
    if name == "grey-textures":
        return datasets.grey_textures(work / name, per_class=60, seed=4242)
    raise SystemExit(f"unknown set {name}")


def one(name: str, work: Path, args) -> dict:
    data = make_set(name, work)
    run = finetune(FinetuneConfig(data=str(data), out=str(work / f"{name}-run"), backbone=args.backbone, size=96))
    export(run, ExportConfig(int8=Int8Config(mode="none"), openvino=False))
    card = run.load_card()
    splits = run.load_splits(card)
    val, test = decoded(splits.val, card.preprocessing), decoded(splits.test, card.preprocessing)
    fp32 = _Session(run.file("model.onnx"))
    row = {
        "set": name,
        "held_out": name not in SEEN,
        "recipe": {k: card.training["config"][k] for k in ("augment", "hflip", "label_smoothing")},
        "train_images": len(splits.train),
        "val_images": len(val),
        "test_images": len(test),
        "fp32": [evaluate(fp32, val), evaluate(fp32, test)],
        "arms": {},
    }
    for arm, fixed in ARMS.items():
        for seed in args.seeds:
            out = work / f"{name}-{seed}-{len(row['arms'])}.onnx"
            t0 = time.perf_counter()
            record = qat_to_onnx(run, splits.train, out, QatConfig(seed=seed, **fixed))
            session = _Session(out)
            row["arms"].setdefault(arm, []).append(
                {
                    "seed": seed,
                    "val": evaluate(session, val),
                    "test": evaluate(session, test),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "loss": record["losses"][-1],
                }
            )
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    arms = list(ARMS)
    out = [
        f"Machine: {meta['machine']}. Command: `{meta['command']}`; wall time {meta['wall_s']:.0f} s.",
        "",
        "Drops are fp32 ONNX minus int8 ONNX top-1 in points, mean over the QAT seeds (each seed in brackets); "
        "negative: the int8 model scored higher.",
        "",
        "| set (train / val / test images; run's recipe) | half | fp32 val / test | "
        + " | ".join(f"{a}: val drop | {a}: test drop" for a in arms)
        + " |",
        "|---|---|---|" + "---|---|" * len(arms),
    ]
    for r in rows:
        cells = []
        for arm in arms:
            for split, index in (("val", 0), ("test", 1)):
                drops = [100 * (r["fp32"][index] - trial[split]) for trial in r["arms"][arm]]
                cells.append(f"{sum(drops) / len(drops):+.2f} ({', '.join(f'{d:+.2f}' for d in drops)})")
        recipe = r["recipe"]
        out.append(
            f"| {r['set']} ({r['train_images']} / {r['val_images']} / {r['test_images']}; {recipe['augment']}, "
            f"flip {'on' if recipe['hflip'] else 'off'}, smoothing {recipe['label_smoothing']}) | "
            f"{'held out' if r['held_out'] else 'seen'} | {100 * r['fp32'][0]:.2f} / {100 * r['fp32'][1]:.2f} % | "
            + " | ".join(cells)
            + " |"
        )
    for half, keep in (("seen", False), ("held out", True)):
        chosen = [r for r in rows if r["held_out"] == keep]
        if not chosen:
            continue
        means = []
        for arm in arms:
            drops = [100 * (r["fp32"][1] - t["test"]) for r in chosen for t in r["arms"][arm]]
            means.append(f"{arm} {sum(drops) / len(drops):+.2f}")
        out.append(f"\nMean test drop, {half} sets: " + "; ".join(means) + ".")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,photo-crops,fifty-regions,mixed-sizes,grey-textures")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/qat_recipe.md"))
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    from edgetransfer.machine import machine_info

    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qat-recipe-") as tmp:
        for name in args.sets.split(","):
            rows.append(one(name, Path(tmp), args))
            print(json.dumps(rows[-1]), flush=True)
    meta = {
        "machine": machine_info(),
        "command": "python " + " ".join(sys.argv),
        "wall_s": time.perf_counter() - started,
    }
    args.out.write_text(markdown(rows, meta) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()

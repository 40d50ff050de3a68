"""Does a label-free signal see the int8 losses that the validation split misses (issue 16)?

The accuracy-aware int8 step judges a model by its validation top-1 drop against fp32. On small validation splits
that passes models that then lose several test points (EfficientNet-Lite0: +2.23 and +4.00 test points while
holding the 1-point validation budget, results/int8_escalation_lite0_pad.md). This probe measures, for
post-training int8 with every layer int8, for the export's default (``auto``) and for QAT, the top-1 drop on each
split and the share of images whose int8 top-1 differs from fp32's ("flips"), on the training, validation and test
splits. Flips need no labels, so the training images (many more than the validation ones) could judge int8 too;
this shows whether they would have seen the test losses. Nothing here changes a default.

    .venv/bin/python benchmarks/int8_agreement.py --out benchmarks/results/int8_agreement.md

Sets: the digits (the demo's data, where the defaults were developed), photo crops and fifty-regions
(``benchmarks/datasets.py``), and optionally sets of the fine-tuning suite (``--suite NAME,...``).
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
import numpy as np  # noqa: E402
from int8_escalation import export_copy, make_set  # noqa: E402
from int8_methods import write_results  # noqa: E402

from edgetransfer.backends.ort import ort_session  # noqa: E402
from edgetransfer.data import batches, load_splits  # noqa: E402
from edgetransfer.export import ExportConfig, export  # noqa: E402
from edgetransfer.finetune import FinetuneConfig, finetune  # noqa: E402
from edgetransfer.quantize import Int8Config  # noqa: E402

METHODS = {  # name: (label in the table, settings)
    "ptq": ("PTQ static, every layer int8", Int8Config(mode="static", accuracy_aware=False)),
    "auto": ("auto (export default)", Int8Config(mode="auto")),
    "qat": ("QAT", Int8Config(mode="qat")),
}
SPLITS = ("train", "val", "test")


def predictions(model: Path, samples, pre) -> tuple[np.ndarray, np.ndarray]:
    session = ort_session(model, threads=2)
    name = session.get_inputs()[0].name
    top, labels = [], []
    for images, y in batches(samples, pre):
        top.append(session.run(None, {name: images})[0].argmax(1))
        labels.append(y)
    return np.concatenate(top), np.concatenate(labels)


def one(set_name: str, data: Path, backbone: str, work: Path, size: int, methods: list[str]) -> list[dict]:
    base = work / f"{set_name}-{backbone}"
    run = finetune(FinetuneConfig(data=str(data), out=str(base), backbone=backbone, size=size, overwrite=True))
    export(run, ExportConfig(int8=Int8Config(mode="none"), openvino=False))
    card = run.load_card()
    splits = load_splits(card.dataset["path"], seed=card.dataset["seed"])
    fp32 = {s: predictions(run.file("model.onnx"), getattr(splits, s), card.preprocessing) for s in SPLITS}
    rows = []
    for index, method in enumerate(methods):
        label, config = METHODS[method]
        folder = work / f"{set_name}-{backbone}-{index}"
        failed = export_copy(base, folder, config, openvino=False)
        if failed:
            rows.append({"set": set_name, "backbone": backbone, "method": label, "failed": failed})
            continue
        q = json.loads((folder / "card.json").read_text())["artifacts"]["model.int8.onnx"]["quantization"]
        row = {
            "set": set_name,
            "backbone": backbone,
            "method": label,
            "float_layers": len(q.get("accuracy_aware", {}).get("kept_in_float", [])),
            "steps": [s["method"] for s in q.get("escalation", [])],
        }
        for split in SPLITS:
            top8, labels = predictions(folder / "model.int8.onnx", getattr(splits, split), card.preprocessing)
            top32 = fp32[split][0]
            row[f"{split}_n"] = len(labels)
            row[f"{split}_drop"] = 100 * (float((top32 == labels).mean()) - float((top8 == labels).mean()))
            row[f"{split}_flips"] = 100 * float((top8 != top32).mean())
        rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        f"Machine: {meta['machine']}.",
        f"Command: `{meta['command']}`; wall time {meta['wall_s']:.0f} s.",
        "",
        "Drop: fp32 top-1 minus int8 top-1 in points (ONNX Runtime, both models of the same run). Flips: the share of "
        "images whose int8 top-1 differs from fp32's, in %, labels not used.",
        "",
        "| set | backbone | method | float layers | train drop / flips | val drop / flips | test drop / flips |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "failed" in r:
            out.append(f"| {r['set']} | {r['backbone']} | {r['method']} | failed: {r['failed']} | | | |")
            continue
        cells = [f"{r[f'{s}_drop']:+.2f} / {r[f'{s}_flips']:.2f} ({r[f'{s}_n']} images)" for s in SPLITS]
        out.append(f"| {r['set']} | {r['backbone']} | {r['method']} | {r['float_layers']} | {' | '.join(cells)} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,photo-crops,fifty-regions")
    parser.add_argument("--suite", default="", help="names from datasets.SUITE to add")
    parser.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--methods", default=",".join(METHODS), help="names of METHODS, comma-separated")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_agreement.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        named = [(s, None) for s in args.sets.split(",") if s] + [(s, "suite") for s in args.suite.split(",") if s]
        for set_name, kind in named:
            data = datasets.make_suite(work / "suite", names=[set_name])[set_name] if kind else make_set(set_name, work)
            for backbone in args.backbones.split(","):
                rows += one(set_name, data, backbone, work, args.size, args.methods.split(","))
                print(markdown(rows, {"machine": "-", "command": "-", "wall_s": time.perf_counter() - started}))
                sys.stdout.flush()
    write_results(args.out, rows, started, markdown)


if __name__ == "__main__":
    main()

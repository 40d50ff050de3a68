"""Each epoch's validation scored in bf16 autocast and in float32, on the same weights, during default fine-tunes:
which epoch each scoring would keep (best validation top-1, ties to the lower validation loss) and the float32 test
top-1 of that epoch's weights. Run on a CPU with AVX-512 BF16 or AMX (elsewhere bf16 is emulated: the figures still
hold, slowly). Accuracy only: no timing. Results: benchmarks/results/bf16_validation.md.

    python benchmarks/bf16_validation.py --sets two-textures-300,regions-10 --seeds 0,1 --out /tmp/bf16.md
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(data: str, out: str, seed: int, size: int, dest: Path) -> None:
    """One default fine-tune with both scorings recorded per epoch, written to ``dest`` as JSON."""
    import torch

    import edgetransfer.finetune as ft
    from edgetransfer.cli import app
    from edgetransfer.decoded import Decoded, score

    log: list[dict] = []
    trainer_end_epoch = ft._Trainer._end_epoch

    def end_epoch(self, epoch, *args, **kwargs):
        model = ft.unwrap(self.model)
        bf16 = score(model, self.val, self.device, dtype=torch.bfloat16)
        fp32 = score(model, self.val, self.device)
        if not hasattr(self, "_test_images"):
            self._test_images = Decoded(self.splits.test, self.pre, name="test images")
        log.append(
            {
                "epoch": epoch,
                "bf16": [bf16[0], bf16[2]],
                "fp32": [fp32[0], fp32[2]],
                "test": score(model, self._test_images, self.device)[0],
                "val_disagree": sum(a != b for a, b in zip(bf16[1], fp32[1], strict=True)),
            }
        )
        return trainer_end_epoch(self, epoch, *args, **kwargs)

    ft._Trainer._end_epoch = end_epoch
    command = ["finetune", "--data", data, "--out", out, "--size", str(size), "--seed", str(seed), "--overwrite"]
    app(command, standalone_mode=False)

    def kept(key: str) -> dict:
        best = min(log, key=lambda r: (-r[key][0], r[key][1] if math.isfinite(r[key][1]) else math.inf, r["epoch"]))
        return best

    dest.write_text(json.dumps({"data": data, "seed": seed, "log": log, "bf16": kept("bf16"), "fp32": kept("fp32")}))


def table(records: list[dict]) -> str:
    lines = [
        "| set | seed | val top-1 per epoch, bf16 | val top-1 per epoch, float32 | predictions that differ per epoch | "
        "epoch kept, bf16 | epoch kept, float32 | test top-1 kept, bf16 | test top-1 kept, float32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def per(d: dict, key: str) -> str:
        return ", ".join(f"{100 * r[key][0]:.1f}" for r in d["log"])

    for d in records:
        differ = ", ".join(str(r["val_disagree"]) for r in d["log"])
        lines.append(
            f"| {Path(d['data']).name} | {d['seed']} | {per(d, 'bf16')} | {per(d, 'fp32')} | {differ} | "
            f"{d['bf16']['epoch']} | {d['fp32']['epoch']} | {100 * d['bf16']['test']:.2f}% | "
            f"{100 * d['fp32']['test']:.2f}% |"
        )
    flips = sum(d["bf16"]["epoch"] != d["fp32"]["epoch"] for d in records)
    mean = lambda key: sum(100 * d[key]["test"] for d in records) / len(records)  # noqa: E731
    lines.append(
        f"\nruns: {len(records)}; epoch kept differs: {flips}; mean test top-1 kept: bf16 {mean('bf16'):.2f}%, "
        f"float32 {mean('fp32'):.2f}%; most predictions differing in one epoch: "
        f"{max(r['val_disagree'] for d in records for r in d['log'])}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="photo-crops-300,grey-textures-360,two-textures-300,regions-10")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--data-root", type=Path, default=Path(tempfile.gettempdir()) / "edgetransfer-suite")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bf16_validation_table.md"))
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # DATA OUT SEED JSON: one run, in its own process
    args = parser.parse_args()
    if args.one:
        data, out, seed, dest = args.one
        one_run(data, out, int(seed), args.size, Path(dest))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from datasets import make_suite

    names = args.sets.split(",")
    folders = make_suite(args.data_root, seed=0, names=names)
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in map(int, args.seeds.split(",")):
            for name in names:
                dest = Path(scratch) / f"{name}_{seed}.json"
                run = [sys.executable, __file__, "--size", str(args.size), "--one"]
                run += [str(folders[name]), str(Path(scratch) / "run"), str(seed), str(dest)]
                subprocess.run(run, check=True, cwd=ROOT, capture_output=True)
                records.append(json.loads(dest.read_text()))
                print(table(records[-1:]).splitlines()[2], flush=True)
    args.out.write_text(table(records) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

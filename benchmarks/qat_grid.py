"""QAT's ONNX Runtime file with NNCF's weight grid kept vs ONNX Runtime's own weight scales.

``qat_to_onnx`` snaps the QAT-trained weights to NNCF's int8 grid and has ONNX Runtime's static quantizer write
the int8 file. Told nothing, ONNX Runtime picks each channel's scale as max|w| / 127, which rounds a snapped weight
a second time wherever NNCF's learned range is wider than the channel's largest weight; the product now passes
NNCF's steps (TensorQuantOverrides). For each run given: the same seeded QAT twice, once each way; how many int8
weights the second rounding moved, and validation and test top-1 of both files in ONNX Runtime against the run's
fp32 ONNX model.

    .venv/bin/python benchmarks/qat_grid.py models/digits-mobilenet_v2 RUN2 ...   # runs with model.onnx
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

OWN = "ONNX Runtime's own scales"


class _Session:
    """The minimal session ``evaluate`` needs, on ONNX Runtime's CPU provider."""

    precision = "as the file says"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: images})[0]


def dequantized_weights(path: Path) -> dict[str, np.ndarray]:
    """Every int8 weight of a QDQ file times its scale, by the weight's name."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    out = {}
    for name, q in inits.items():
        if name.endswith("_quantized") and q.dtype == np.int8:
            base = name[: -len("_quantized")]
            scale = inits[f"{base}_scale"]
            out[base] = q.astype(np.float32) * (scale.reshape(-1, *[1] * (q.ndim - 1)) if scale.ndim else scale)
    return out


def one_run(path: str) -> dict:
    import edgetransfer.qat as qat
    from edgetransfer.evaluation import decoded, evaluate
    from edgetransfer.rundir import RunDir

    run = RunDir.open(path)
    card = run.load_card()
    splits = run.load_splits(card)
    val, test = decoded(splits.val, card.preprocessing), decoded(splits.test, card.preprocessing)
    fp32 = _Session(run.file("model.onnx"))
    result = {"run": path, "val_images": len(val), "test_images": len(test)}
    result["fp32"] = [evaluate(fp32, val), evaluate(fp32, test)]
    real = qat._snap_weights
    with tempfile.TemporaryDirectory(prefix="qat-grid-") as tmp:
        files = {}
        for arm, keep in (("NNCF grid kept", True), (OWN, False)):
            qat._snap_weights = real if keep else (lambda quantized, plain: (real(quantized, plain)[0], {}))
            try:
                files[arm] = Path(tmp) / f"{keep}.onnx"
                qat.qat_to_onnx(run, splits.train, files[arm], qat.QatConfig())
            finally:
                qat._snap_weights = real
            session = _Session(files[arm])
            result[arm] = [evaluate(session, val), evaluate(session, test)]
        kept, own = (dequantized_weights(files[arm]) for arm in ("NNCF grid kept", OWN))
        moved = sum(int((np.abs(kept[k] - own[k]) > 1e-6 * np.abs(kept[k]).max()).sum()) for k in kept)
        total = sum(w.size for w in kept.values())
        result["weights_moved"] = [moved, total]
    return result


def main() -> int:
    runs = sys.argv[1:]
    if not runs:
        print(__doc__)
        return 2
    print(
        "| run | val / test images | fp32 val / test | grid kept val / test | own scales val / test | weights moved |"
    )
    print("|---|---|---|---|---|---|")
    results = []
    for path in runs:
        r = one_run(path)
        results.append(r)

        def pair(key: str, r: dict = r) -> str:
            return f"{100 * r[key][0]:.2f} / {100 * r[key][1]:.2f} %"

        moved, total = r["weights_moved"]
        print(
            f"| {path} | {r['val_images']} / {r['test_images']} | {pair('fp32')} | {pair('NNCF grid kept')} | "
            f"{pair(OWN)} | {moved:,} of {total:,} ({100 * moved / total:.1f} %) |",
            flush=True,
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

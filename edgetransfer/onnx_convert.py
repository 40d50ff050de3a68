"""ONNX files from a model: PyTorch to ONNX (checked, shapes inferred), graph simplification, fp16 weights."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgetransfer.errors import ExportError


def torch_to_onnx(model: Any, size: int, path: Path, opset: int) -> None:
    import onnx
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, size, size),),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(path))
    except (
        RuntimeError,
        ValueError,
        TypeError,
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,  # an Exception of its own, not a ValueError: it was a traceback
        torch.onnx.errors.OnnxExporterError,
    ) as exc:
        raise ExportError(f"ONNX export at opset {opset} failed: {str(exc).strip().splitlines()[0]}") from None


def simplify(path: Path) -> int:
    """Simplify the ONNX graph in place with onnxslim; returns how many nodes it removed."""
    import onnx
    import onnxslim

    before = onnx.load(str(path))
    slim = onnxslim.slim(before)
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, str(path))
    return len(before.graph.node) - len(slim.graph.node)


def to_fp16(fp32: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(out))

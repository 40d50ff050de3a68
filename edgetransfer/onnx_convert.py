"""ONNX files from a model: PyTorch to ONNX (checked, shapes inferred), graph simplification, fp16 weights."""

from __future__ import annotations

import warnings
from collections.abc import Callable
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


def simplified_if(path: Path, judge: Callable[[Path], str | None]) -> tuple[str | None, int]:
    """Simplify ``path`` in place with onnxslim and keep it only where ``judge(plain)`` (given the plain export's
    copy) returns None; else, or where onnxslim fails, the plain export is put back. Returns why it was put back
    (None: simplified) and how many nodes onnxslim removed."""
    import os
    import shutil

    plain = path.with_name("plain.onnx")
    shutil.copyfile(path, plain)
    removed = 0
    try:
        removed = simplify(path)
        why = judge(plain)
    except Exception as exc:  # noqa: BLE001 - a failed simplification keeps the plain export
        why = f"onnxslim failed ({(str(exc).splitlines() or [type(exc).__name__])[0]})"  # its bare asserts: empty
    if why:
        os.replace(plain, path)
    plain.unlink(missing_ok=True)
    return why, removed


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

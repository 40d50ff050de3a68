"""ONNX passes: ``onnx_fp32`` (PyTorch to ONNX, simplified where parity allows, checked) and ``onnx_fp16``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer import console
from edgetransfer.backends.ort import _OrtSession, fp16_runs_in, ort_session
from edgetransfer.errors import ExportError
from edgetransfer.onnx_convert import simplified_if, to_fp16, torch_to_onnx
from edgetransfer.passes.base import Artifact, ExportContext, Pass, register
from edgetransfer.rundir import ONNX_FP16, ONNX_FP32

FP16_ATOL = 0.05  # fp16 keeps ~3 significant digits; logits of a few units move by ~1e-2
FP16_RTOL = 0.05  # ... and larger logits by more (0.053 on logits up to 3.3 of a 64 px MobileNetV2): each image may
# differ by this share of its largest |logit| more; a broken conversion (overflow, NaN) misses by the logits themselves


@dataclass(frozen=True)
class OnnxFp32Config:
    opset: int
    atol: float  # max |logit difference| to PyTorch
    simplify: bool  # onnxslim; skipped (and said) where it would break parity


@register
class OnnxFp32(Pass):
    name = "onnx_fp32"

    def run(self, ctx: ExportContext) -> list[Artifact]:
        config: OnnxFp32Config = self.config
        path = ctx.path(ONNX_FP32)
        with console.err.status("exporting to ONNX..."):
            torch_to_onnx(ctx.reference.model, ctx.pre.crop, path, config.opset)
        record: dict[str, Any] = {"file": ONNX_FP32, "opset": config.opset, "simplified": False}
        if config.simplify:
            record.update(self._simplify(ctx, config))
        session = _OrtSession(ort_session(path), "fp32")
        if "parity" not in record:
            record["parity"] = ctx.check("ONNX fp32", session, config.atol)
        ctx.measure("onnx_fp32", session)
        return [Artifact(ONNX_FP32, record)]

    @staticmethod
    def _simplify(ctx: ExportContext, config: OnnxFp32Config) -> dict[str, Any]:
        """Simplify the graph in place with onnxslim, kept only if parity holds; what the card records of it."""
        path, figures = ctx.path(ONNX_FP32), {}

        def judge(plain: Path) -> str | None:
            session = _OrtSession(ort_session(path), "fp32")
            figures.update(ctx.check("ONNX fp32 (onnxslim)", session, config.atol, fail=False))
            if figures["max_abs_diff"] <= config.atol:
                return None
            console.err.print(
                f"[yellow]note: the onnxslim graph differs from PyTorch by {figures['max_abs_diff']:.3g} (over "
                f"--atol {config.atol:g}); checking the plain export instead[/]"
            )
            return "parity"

        why, removed = simplified_if(path, judge)
        if why and why != "parity":
            console.err.print(f"[yellow]note: {why}; plain export kept[/]")
        return {} if why else {"simplified": True, "simplified_nodes_removed": removed, "parity": figures}


def fp16_within(figures: dict, atol: float) -> bool:
    """Whether an fp16 model's logits are close enough to PyTorch's: each image's max |logit difference| within
    FP16_ATOL (or export's --atol when larger) plus FP16_RTOL of that image's largest |logit| (``parity``'s
    ``max_diff_beyond_rtol``, measured with ``rtol=FP16_RTOL``)."""
    return figures["max_diff_beyond_rtol"] <= max(FP16_ATOL, atol)


def check_fp16(ctx: ExportContext, name: str, session: Any) -> dict:
    """Parity of an fp16 model ``name`` with PyTorch: fp16 keeps ~3 significant digits, so its error grows with the
    logits (FP16_RTOL); --atol raises the floor. Past it an :class:`ExportError`."""
    figures = ctx.check(name, session, FP16_ATOL, fail=False, rtol=FP16_RTOL)
    if not fp16_within(figures, ctx.config.atol):
        raise ExportError(
            f"{name} disagrees with PyTorch: max |logit diff| {figures['max_abs_diff']:.3g}, "
            f"{figures['max_diff_beyond_rtol']:.3g} beyond {FP16_RTOL:.0%} of its image's largest |logit| > "
            f"{max(FP16_ATOL, ctx.config.atol):.3g} (the larger of {FP16_ATOL:g} and --atol); --atol raises it "
            "(and every other parity check's limit with it), or export without --fp16"
        )
    return figures


@register
class OnnxFp16(Pass):
    """fp16 weights and activations inside, fp32 inputs and outputs (``keep_io_types``)."""

    name = "onnx_fp16"
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        to_fp16(ctx.path(ONNX_FP32), ctx.path(ONNX_FP16))
        session = _OrtSession(ort_session(ctx.path(ONNX_FP16)), fp16_runs_in(ctx.path(ONNX_FP16)))
        figures = check_fp16(ctx, "ONNX fp16", session)
        ctx.measure("onnx_fp16", session)
        return [Artifact(ONNX_FP16, {"file": ONNX_FP16, "parity": figures})]

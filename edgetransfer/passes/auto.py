"""``--int8-method auto`` (the default): the most accurate int8 that holds the validation budget and stays faster
than fp32, trying the cheap step first.

1. Post-training static int8 (every layer int8, then, only while the model stays measurably faster than fp32, the
   most sensitive layers back in float: :func:`edgetransfer.quantize.quantize_accuracy_aware`).
2. Quantization-aware fine-tuning (:mod:`edgetransfer.passes.qat`, every layer int8) when step 1 cannot hold the
   budget, or when it holds but loses validation images: then the QAT model is kept only if it loses fewer.

The rule was fixed on the digits and a photo-crop set with MobileNetV2 and EfficientNet-Lite0 and then measured on
a set not used for it (benchmarks/results/int8_escalation.md). The card records each step tried, its validation
drop and why the next one ran (``quantization.escalation``)."""

from __future__ import annotations

import shutil

from edgetransfer import console
from edgetransfer.errors import QuantizationError
from edgetransfer.passes.base import Artifact, ExportContext, Pass, int8_method, register
from edgetransfer.passes.onnx_int8 import OnnxInt8Static
from edgetransfer.passes.qat import OnnxInt8Qat
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8


@register
@int8_method("auto")
class OnnxInt8Auto(Pass):
    name = "onnx_int8_auto"
    calibrates = True
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        try:
            made = OnnxInt8Static(self.config).run(ctx)
        except QuantizationError as exc:
            steps = [{"method": "static", "held": False, "why": str(exc)}]
            if not ctx.splits.train:
                raise QuantizationError(f"{exc} (quantization-aware fine-tuning needs training images: none)") from None
            console.err.print(
                "[yellow]post-training int8 cannot hold the budget while staying faster than fp32; "
                "escalating to quantization-aware fine-tuning (every layer stays int8)[/]"
            )
            try:
                made = OnnxInt8Qat(self.config).run(ctx)
            except QuantizationError as qat_exc:
                raise QuantizationError(
                    f"neither post-training int8 nor quantization-aware fine-tuning holds the budget: {qat_exc}; "
                    f"post-training: {exc}"
                ) from None
            return self._done(made, [*steps, self._step("qat", made, held=True, kept=True)])
        static_drop = made[0].record["quantization"]["val_drop_points"]
        steps = [self._step("static", made, held=True, kept=True)]
        if static_drop <= 0 or not ctx.splits.train:
            return self._done(made, steps)
        console.err.print(
            f"post-training int8 loses {static_drop:.2f} validation points; trying quantization-aware fine-tuning, "
            "kept only if it loses less"
        )
        keep = ctx.path("static.int8.onnx")
        shutil.copyfile(ctx.path(ONNX_INT8), keep)
        static_metrics = ctx.metrics["onnx_int8"]
        try:
            qat = OnnxInt8Qat(self.config).run(ctx)
            qat_drop = qat[0].record["quantization"]["val_drop_points"]
        except QuantizationError as exc:
            qat, qat_drop, why = None, None, str(exc)
        else:
            why = f"validation drop {qat_drop:.2f} vs {static_drop:.2f} points"
        if qat is not None and qat_drop < static_drop:
            steps[0]["kept"] = False
            keep.unlink()
            console.err.print(f"kept the QAT model: {why}")
            return self._done(qat, [*steps, self._step("qat", qat, held=True, kept=True)])
        shutil.move(keep, ctx.path(ONNX_INT8))  # the post-training file, as it was judged
        ctx.metrics["onnx_int8"] = static_metrics
        console.err.print(f"kept the post-training model: QAT {why}")
        return self._done(made, [*steps, {"method": "qat", "kept": False, "why": why}])

    @staticmethod
    def _step(method: str, made: list[Artifact], *, held: bool, kept: bool) -> dict:
        q = made[0].record["quantization"]
        return {"method": method, "held": held, "kept": kept, "val_drop_points": q.get("val_drop_points")}

    @staticmethod
    def _done(made: list[Artifact], steps: list[dict]) -> list[Artifact]:
        made[0].record["quantization"]["escalation"] = steps
        return made

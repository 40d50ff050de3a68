"""``--int8-method auto`` (the default): the cheapest int8 that holds the validation budget and stays faster than
fp32.

1. Post-training static int8 (every layer int8, then, only while the model stays measurably faster than fp32, the
   most sensitive layers back in float: :func:`edgetransfer.quantize.quantize_accuracy_aware`).
2. Quantization-aware fine-tuning (:mod:`edgetransfer.passes.qat`, every layer int8) when step 1 cannot hold the
   budget (:class:`~edgetransfer.errors.BudgetError`; any other failure of step 1 is reported as it is). The QAT
   model is judged like every int8 model: past the budget the export fails, and no faster than fp32 is a warning.

Also trying QAT where step 1 holds but loses validation images (keeping the one that loses fewer) was measured and
not adopted: it helped on the digits run of benchmarks/results/int8_escalation.md, cost a test image on the demo's
run and 40-50 s per export (see that file). The card records each step tried and why the next one ran
(``quantization.escalation``)."""

from __future__ import annotations

from edgetransfer import console
from edgetransfer.errors import BudgetError, ExportError, QuantizationError
from edgetransfer.passes.base import Artifact, ExportContext, Pass, int8_method, register
from edgetransfer.passes.onnx_int8 import OnnxInt8Static
from edgetransfer.passes.qat import OnnxInt8Qat
from edgetransfer.rundir import ONNX_FP32


@register
@int8_method("auto")
class OnnxInt8Auto(Pass):
    name = "onnx_int8_auto"
    calibrates = True
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        try:
            made = OnnxInt8Static(self.config).run(ctx)
        except BudgetError as exc:  # works, but loses too much: QAT may hold it (a broken quantizer would not)
            steps = [{"method": "static", "held": False, "why": str(exc)}]
            if not ctx.splits.train:
                raise QuantizationError(f"{exc} (quantization-aware fine-tuning needs training images: none)") from None
            console.err.print(
                "[yellow]post-training int8 cannot hold the budget while staying faster than fp32; "
                "escalating to quantization-aware fine-tuning (every layer stays int8)[/]"
            )
            try:
                made = OnnxInt8Qat(self.config).run(ctx)
            except (QuantizationError, ExportError) as qat_exc:  # ExportError: its ONNX export at --opset failed
                what = (  # QAT may fail for another reason than its accuracy: not said as a budget it missed
                    "neither post-training int8 nor quantization-aware fine-tuning holds the budget"
                    if isinstance(qat_exc, BudgetError)
                    else "post-training int8 cannot hold the budget, and quantization-aware fine-tuning failed"
                )
                raise QuantizationError(f"{what}: {qat_exc}; post-training: {exc}") from None
            return self._done(made, [*steps, self._step("qat", made)])
        return self._done(made, [self._step("static", made)])

    @staticmethod
    def _step(method: str, made: list[Artifact]) -> dict:
        drop = made[0].record["quantization"]["val_drop_points"]  # None: no validation images, not checked
        return {"method": method, "held": True if drop is not None else None, "val_drop_points": drop}

    @staticmethod
    def _done(made: list[Artifact], steps: list[dict]) -> list[Artifact]:
        made[0].record["quantization"]["escalation"] = steps
        return made

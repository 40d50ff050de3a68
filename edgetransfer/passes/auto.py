"""``--int8-method auto`` (the default): the cheapest int8 that holds the validation budget and stays faster than
fp32.

1. Post-training static int8 (every layer int8, then, only while the model stays measurably faster than fp32, the
   most sensitive layers back in float: :func:`edgetransfer.quantize.quantize_accuracy_aware`).
2. Quantization-aware fine-tuning (:mod:`edgetransfer.passes.qat`, every layer int8) when step 1 cannot hold the
   budget (:class:`~edgetransfer.errors.BudgetError`; any other failure of step 1 is reported as it is). The QAT
   model is judged like every int8 model: past the budget the export fails, and no faster than fp32 is a warning.
3. Where step 1 held the budget only with layers back in float (every layer int8 missed it), QAT is tried as well
   and the model that loses less validation accuracy is kept (a tie: QAT's, every layer int8); a QAT that fails,
   misses the budget or is no faster than fp32 (where step 1's model is faster) leaves step 1's model. On 600-image
   test splits step 1's model lost 1.50 and 0.67 test points where QAT's gained 0.50 and 0.83
   (benchmarks/results/int8_escalation_hard.md, where the rule was formed) and, on a held-out set, 1.33 against
   QAT's -0.50 (int8_escalation_heldout_qat_rule.md); in the earlier tables of 90-269 test images QAT lost less in
   four such cases and two images more in one. It costs a QAT fine-tune (85 -> 201 s in the held-out case).
4. Where step 1 held the budget with every layer int8 but lost more than half of it on validation, QAT is tried as
   in 3 (a tie: step 1's model, both all int8). Formed on int8_escalation_mixed_qat.md (step 1's models lost 0.83
   and 0.50 test points there, QAT's gained 0.17 and 0.67, at 2-6x the export time); on twelve held-out pairs of set
   and backbone (int8_escalation_heldout_half_rule*.md) it fired three times: QAT lost less on test twice (0.33 ->
   -0.33, 0.83 -> 0.00) and one image more once (0.00 -> 0.17). Trying QAT wherever step 1 loses any validation
   image was measured earlier and not adopted: it helped on the digits run of int8_escalation.md and cost a test
   image on the demo's run, for 40-50 s per export (see that file).

The card records each step tried, why the next one ran and which model was kept (``quantization.escalation``)."""

from __future__ import annotations

import os
import shutil

from edgetransfer import console
from edgetransfer.errors import BudgetError, ExportError, QuantizationError
from edgetransfer.passes.base import Artifact, ExportContext, Pass, int8_method, register
from edgetransfer.passes.onnx_int8 import OnnxInt8Static
from edgetransfer.passes.qat import OnnxInt8Qat
from edgetransfer.quantize import NOT_FASTER
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
        quantization = made[0].record["quantization"]
        kept = quantization.get("accuracy_aware", {}).get("kept_in_float") or []
        drop = quantization["val_drop_points"]
        if ctx.splits.train and (kept or (drop is not None and drop > self.config.max_drop / 2)):
            return self._done(*self._or_qat(ctx, made, len(kept)))
        return self._done(made, [self._step("static", made)])

    def _or_qat(self, ctx: ExportContext, made: list[Artifact], float_layers: int) -> tuple[list[Artifact], list]:
        """Step 1's model (``float_layers`` in float, maybe none) or QAT's, whichever loses less validation accuracy
        (a tie: QAT's where step 1's has layers in float, step 1's where both are all int8)."""
        static = {**self._step("static", made), "float_layers": float_layers}
        searched = made[0].record["quantization"].get("accuracy_aware") or {}
        if searched.get("steps"):  # each number of layers in float tried, kept in the card whichever model is kept
            static["accuracy_aware_steps"] = searched["steps"]
        layers = f"with {float_layers} layer(s) in float" if float_layers else "with every layer int8"
        how = layers if float_layers else f"{layers} but loses {static['val_drop_points']:.2f} points, over half of it"
        console.err.print(
            f"post-training int8 holds the budget {how}; trying quantization-aware fine-tuning too (every layer int8) "
            "and keeping the one that loses less on validation"
        )
        saved, metrics = ctx.path("static.int8.onnx"), dict(ctx.metrics.get("onnx_int8") or {})
        shutil.copyfile(ctx.path(ONNX_INT8), saved)
        try:
            trained = OnnxInt8Qat(self.config).run(ctx)
        except Exception as exc:  # noqa: BLE001 - any failure of QAT leaves step 1's model, which held the budget
            why = str(exc).split("\n")[0] or type(exc).__name__
            qat = {"method": "qat", "held": False, "why": why, "kept": False}
            said = f"it failed: {why}"
            if isinstance(exc, BudgetError):  # its figure, not only in the card (a new user's trial)
                lost = exc.drop_points
                said = "it did not hold the budget" + (f" (validation {-lost:+.2f} points)" if lost is not None else "")
        else:
            qat = {**self._step("qat", trained), "kept": False}
            ratio = trained[0].record["quantization"].get("latency_ratio_vs_fp32")
            was = made[0].record["quantization"].get("latency_ratio_vs_fp32")
            said = (
                f"validation {0.0 - qat['val_drop_points']:+.2f} points" if qat["val_drop_points"] is not None else ""
            )
            # a QAT model no faster than fp32 does not replace one that is (an all-int8 step 1 model may be no
            # faster either, kept with a warning: then the accuracy decides)
            if ratio is not None and ratio >= NOT_FASTER and (was is None or was < NOT_FASTER):
                said += f", {ratio:.2f}x fp32's latency: no faster"
            elif qat["val_drop_points"] is not None and (
                qat["val_drop_points"] < static["val_drop_points"]
                or (float_layers and qat["val_drop_points"] == static["val_drop_points"])
            ):
                saved.unlink()
                console.err.print(
                    f"kept quantization-aware int8: validation {0.0 - qat['val_drop_points']:+.2f} points against "
                    f"fp32, post-training {0.0 - static['val_drop_points']:+.2f} {layers}"
                )
                return trained, [{**static, "kept": False}, {**qat, "kept": True}]
        os.replace(saved, ctx.path(ONNX_INT8))
        ctx.metrics["onnx_int8"] = metrics
        console.err.print(f"kept post-training int8 ({layers}); quantization-aware: {said}")
        return made, [{**static, "kept": True}, qat]

    @staticmethod
    def _step(method: str, made: list[Artifact]) -> dict:
        quantization = made[0].record["quantization"]
        drop = quantization["val_drop_points"]  # None: no validation images, not checked
        step = {"method": method, "held": True if drop is not None else None, "val_drop_points": drop}
        if quantization.get("latency_ratio_vs_fp32") is not None:
            step["latency_ratio_vs_fp32"] = quantization["latency_ratio_vs_fp32"]
        return step

    @staticmethod
    def _done(made: list[Artifact], steps: list[dict]) -> list[Artifact]:
        made[0].record["quantization"]["escalation"] = steps
        return made

"""``--int8-method qat``: quantization-aware fine-tuning (edgetransfer/qat.py, NNCF's PyTorch QAT) from the run's best
checkpoint on its training images, quantized by ONNX Runtime (calibrated on the export's calibration images, the
training split or ``--calib``) as ``model.int8.onnx``, and judged like every int8 model: the validation budget and
its speed against fp32 measured here."""

from __future__ import annotations

from edgetransfer import console
from edgetransfer.passes.base import Artifact, ExportContext, Pass, int8_method, register
from edgetransfer.passes.onnx_int8 import judge_onnx_int8
from edgetransfer.passes.openvino import NNCF_OVERFLOW_FIX
from edgetransfer.quantize import QAT_HINT
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8


@register
@int8_method("qat")
class OnnxInt8Qat(Pass):
    name = "onnx_int8_qat"
    calibrates = True  # ONNX Runtime's ranges for the QAT-trained model
    needs = (ONNX_FP32,)  # the fp32 export: the judge's reference for accuracy and speed

    def run(self, ctx: ExportContext) -> list[Artifact]:
        from edgetransfer.qat import QatConfig, qat_to_onnx

        config = QatConfig(
            seed=self.config.seed,
            calibration_size=self.config.calibration_size,
            opset=ctx.config.opset,
            simplify=ctx.config.simplify,
            atol=ctx.config.atol,
        )
        with console.err.status("quantization-aware fine-tuning..."):
            record = qat_to_onnx(
                ctx.run,
                ctx.splits.train,
                ctx.path(ONNX_INT8),
                config,
                ort_config=self.config,
                ort_calibration=ctx.calibration[0],
                progress=console.err.print,
            )
        settings = {"tool": "nncf QAT (PyTorch), weights quantized by ONNX Runtime (QDQ)", **record}
        settings["ort_calibration_source"] = ctx.calibration[1]
        # the images ONNX Runtime's ranges come from (calibration_images: NNCF's QAT set-up's, from the training
        # split; with --calib the two differ, and explain said the set-up's count of a model calibrated on 1 image)
        settings["ort_calibration_images"] = len(ctx.calibration[0])
        settings.update(weight_bits=self.config.weight_bits(), weight_bits_why=self.config.weights_note())
        settings["nncf_overflow_fix"] = NNCF_OVERFLOW_FIX[self.config.weight_bits()]
        return [judge_onnx_int8(ctx, self.config, settings, hint=QAT_HINT, label=" (quantization-aware)")]

"""``tensorrt``: what ONNX Runtime's TensorRT execution provider needs for int8 (a calibration table computed here
on the CPU, and the provider options that point at it). Needs a GPU to use, not to make."""

from __future__ import annotations

from edgetransfer.passes.base import Artifact, ExportContext, Pass, register
from edgetransfer.rundir import ONNX_FP32, TENSORRT_DIR


@register
class TensorRTCalibration(Pass):
    name = "tensorrt"
    calibrates = True
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        from edgetransfer.quantize import write_tensorrt_calibration

        calibration, _ = ctx.calibration
        record = write_tensorrt_calibration(ctx.path(ONNX_FP32), ctx.path(TENSORRT_DIR), calibration, ctx.pre)
        return [Artifact(TENSORRT_DIR, record)]


def require_tensorrt() -> None:
    """Fail in one line unless onnxruntime has the TensorRT execution provider and a GPU is present."""
    import onnxruntime as ort

    from edgetransfer.backends.base import nvidia_gpu_count
    from edgetransfer.errors import BackendUnavailableError

    available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available or not nvidia_gpu_count():
        raise BackendUnavailableError(
            "--tensorrt needs onnxruntime-gpu with the TensorRT execution provider and an NVIDIA GPU; here "
            f"onnxruntime has {', '.join(available)} and torch sees {'a' if nvidia_gpu_count() else 'no'} GPU"
        )

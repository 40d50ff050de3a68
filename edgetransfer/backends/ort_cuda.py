"""ONNX Runtime on an NVIDIA GPU (CUDAExecutionProvider)."""

from __future__ import annotations

from edgetransfer.backends.base import nvidia_gpu_count, register
from edgetransfer.backends.ort import OrtBackend


class OrtCudaBackend(OrtBackend):
    name = "ort-cuda"
    provider = "CUDAExecutionProvider"
    needs_gpu = True
    install_hint = "needs an NVIDIA GPU with its driver, and: pip uninstall onnxruntime && pip install onnxruntime-gpu"

    def is_available(self) -> bool:
        return super().is_available() and nvidia_gpu_count() > 0

    def unavailable_reason(self) -> str:
        if not super().is_available():
            return super().unavailable_reason()
        return "needs an NVIDIA GPU; none is visible here"


register(OrtCudaBackend())

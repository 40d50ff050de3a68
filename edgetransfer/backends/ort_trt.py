"""ONNX Runtime with TensorRT on an NVIDIA GPU (TensorrtExecutionProvider; CUDA then CPU for the rest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetransfer.backends.base import LoadOptions, register
from edgetransfer.backends.ort import ONNX_VARIANTS, _OrtSession, ort_session
from edgetransfer.backends.ort_cuda import OrtCudaBackend
from edgetransfer.rundir import ONNX_FP32, TENSORRT_DIR


class OrtTensorrtBackend(OrtCudaBackend):  # a GPU is needed the same way
    """fp16 is TensorRT's own fp16 build of ``model.onnx``; int8 runs the QDQ model (explicit quantization).
    Engines are cached in the run's ``tensorrt/engines`` so only the first load pays for the build."""

    name = "ort-trt"
    provider = "TensorrtExecutionProvider"
    needs_gpu = True
    install_hint = (
        "needs an NVIDIA GPU with its driver and TensorRT (pip install tensorrt), and: "
        "pip uninstall onnxruntime && pip install onnxruntime-gpu"
    )
    variants = {**ONNX_VARIANTS, "fp16": ONNX_FP32}

    def provider_options(self, path: Path, options: LoadOptions) -> dict[str, Any]:
        cache = path.parent / TENSORRT_DIR / "engines"
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": options.variant in ("fp16", "int8") and options.precision != "fp32",
            "trt_int8_enable": options.variant == "int8",
        }

    def precision(self, options: LoadOptions) -> str:
        if options.variant == "int8":
            return "int8+fp16" if options.precision != "fp32" else "int8+fp32"
        return "fp16" if options.variant == "fp16" else "fp32"

    def load(self, path: Path, card, options: LoadOptions):
        providers: list = [
            (self.provider, self.provider_options(path, options)),
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
        session = ort_session(path, threads=options.threads, providers=providers)
        return _OrtSession(session, self.precision(options), options.threads)


register(OrtTensorrtBackend())

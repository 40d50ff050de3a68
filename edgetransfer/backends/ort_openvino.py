"""ONNX Runtime with its OpenVINO execution provider (the onnxruntime-openvino build), on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetransfer.backends.base import LoadOptions, register
from edgetransfer.backends.ort import OrtBackend


class OrtOpenVinoBackend(OrtBackend):
    name = "ort-openvino"
    provider = "OpenVINOExecutionProvider"
    install_hint = "pip uninstall onnxruntime && pip install onnxruntime-openvino (one onnxruntime build at a time)"

    def provider_options(self, path: Path, options: LoadOptions) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "device_type": "CPU",
            "precision": "FP32" if options.precision == "fp32" else "ACCURACY",
        }
        if options.threads:
            settings["num_of_threads"] = options.threads
        return settings

    def precision(self, options: LoadOptions) -> str:
        # ACCURACY keeps the model's own precision: fp32 math for fp32 and fp16 files, int8 kernels for QDQ
        return {"int8": "int8+fp32", "fp16": "fp16"}.get(options.variant, "fp32")


register(OrtOpenVinoBackend())

"""OpenVINO native runtime on the CPU, from the run's IR (.xml/.bin)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgetransfer.backends.base import Backend, LoadOptions, register
from edgetransfer.rundir import OV_FP32, OV_INT8


class _OvSession:
    def __init__(self, compiled, precision: str) -> None:
        self.compiled, self.precision = compiled, precision
        self.request = compiled.create_infer_request()

    def run(self, images):
        return self.request.infer({0: images})[0].copy()


def compile_model(model, options: LoadOptions, *, int8: bool = False) -> _OvSession:
    """Compile an ``ov.Model`` (or a path) for the CPU and say what precision it really runs in."""
    import openvino as ov

    core = ov.Core()
    if isinstance(model, (str, Path)):
        model = core.read_model(str(model))
    if options.batch:
        shape = model.input(0).get_partial_shape()
        shape[0] = ov.Dimension(options.batch)
        model.reshape({model.input(0): shape})
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = options.threads
    if options.precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    hint = hint.to_string() if hasattr(hint, "to_string") else str(hint).lower()
    exec_precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint, hint)
    return _OvSession(compiled, f"int8+{exec_precision}" if int8 else exec_precision)


class OpenVinoCpuBackend(Backend):
    name = "openvino-cpu"
    install_hint = "pip install openvino"
    variants = {"fp32": OV_FP32, "int8": OV_INT8}

    def is_available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def load(self, path: Path, card, options: LoadOptions):
        return compile_model(path, options, int8=path.name == Path(OV_INT8).name)


register(OpenVinoCpuBackend())

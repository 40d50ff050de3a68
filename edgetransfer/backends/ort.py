"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgetransfer.backends.base import Backend, LoadOptions, register
from edgetransfer.errors import BackendUnavailableError
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8


class _OrtSession:
    def __init__(self, session, precision: str) -> None:
        self.session, self.precision = session, precision
        self.input_name = session.get_inputs()[0].name

    def run(self, images):
        return self.session.run(None, {self.input_name: images})[0]


def ort_session(path: Path | bytes, *, threads: int | None = None, providers: list[str] | None = None):
    """An onnxruntime InferenceSession with full graph optimisation and quiet logs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = providers or ["CPUExecutionProvider"]
    session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=providers)
    missing = [p for p in providers if p not in session.get_providers()]
    if missing:
        raise BackendUnavailableError(f"onnxruntime did not enable {', '.join(missing)} (it would fall back to CPU)")
    return session


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    install_hint = "pip install onnxruntime"
    variants = {"fp32": ONNX_FP32, "int8": ONNX_INT8}

    def is_available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def load(self, path: Path, card, options: LoadOptions):
        precision = "int8" if path.name == Path(ONNX_INT8).name else "fp32"
        return _OrtSession(ort_session(path, threads=options.threads), precision)


register(OrtCpuBackend())

"""ONNX Runtime on the CPU (CPUExecutionProvider), and what the other ONNX Runtime backends share."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgetransfer.backends.base import Backend, LoadOptions, register
from edgetransfer.errors import BackendUnavailableError
from edgetransfer.rundir import ONNX_FP16, ONNX_FP32, ONNX_INT8

ONNX_VARIANTS = {"fp32": ONNX_FP32, "fp16": ONNX_FP16, "int8": ONNX_INT8}


class _OrtSession:
    def __init__(self, session, precision: str, threads: int | None = None) -> None:
        self.session, self.precision, self.threads = session, precision, threads
        first = session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = [d if isinstance(d, int) else None for d in first.shape]  # None: dynamic
        last = (session.get_outputs()[0].shape or [None])[-1]
        self.classes = last if isinstance(last, int) and last > 0 else None  # scores per image, where fixed

    @property
    def card_json(self) -> str | None:
        """The edgetransfer model card embedded in the file, as text (None when it carries none)."""
        from edgetransfer.card import ONNX_METADATA_KEY

        return self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)

    def run(self, images):
        return self.session.run(None, {self.input_name: images})[0]


_FP16_RUNS_IN: dict[tuple[str, int, int], str] = {}


def fp16_runs_in(path: Path) -> str:
    """What ONNX Runtime's CPU provider computes an fp16 model in here: "fp16", or "fp32" where its optimized graph
    casts the fp16 weights to fp32 (x86 CPUs: MLAS has fp32 kernels only for most ops, and inserts the casts at
    load). Read from the graph it optimizes, once per file."""
    import tempfile

    import onnx
    import onnxruntime as ort

    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _FP16_RUNS_IN:
        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            types = [i.data_type for i in onnx.load(options.optimized_model_filepath).graph.initializer]
        half = sum(t == onnx.TensorProto.FLOAT16 for t in types)
        _FP16_RUNS_IN[key] = "fp16" if half * 2 > len(types) else "fp32"
    return _FP16_RUNS_IN[key]


def ort_session(
    path: Path | bytes,
    *,
    threads: int | None = None,
    providers: list[str | tuple[str, dict[str, Any]]] | None = None,
):
    """An onnxruntime InferenceSession with full graph optimisation and quiet logs; ``providers`` are names or
    (name, options) pairs. A provider that onnxruntime does not enable is a :class:`BackendUnavailableError`
    (it would otherwise fall back to the CPU without a word)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = providers or ["CPUExecutionProvider"]
    session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=providers)
    names = [p if isinstance(p, str) else p[0] for p in providers]
    missing = [p for p in names if p not in session.get_providers()]
    if missing:
        raise BackendUnavailableError(f"onnxruntime did not enable {', '.join(missing)} (it would fall back to CPU)")
    return session


def open_onnx(path: Path, *, threads: int | None = None) -> _OrtSession:
    """A .onnx in an ONNX Runtime CPU session, for device apps: a missing onnxruntime or a file it cannot read is
    one line (:class:`BackendUnavailableError`, :class:`UsageError`)."""
    from edgetransfer.errors import UsageError
    from edgetransfer.images import first_line

    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailableError("backend 'ort' needs onnxruntime: pip install onnxruntime")
    try:
        session = ort_session(path, threads=threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for corrupt files
        raise UsageError(f"cannot load {path} with onnxruntime: {first_line(exc)}") from None
    return _OrtSession(session, "fp32", threads)


def ort_providers() -> list[str]:
    """Execution providers this onnxruntime build has ([] when onnxruntime is not installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return ort.get_available_providers()


class OrtBackend(Backend):
    """ONNX Runtime with one execution provider (and the CPU provider for what it cannot run)."""

    provider = "CPUExecutionProvider"
    variants = ONNX_VARIANTS
    libraries = ("onnxruntime",)

    def is_available(self) -> bool:
        return self.provider in ort_providers()

    def unavailable_reason(self) -> str:
        found = ort_providers()
        if not found:
            return "onnxruntime is not installed"
        return f"this onnxruntime has no {self.provider} (it has {', '.join(found)})"

    def provider_options(self, path: Path, options: LoadOptions) -> dict[str, Any]:
        return {}

    def precision(self, options: LoadOptions) -> str:
        return options.variant

    def load(self, path: Path, card, options: LoadOptions):
        providers: list = [(self.provider, self.provider_options(path, options))]
        if self.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        session = ort_session(path, threads=options.threads, providers=providers)
        return _OrtSession(session, self.precision(options), options.threads)


class OrtCpuBackend(OrtBackend):
    name = "ort-cpu"
    install_hint = "pip install onnxruntime"

    def precision(self, options: LoadOptions) -> str:
        return options.variant  # an fp16 model's is found at load (:meth:`load`): ORT may compute it in fp32

    def load(self, path: Path, card, options: LoadOptions):
        session = super().load(path, card, options)
        if options.variant == "fp16":
            session.precision = fp16_runs_in(Path(path))
        return session

    def is_available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None


register(OrtCpuBackend())

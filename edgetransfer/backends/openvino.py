"""OpenVINO native runtime from the run's IR (.xml/.bin): ``openvino-cpu``, and ``openvino-gpu`` where OpenVINO
sees an Intel GPU."""

from __future__ import annotations

import functools
import importlib.util
import re
import threading
import time
from pathlib import Path

from edgetransfer.backends.base import Backend, LoadOptions, precision_name, register
from edgetransfer.card import ONNX_METADATA_KEY, OPENVINO_RT_INFO_PATH
from edgetransfer.rundir import OV_FP16, OV_FP32, OV_INT8


class _OvSession:
    def __init__(self, compiled, precision: str, threads: int | None) -> None:
        self.compiled, self.precision, self.threads = compiled, precision, threads
        self.request = compiled.create_infer_request()  # the opening thread's (the bench times it)
        self._owner, self._others = threading.get_ident(), threading.local()
        self.input_shape = _dims(compiled.input(0).get_partial_shape())  # None: dynamic
        classes = _dims(compiled.output(0).get_partial_shape())
        self.classes = classes[-1] if classes else None  # scores per image, where fixed
        self.card_json: str | None = None  # the model card read from the IR's rt_info (see open_ir)

    def run(self, images):
        return self._request().infer({0: images})[0].copy()

    def _request(self):
        """An infer request of this thread's own: one shared by an app's threads said 'Infer Request is busy', or
        returned another thread's scores (onnxruntime's sessions may be shared; OpenVINO's requests may not)."""
        if threading.get_ident() == self._owner:
            return self.request
        request = getattr(self._others, "request", None)
        if request is None:
            request = self._others.request = self.compiled.create_infer_request()
        return request

    def run_async(self, images, seconds: float) -> dict:
        """Images/s with OpenVINO's optimal number of requests in flight (an AsyncInferQueue) for ``seconds``."""
        import openvino as ov

        requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(self.compiled, requests)
        for _ in range(requests):  # warm every request once
            queue.start_async({0: images})
        queue.wait_all()
        submitted, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or submitted < 2 * requests:
            queue.start_async({0: images})  # blocks while every request is busy
            submitted += 1
        queue.wait_all()
        elapsed = time.perf_counter() - started
        return {
            "images_per_s": submitted * len(images) / elapsed,
            "requests": requests,
            "streams": _property(self.compiled, "NUM_STREAMS"),
            "inferences": submitted,
            "seconds": elapsed,
        }


def _dims(shape) -> list[int | None]:
    if not shape.rank.is_static:
        return []
    return [d.get_length() if d.is_static else None for d in shape]


# Where an IR carries the card: ours (rt_info), or an .onnx's metadata_props as OpenVINO shows them.
CARD_PATHS = (OPENVINO_RT_INFO_PATH, ("framework", ONNX_METADATA_KEY))


def what_went_wrong(exc: BaseException) -> str:
    """OpenVINO's message without the lines saying where it was thrown ("Exception from src/inference/src/cpp/
    core.cpp:117:", which was all `predict --device XYZ` said; "Check '...' failed at src/...:219:"), its first line
    that says something."""
    from edgetransfer.images import first_line

    where = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)\s*$")
    lines = [line for line in str(exc).splitlines() if line.strip() and not where.match(line.strip())]
    return lines[0].strip()[:200] if lines else first_line(exc)


def open_ir(path: Path, *, threads: int | None = None, device: str = "CPU", precision: str = "auto") -> _OvSession:
    """An IR (.xml) or .onnx compiled for ``device``, with the card it carries, for device apps: a missing openvino,
    a file it cannot read or a device it cannot compile for is one line."""
    from edgetransfer.errors import BackendUnavailableError, UsageError
    from edgetransfer.safety import check_ir_weights

    if importlib.util.find_spec("openvino") is None:
        raise BackendUnavailableError("backend 'openvino' needs openvino: pip install openvino")
    if precision not in ("auto", "fp32"):
        raise UsageError(f"unknown precision {precision!r}; use auto or fp32")
    import openvino as ov

    check_ir_weights(path)
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and others for corrupt files
        raise UsageError(f"cannot load {path} with OpenVINO: {what_went_wrong(exc)}") from None
    card = next((model.get_rt_info(list(p)).astype(str) for p in CARD_PATHS if model.has_rt_info(list(p))), None)
    try:
        session = compile_model(model, LoadOptions(threads=threads, precision=precision), device=device)
    except Exception as exc:  # noqa: BLE001
        raise BackendUnavailableError(f"OpenVINO cannot compile {path} for {device}: {what_went_wrong(exc)}") from None
    session.card_json = card
    return session


def _property(compiled, name: str):
    try:
        value = compiled.get_property(name)
    except RuntimeError:  # not supported by this device plugin
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def compile_model(model, options: LoadOptions, *, int8: bool = False, device: str = "CPU") -> _OvSession:
    """Compile an ``ov.Model`` (or a path) for ``device`` and say what precision it really runs in."""
    import openvino as ov

    core = ov.Core()
    if isinstance(model, (str, Path)):
        model = core.read_model(str(model))
    if options.batch:
        shape = model.input(0).get_partial_shape()
        shape[0] = ov.Dimension(options.batch)
        model.reshape({model.input(0): shape})
    config = {"PERFORMANCE_HINT": "THROUGHPUT" if options.hint == "throughput" else "LATENCY"}
    if options.threads and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = options.threads
    if options.precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, device, config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    exec_precision = precision_name(hint.to_string() if hasattr(hint, "to_string") else str(hint).lower())
    threads = _property(compiled, "INFERENCE_NUM_THREADS") if device == "CPU" else None
    return _OvSession(compiled, f"int8+{exec_precision}" if int8 else exec_precision, threads or options.threads)


@functools.cache
def openvino_devices() -> tuple[str, ...]:
    """The devices OpenVINO sees here (() when openvino is not installed)."""
    if importlib.util.find_spec("openvino") is None:
        return ()
    import openvino as ov

    return tuple(ov.Core().available_devices)


class OpenVinoBackend(Backend):
    """OpenVINO's own runtime on one device; each session is compiled for one batch size (static shapes are
    faster), and sessions loaded with ``hint="throughput"`` run several streams (:meth:`_OvSession.run_async`)."""

    variants = {"fp32": OV_FP32, "fp16": OV_FP16, "int8": OV_INT8}
    static_batch = True
    supports_async = True
    libraries = ("openvino",)

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"openvino-{device.lower()}"
        self.needs_gpu = device == "GPU"
        self.install_hint = (
            "pip install openvino" if device == "CPU" else "needs an Intel GPU and its OpenCL/Level Zero driver"
        )

    def is_available(self) -> bool:
        return any(d == self.device or d.startswith(f"{self.device}.") for d in openvino_devices())

    def unavailable_reason(self) -> str:
        if importlib.util.find_spec("openvino") is None:
            return "openvino is not installed"
        return f"OpenVINO sees no {self.device} here (it sees {', '.join(openvino_devices()) or 'no device'})"

    def load(self, path: Path, card, options: LoadOptions):
        return compile_model(path, options, int8=options.variant == "int8", device=self.device)


register(OpenVinoBackend("CPU"))
register(OpenVinoBackend("GPU"))

"""Every backend behind the one interface: registry, availability with reasons, loading a run's models, and a
backend that fails or crashes while the others are still measured."""

import os

import numpy as np
import pytest
from hardware import run_if

from edgetransfer import backends
from edgetransfer.backends.base import Backend, LoadOptions
from edgetransfer.bench import BenchConfig, bench
from edgetransfer.errors import BackendUnavailableError, UsageError

NAMES = ["torch-cpu", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "ort-openvino", "openvino-cpu", "openvino-gpu"]
GPU_BACKENDS = ["torch-cuda", "ort-cuda", "ort-trt", "openvino-gpu"]
ONE_RUN = dict(warmup=0, warmup_time=0, min_runs=2, min_time=0, rounds=1, async_time=0, accuracy=False)

needs_nvidia = run_if(nvidia_gpu=True)


def test_registry_names_every_backend_and_rejects_duplicates():
    assert [b.name for b in backends.all_backends()] == NAMES
    for backend in backends.all_backends():
        assert backend.install_hint and set(backend.variants) <= {"fp32", "fp16", "int8"}
        assert backend.needs_gpu == (backend.name in GPU_BACKENDS)
    with pytest.raises(ValueError, match="already registered"):
        backends.register(backends.get("ort-cpu"))
    with pytest.raises(UsageError, match="known: openvino-cpu"):
        backends.get("tpu")


def test_fp16_is_a_variant_of_onnx_and_openvino_backends():
    for name in ("ort-cpu", "ort-cuda", "ort-trt", "openvino-cpu", "openvino-gpu"):
        assert "fp16" in backends.get(name).variants
    assert backends.get("openvino-cpu").variants["fp16"] == "openvino/model.fp16.xml"
    assert backends.get("ort-cpu").variants["fp16"] == "model.fp16.onnx"


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_a_missing_gpu_backend_says_why_and_how_to_install(name):
    backend = backends.get(name)
    if backend.is_available():
        pytest.skip(f"{name} is available on this machine")
    with pytest.raises(BackendUnavailableError) as info:
        backend.require()
    message = str(info.value)
    assert message.startswith(f"backend {name} is not available here: ")
    assert "GPU" in message


def test_ort_openvino_says_which_package_to_install():
    backend = backends.get("ort-openvino")
    if backend.is_available():
        pytest.skip("onnxruntime-openvino is installed here")
    with pytest.raises(BackendUnavailableError, match="onnxruntime-openvino"):
        backend.require()


CPU_CASES = [(n, v) for n in ("torch-cpu", "ort-cpu", "openvino-cpu", "ort-openvino") for v in ("fp32", "int8")]


@pytest.mark.parametrize("name, variant", CPU_CASES)
def test_cpu_backends_load_the_runs_models(trained_run, name, variant):
    backend = backends.get(name)
    if not backend.is_available():
        pytest.skip(f"{name} is not available here: {backend.unavailable_reason()}")
    if variant not in backend.variants:
        pytest.skip(f"{name} has no {variant} variant")
    card = trained_run.load_card()
    session = backend.load(
        trained_run.file(backend.variants[variant]), card, LoadOptions(threads=1, batch=2, variant=variant)
    )
    logits = session.run(np.zeros((2, 3, 32, 32), np.float32))
    assert logits.shape == (2, card.num_classes)
    assert session.threads == 1 and (variant == "fp32") == ("int8" not in session.precision)


@pytest.mark.cuda
@needs_nvidia
@pytest.mark.parametrize("name", ["torch-cuda", "ort-cuda"])
def test_cuda_backends_run_on_the_gpu(trained_run, name):
    doc = bench(trained_run, BenchConfig(backends=(name,), variants=("fp32",), **ONE_RUN), write=False)
    assert doc["results"] and not doc["failed"]


# --------------------------------------------------------------------------- failing backends


class _Broken(Backend):
    """ort-cpu's fp32 file, but loading raises (``how="raise"``) or the process aborts on the first run."""

    install_hint = "nothing to install"
    variants = {"fp32": "model.onnx"}

    def __init__(self, how: str) -> None:
        self.how, self.name = how, f"broken-{how}"

    def is_available(self) -> bool:
        return True

    def load(self, path, card, options):
        if self.how == "raise":
            raise RuntimeError("this backend cannot run the model")
        return self

    precision, threads = "fp32", None

    def run(self, images):
        os.abort()


@pytest.fixture
def broken():
    made = [backends.register(_Broken("raise")), backends.register(_Broken("abort"))]
    yield made
    for backend in made:
        backends.unregister(backend.name)


def test_a_backend_that_raises_is_reported_and_the_others_measured(trained_run, broken):
    config = BenchConfig(backends=("broken-raise", "ort-cpu"), variants=("fp32",), isolate=False, **ONE_RUN)
    doc = bench(trained_run, config, write=False)
    assert [r["backend"] for r in doc["results"]] == ["ort-cpu"]
    assert doc["failed"] == [
        {
            "backend": "broken-raise",
            "variant": "fp32",
            "error": "start: RuntimeError: this backend cannot run the model",
        }
    ]


def test_a_backend_that_crashes_its_process_is_reported_and_the_others_measured(trained_run, broken):
    config = BenchConfig(backends=("broken-abort", "ort-cpu"), variants=("fp32",), isolate=True, **ONE_RUN)
    doc = bench(trained_run, config, write=False)
    assert [r["backend"] for r in doc["results"]] == ["ort-cpu"]
    assert doc["results"][0]["peak_rss_mb"] > 0
    (failure,) = doc["failed"]
    assert failure["backend"] == "broken-abort" and "crashed (SIGABRT)" in failure["error"]


def test_a_checkpoint_with_another_head_size_is_read_with_its_own_classes():
    from edgetransfer.backends.torch_backend import checkpoint_classes

    expected = {"body.weight": np.zeros((8, 4)), "head.weight": np.zeros((4, 8)), "head.bias": np.zeros(4)}
    state = {"body.weight": np.zeros((8, 4)), "head.weight": np.zeros((3, 8)), "head.bias": np.zeros(3)}
    assert checkpoint_classes(expected, state, 4) == 3  # the card has one label more than the model
    assert checkpoint_classes(expected, expected, 4) == 4
    other = {**state, "body.weight": np.zeros((8, 5))}  # another architecture: left to load_state_dict to refuse
    assert checkpoint_classes(expected, other, 4) == 4


def test_an_fp16_model_is_said_to_run_in_what_onnx_runtime_computes_it_in(trained_run, tmp_path):
    """ONNX Runtime's CPU provider casts an fp16 model's weights to fp32 at load on x86 (fp32 kernels): bench and
    export said "runs in fp16" while it ran in fp32, hiding why fp16 was no faster."""
    import platform

    import onnx

    from edgetransfer.backends.ort import fp16_runs_in
    from edgetransfer.onnx_convert import to_fp16

    half = tmp_path / "model.fp16.onnx"
    to_fp16(trained_run.file("model.onnx"), half)
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(half)).graph.initializer)
    runs_in = fp16_runs_in(half)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert runs_in == "fp32"
    card = trained_run.load_card()
    session = backends.get("ort-cpu").load(half, card, LoadOptions(threads=1, variant="fp16"))
    assert session.precision == runs_in and runs_in in ("fp16", "fp32")
    assert (
        backends.get("ort-cpu").load(trained_run.file("model.onnx"), card, LoadOptions(variant="fp32")).precision
        == "fp32"
    )


def test_openvinos_errors_are_said_by_what_went_wrong():
    """OpenVINO's messages open with where they were thrown; predict --device XYZ said only
    "Exception from src/inference/src/cpp/core.cpp:117:", a corrupt IR "Check '...' failed at ...:219:"."""
    from edgetransfer.backends.openvino import what_went_wrong

    device = (
        "Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/core_impl.cpp:706:\n"
        'Device with "XYZ" name is not registered in the OpenVINO Runtime\n\n'
    )
    corrupt = (
        "Exception from src/inference/src/cpp/core.cpp:84:\nCheck 'res.status == pugi::status_ok' failed at "
        "src/frontends/ir/src/input_model.cpp:219:\nError parsing start element tag at offset 68\n\n"
    )
    assert what_went_wrong(RuntimeError(device)) == 'Device with "XYZ" name is not registered in the OpenVINO Runtime'
    assert what_went_wrong(RuntimeError(corrupt)) == "Error parsing start element tag at offset 68"
    assert what_went_wrong(RuntimeError("")) == "RuntimeError"


def test_the_default_backends_measure_those_here_and_name_the_rest(monkeypatch):
    """A plain 'bench RUN' where OpenVINO is not installed stopped at 'backend openvino-cpu is not available here'
    and measured nothing, where '--backends all' measured the rest (a review). Named, it is still an error."""
    from edgetransfer.backends.openvino import OpenVinoBackend
    from edgetransfer.bench.config import DEFAULT_BACKENDS
    from edgetransfer.bench.plan import resolve_backends
    from edgetransfer.errors import BackendUnavailableError

    monkeypatch.setattr(OpenVinoBackend, "is_available", lambda self: False)
    chosen, missing = resolve_backends(DEFAULT_BACKENDS)
    assert [b.name for b in chosen] == ["torch-cpu", "ort-cpu"]
    assert [m["backend"] for m in missing] == ["openvino-cpu"] and "pip install openvino" in missing[0]["install"]
    with pytest.raises(BackendUnavailableError, match="openvino-cpu is not available here"):
        resolve_backends(("ort-cpu", "openvino-cpu"))


def test_without_torch_the_default_backends_name_torch_cpu_with_how_to_install_it(monkeypatch):
    """On a runtime-only install torch-cpu counted as available (a CPU is always there) and failed at its load, a
    'start: ModuleNotFoundError' row, where the defaults promise to name it with how to install it (a review)."""
    import importlib.util

    from edgetransfer.bench.config import DEFAULT_BACKENDS
    from edgetransfer.bench.plan import resolve_backends

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else found(name, *a))
    chosen, missing = resolve_backends(DEFAULT_BACKENDS)
    assert "torch-cpu" not in [b.name for b in chosen] and "ort-cpu" in [b.name for b in chosen]
    torch_cpu = next(m for m in missing if m["backend"] == "torch-cpu")
    assert torch_cpu["reason"] == "torch and torchvision are not installed"
    assert torch_cpu["install"] == "pip install torch torchvision"

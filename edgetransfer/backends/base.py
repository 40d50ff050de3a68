"""The one narrow interface every inference backend implements, and the registry that names them."""

from __future__ import annotations

import functools
import importlib
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edgetransfer.errors import BackendUnavailableError
from edgetransfer.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from edgetransfer.card import ModelCard

PRECISIONS = ("auto", "fp32")  # auto: the backend's default (OpenVINO may run fp32 models in bf16)
HINTS = ("latency", "throughput")


class Session(Protocol):
    """A loaded model: ``run`` maps a float32 NCHW batch to logits.

    A session may also have ``run_async(images, seconds) -> dict`` (images/s with several requests in flight);
    the benchmark uses it where present.
    """

    precision: str  # what it really executes in, e.g. "fp32", "bf16", "int8+bf16"
    threads: int | None  # intra-op threads it really uses, where the library says

    def run(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LoadOptions:
    threads: int | None = None  # intra-op threads; None: the backend's default
    precision: str = "auto"
    batch: int | None = None  # a fixed batch size to compile for; None: dynamic
    variant: str = "fp32"  # which model variant the file is (fp32, fp16, int8)
    hint: str = "latency"  # latency: one request at a time; throughput: several streams (OpenVINO)


class Backend(ABC):
    """An inference engine on one device. ``variants`` maps a model variant to its file in a run directory."""

    name: str
    install_hint: str  # how to get it, e.g. "pip install onnxruntime-gpu (replaces onnxruntime)"
    needs_gpu: bool = False
    variants: dict[str, str]
    static_batch: bool = False  # True: a session is compiled for one batch size (load once per size)
    supports_async: bool = False  # sessions loaded with hint="throughput" have run_async
    libraries: tuple[str, ...] = ()  # what load() imports, imported by preload()

    @abstractmethod
    def is_available(self) -> bool:
        """True when the library and the device are present on this machine."""

    @abstractmethod
    def load(self, path: Path, card: ModelCard, options: LoadOptions) -> Session:
        """Load the model file ``path`` (``card`` says how to build it where the file alone does not)."""

    def preload(self) -> None:
        """Import the backend's libraries, so that timing :meth:`load` times the model, not the import (bench's
        load_s was mostly `import torch`: 3.9 s of torch-cpu's first load, 0.2 s of its second; a review)."""
        for name in self.libraries:
            importlib.import_module(name)

    def unavailable_reason(self) -> str:
        """Why :meth:`is_available` is False here, in a few words (override to be more precise)."""
        return "needs an NVIDIA GPU" if self.needs_gpu else "its library is not installed"

    def require(self) -> None:
        """Raise :class:`BackendUnavailableError` naming this backend, why it is missing and how to get it."""
        if not self.is_available():
            raise BackendUnavailableError(
                f"backend {self.name} is not available here: {self.unavailable_reason()}; {self.install_hint}"
            )

    def __repr__(self) -> str:
        return f"<backend {self.name}>"


_BACKENDS: Registry[Backend] = Registry("backend")


def register(backend: Backend) -> Backend:
    """Add a backend under its name; a name registered twice is an error."""
    return _BACKENDS.register(backend.name, backend)


def unregister(name: str) -> None:
    """Remove a backend (plugins and tests that registered one for a while)."""
    _BACKENDS.unregister(name)


def get(name: str) -> Backend:
    return _BACKENDS.get(name)


def all_backends() -> list[Backend]:
    return _BACKENDS.values()


@functools.cache
def nvidia_gpu_count() -> int:
    """NVIDIA GPUs visible to this process (through torch, which is installed; 0 where it sees none)."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return 0  # no driver loaded: skip importing torch just to hear "no"
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def precision_name(hint: str) -> str:
    """OpenVINO's element type names (f32, bf16, f16) as the precisions this package reports."""
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8"}.get(hint, hint)

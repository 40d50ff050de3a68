"""The one narrow interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edgetransfer.errors import BackendUnavailableError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from edgetransfer.card import ModelCard

PRECISIONS = ("auto", "fp32")  # auto: the backend's default (OpenVINO may run fp32 models in bf16)


class Session(Protocol):
    """A loaded model: ``run`` maps a float32 NCHW batch to logits."""

    precision: str  # what it really executes in, e.g. "fp32", "bf16", "int8"

    def run(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class LoadOptions:
    threads: int | None = None  # intra-op threads; None: the backend's default
    precision: str = "auto"
    batch: int | None = None  # a fixed batch size to compile for; None: dynamic


class Backend(ABC):
    """An inference engine on one device. ``variants`` maps a model variant to its file in a run directory."""

    name: str
    install_hint: str
    variants: dict[str, str]

    @abstractmethod
    def is_available(self) -> bool:
        """True when the library and the device are present on this machine."""

    @abstractmethod
    def load(self, path: Path, card: ModelCard, options: LoadOptions) -> Session:
        """Load the model file ``path`` (``card`` says how to build it where the file alone does not)."""

    def require(self) -> None:
        if not self.is_available():
            raise BackendUnavailableError(f"backend {self.name} is not available here; {self.install_hint}")


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    if backend.name in _BACKENDS:
        raise ValueError(f"backend {backend.name!r} is already registered")
    _BACKENDS[backend.name] = backend
    return backend


def get(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(sorted(_BACKENDS))}") from None


def all_backends() -> list[Backend]:
    return list(_BACKENDS.values())

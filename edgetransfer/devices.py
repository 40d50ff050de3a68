"""Which torch device to train on."""

from __future__ import annotations

from edgetransfer.errors import BackendUnavailableError, UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; asking for a missing GPU is an error."""
    import torch

    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "--device cuda asked for, but torch sees no CUDA GPU on this machine: --device cpu (or auto) trains on "
            "the CPU"
        )
    return name

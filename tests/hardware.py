"""One marker for tests that depend on the machine (as Lightning's ``RunIf``): it skips with the reason, never
silently, and the reason names what is missing (or present) here."""

from __future__ import annotations

import pytest

from edgetransfer.backends.base import nvidia_gpu_count


def run_if(*, nvidia_gpu: bool | None = None, backend: str | None = None) -> pytest.MarkDecorator:
    """``nvidia_gpu=True``: needs an NVIDIA GPU; ``False``: needs a machine without one (the error paths a GPU
    machine never takes); ``backend``: needs that inference backend available here."""
    reasons = []
    gpus = nvidia_gpu_count()
    if nvidia_gpu is True and not gpus:
        reasons.append("needs an NVIDIA GPU; none is visible here")
    if nvidia_gpu is False and gpus:
        reasons.append(f"checks what happens without a GPU, and this machine has {gpus}")
    if backend is not None:
        from edgetransfer.backends import get

        found = get(backend)
        if not found.is_available():
            reasons.append(f"{backend} is not available here: {found.unavailable_reason()}")
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "runs here")

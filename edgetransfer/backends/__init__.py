"""Inference backends behind one interface (:class:`~edgetransfer.backends.base.Backend`)."""

from edgetransfer.backends import openvino, ort, torch_backend  # noqa: F401  (register themselves)
from edgetransfer.backends.base import Backend, LoadOptions, Session, all_backends, get

__all__ = ["Backend", "LoadOptions", "Session", "all_backends", "get"]

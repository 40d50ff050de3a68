"""Inference backends behind one interface (:class:`~edgetransfer.backends.base.Backend`), one module each."""

# ruff: noqa: I001  (import order is registration order: the order `--backends all` reports them in)
from edgetransfer.backends import torch_backend, ort, ort_cuda, ort_trt, ort_openvino, openvino  # noqa: F401
from edgetransfer.backends.base import Backend, LoadOptions, Session, all_backends, get, register, unregister

__all__ = ["Backend", "LoadOptions", "Session", "all_backends", "get", "register", "unregister"]

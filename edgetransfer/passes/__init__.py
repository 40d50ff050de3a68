"""Export passes, Olive-style: each takes the artifacts before it and its own frozen config and returns artifact
records. Importing this package registers the built-in ones; :func:`plan` chooses them from an ExportConfig."""

from edgetransfer.passes import auto, onnx, onnx_int8, openvino, qat, tensorrt  # noqa: F401 - registers the passes
from edgetransfer.passes.base import (
    INT8_METHODS,
    PASSES,
    Artifact,
    ExportContext,
    Pass,
    int8_method,
    register,
)

__all__ = ["INT8_METHODS", "PASSES", "Artifact", "ExportContext", "Pass", "int8_method", "register"]

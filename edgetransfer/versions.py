"""Versions of the packages a run depends on, recorded in its card."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("edgetransfer", "torch", "torchvision", "onnx", "onnxruntime", "openvino", "numpy", "pillow")


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found

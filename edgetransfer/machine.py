"""What machine a measurement was taken on."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def cpuinfo() -> tuple[str | None, frozenset[str]]:
    """This CPU's model name and flags from /proc/cpuinfo, read once (None and empty where there is none)."""
    model, flags = None, frozenset()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
    return model, flags


def cpu_flags() -> set[str]:
    """This CPU's flags from /proc/cpuinfo (empty where there is none)."""
    return set(cpuinfo()[1])


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_overflows(flags: set[str] | None = None, arch: str | None = None) -> bool:
    """Whether int8 kernels on this CPU (``flags``/``arch``: another's) can overflow with 8-bit weights: an x86 CPU
    without VNNI multiplies uint8 activations by int8 weights and adds pairs in 16 bits (VPMADDUBSW), and
    2 x 255 x 127 > 32767 saturates; 7-bit weights (2 x 255 x 63 < 32767) cannot. ONNX Runtime's and OpenVINO's
    docs both name it; VNNI (and ARM's dot-product) instructions add in 32 bits. Unknown flags: False."""
    arch = (arch or platform.machine()).lower()
    if arch not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    flags = cpu_flags() if flags is None else flags
    if not flags:  # unknown (no /proc/cpuinfo: macOS, Windows, a device that did not say): not claimed
        return False
    return not any(flag in flags for flag in VNNI_FLAGS)


def machine_info() -> dict:
    """CPU model, usable cores and the SIMD flags that decide int8/bf16 speed."""
    name, flags = cpuinfo()
    model = name or platform.processor() or platform.machine()
    return {
        "cpu": model,
        "cores": usable_cores(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "platform": platform.platform(),
    }

"""Ctrl-C and SIGTERM handled on the thread's own stack, not on an alternate signal stack a library freed.

Python installs its signal handlers with ``SA_ONSTACK``: the kernel runs them on the thread's alternate signal stack
when one is registered. OpenVINO's CPU plugin registers one on the thread that compiles a model and puts back the one
before when the compiled model goes; compiled models released out of order (an export makes several) leave the main
thread's registration pointing at memory already freed. The next Ctrl-C then killed the process with SIGSEGV (exit
139, no "interrupted" line, a staging folder left behind: seen in 4 of 5 Ctrl-Cs during ``pipeline``'s bench after its
export). Handled without ``SA_ONSTACK``, SIGINT and SIGTERM run on the thread's stack, which is always there.

Only where the C library's ``struct sigaction`` layout is known (glibc on Linux, x86 and Arm); elsewhere nothing
changes.
"""

from __future__ import annotations

import ctypes
import platform
import signal
import sys

SA_ONSTACK = 0x08000000  # Linux's value on x86 and Arm (Alpha, PA-RISC, SPARC and MIPS differ: left alone)
SA_RESTORER = 0x04000000  # set by glibc itself
MACHINES = {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64"}  # glibc's struct sigaction is laid out as below


class _Sigaction(ctypes.Structure):
    """glibc's ``struct sigaction`` on Linux: the handler, a 1024-bit mask, the flags, the restorer."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


def _libc():
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or platform.machine().lower() not in MACHINES:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def on_thread_stack(signums=(signal.SIGINT, signal.SIGTERM)) -> list[int]:
    """Clear ``SA_ONSTACK`` from these signals' current handlers (the same handlers, mask and other flags); the
    signals changed. Call it again after ``signal.signal`` (which sets the flag again)."""
    libc = _libc()
    if libc is None:
        return []
    changed = []
    for signum in signums:
        action = _Sigaction()
        if libc.sigaction(int(signum), None, ctypes.byref(action)) != 0:
            continue
        if not action.flags & SA_ONSTACK:
            continue
        action.flags &= ~(SA_ONSTACK | SA_RESTORER)  # glibc supplies its restorer again
        if libc.sigaction(int(signum), ctypes.byref(action), None) == 0:
            changed.append(int(signum))
    return changed


def uses_alternate_stack(signum: int) -> bool | None:
    """Whether ``signum``'s handler runs on the alternate signal stack; None where it cannot be told."""
    libc = _libc()
    if libc is None:
        return None
    action = _Sigaction()
    if libc.sigaction(int(signum), None, ctypes.byref(action)) != 0:
        return None
    return bool(action.flags & SA_ONSTACK)

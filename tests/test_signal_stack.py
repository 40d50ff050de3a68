"""Ctrl-C on a thread whose alternate signal stack was freed (what OpenVINO's compiled models leave on the main
thread when they go out of order): an interruption, not a segmentation fault."""

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux"
    or platform.libc_ver()[0] != "glibc"
    or platform.machine().lower() not in {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64"},
    reason="glibc's struct sigaction on x86 and Arm only",
)

DANGLING = textwrap.dedent(
    """
    import ctypes, os, signal, sys, time
    from edgetransfer.signal_stack import on_thread_stack, uses_alternate_stack

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    class Stack(ctypes.Structure):
        _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]

    size = 1 << 16
    memory = libc.mmap(None, size, 3, 0x22, -1, 0)  # PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    assert libc.sigaltstack(ctypes.byref(Stack(memory, 0, size)), None) == 0
    assert libc.munmap(memory, size) == 0  # registered, then freed: what a library left behind
    if sys.argv[1] == "mended":
        assert on_thread_stack() == [signal.SIGINT]  # SIGTERM: the default action, no handler to run
        assert uses_alternate_stack(signal.SIGINT) is False
    else:
        assert uses_alternate_stack(signal.SIGINT) is True  # Python's own handler, as installed
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        print("interrupted")
    """
)


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DANGLING, mode], capture_output=True, text=True, timeout=60)


def test_ctrl_c_with_a_freed_alternate_stack_is_an_interruption():
    mended = run("mended")
    assert mended.returncode == 0 and mended.stdout.strip() == "interrupted", mended.stderr
    as_python_leaves_it = run("as-is")  # the same process without it: the crash this guards against
    assert as_python_leaves_it.returncode == -11, (as_python_leaves_it.returncode, as_python_leaves_it.stderr)


def test_the_cli_and_deferred_interrupts_leave_ctrl_c_on_the_threads_stack():
    import signal

    from edgetransfer.rundir import interrupts_deferred
    from edgetransfer.signal_stack import on_thread_stack, uses_alternate_stack

    before = signal.getsignal(signal.SIGINT)
    try:
        on_thread_stack()
        with interrupts_deferred():  # its own catching handlers too (the swap after OpenVINO's work)
            assert uses_alternate_stack(signal.SIGINT) is False and uses_alternate_stack(signal.SIGTERM) is False
        # restored with signal.signal, which sets SA_ONSTACK again
        assert uses_alternate_stack(signal.SIGINT) is False and uses_alternate_stack(signal.SIGTERM) is False
    finally:
        signal.signal(signal.SIGINT, before)
    probe = "import signal, edgetransfer.cli as c; from edgetransfer.signal_stack import uses_alternate_stack as u; "
    probe += "c.main.__globals__['_run'] = lambda: print(u(signal.SIGINT), u(signal.SIGTERM)); c.main()"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]

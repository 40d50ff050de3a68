"""What every command shares: one-line errors with exit codes, and option parsing helpers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from edgetransfer.errors import EdgeTransferError

F = TypeVar("F", bound=Callable)
# the --on options bench and search share (their help, so that the two commands say the same)
TARGETS_HELP = "targets.toml naming the devices."
WHEELHOUSE_HELP = "Wheels of the runtime's dependencies for devices without internet (pip download -d DIR)."
KNOWN_HOSTS_HELP = "Accept only the host keys in this file."
# what the [train] extra brings; a runtime-only install (pip install edgetransfer) has none of them
TRAIN_PACKAGES = {
    "torch",
    "torchvision",
    "onnx",
    "onnxslim",
    "openvino",
    "nncf",
    "safetensors",
    "sklearn",
    "scipy",
    "matplotlib",
}


def friendly_errors(fn: F) -> F:
    """Turn an :class:`EdgeTransferError` into ``error: <message>`` on stderr and its exit code (a bug still
    shows its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeTransferError as exc:
            from edgetransfer.launch import record_said

            print(f"error: {exc}", file=sys.stderr)
            record_said(f"error: {exc}")  # in a job of several processes: for its launcher
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in TRAIN_PACKAGES:
                print(
                    f"error: this command needs {exc.name.split('.')[0]}, which a runtime-only install lacks: "
                    "pip install 'edgetransfer[train]'",
                    file=sys.stderr,
                )
                raise typer.Exit(2) from None
            raise
        except KeyboardInterrupt:
            print("interrupted; nothing half-written was kept", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def split_list(value: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())

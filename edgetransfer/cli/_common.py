"""What every command shares: one-line errors with exit codes, and option parsing helpers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from edgetransfer.errors import EdgeTransferError

F = TypeVar("F", bound=Callable)


def friendly_errors(fn: F) -> F:
    """Turn an :class:`EdgeTransferError` into ``error: <message>`` on stderr and its exit code (a bug still
    shows its traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeTransferError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted; nothing half-written was kept", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def split_list(value: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())

"""The command line: one module per command, each a thin layer over one library function."""

from __future__ import annotations

import functools
import gc
import signal
import sys
from typing import Annotated

import typer

from edgetransfer.cli.bench import bench
from edgetransfer.cli.explain import explain
from edgetransfer.cli.export import export
from edgetransfer.cli.finetune import finetune
from edgetransfer.cli.models import models
from edgetransfer.cli.pipeline import pipeline
from edgetransfer.cli.predict import predict
from edgetransfer.cli.search import search
from edgetransfer.signal_stack import on_thread_stack


def _no_value_shown_for_flags() -> None:
    """Recent typer shows ``<bool>`` beside on/off flags (``--int8 --no-int8 <bool>``, even ``--help <bool>``), which
    reads as if they took a value (``--int8 true`` is refused). Flags take none: show none. Older typer (no such
    method) shows none already."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - typer's layout changed: its own help, as it is
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - typer's own signature
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_no_value_shown_for_flags()

app = typer.Typer(
    help="From a pretrained vision backbone to a fast, small, accurate model on an edge device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    """``--version``: the installed version, printed before any command (or torch) is loaded."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("edgetransfer")
        except PackageNotFoundError:  # a source tree that was never installed
            from edgetransfer import __version__ as installed
        print(f"edgetransfer {installed}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """From a pretrained vision backbone to a fast, small, accurate model on an edge device."""


def _summary(command) -> str:
    """A command's first paragraph on one line, for the list of commands (its line breaks were kept there: a
    wrapped word stood alone on a line)."""
    import inspect

    return " ".join(inspect.cleandoc(command.__doc__ or "").split("\n\n")[0].split())


for _command in (pipeline, finetune, export, bench, explain, predict, models, search):
    app.command(short_help=_summary(_command))(_command)


def main() -> None:
    """The ``edgetransfer`` command. A mistake on the command line (an unknown option, a value of the wrong type)
    is one line, ``error: ...``, and exit 2, like every other user error."""
    # The garbage collector's defaults cost every command about half a second on this 2-core machine: importing torch
    # and torchvision runs hundreds of collections, and the collections at interpreter exit walk every object they
    # made. Collecting the youngest generation every GC_GEN0 allocations instead of every 700, and freezing the
    # survivors before the exit, took `python -c "import torch, torchvision"` from 2.25 s to 1.77 s (three runs
    # each). Cycles are still collected, less often; nothing at exit is skipped (atexit, finalizers still run).
    gc.set_threshold(GC_GEN0, *gc.get_threshold()[1:])
    signal.signal(signal.SIGTERM, _terminated)
    on_thread_stack()  # Ctrl-C after OpenVINO's compiled models are gone: a crash (edgetransfer/signal_stack.py)
    code: object = 0
    try:
        _run()
    except SystemExit as exc:
        code = exc.code
        raise
    except BaseException:  # a traceback on its way out: the interpreter exits 1
        code = 1
        raise
    finally:
        gc.freeze()
        # The command's work is done and said; what is left is the interpreter's exit (libraries' exit handlers,
        # finalizers). A Ctrl-C or SIGTERM there printed a KeyboardInterrupt traceback from whichever exit handler
        # it hit: now it ends the process at once, with the command's own exit code, its output flushed.
        code = code if isinstance(code, int) else 0 if code is None else 1
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, functools.partial(_interrupted_at_exit, code))


def _interrupted_at_exit(code: int, signum, frame) -> None:
    """Ctrl-C or SIGTERM after the command: flush what it printed and exit with its code, skipping the rest of the
    interpreter's exit (nothing of the command's is left to do there)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


TERMINATED: list[int] = []


def _terminated(signum, frame) -> None:
    """SIGTERM (a CI job cancelled, ``docker stop``, ``timeout``) stops a command as Ctrl-C does, through the same
    clean-up: it left an export's staging folder and a bench's temporary files behind. A second one kills."""
    TERMINATED.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


GC_GEN0 = 100_000


def _parser_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """The command-line parser's usage errors and its Abort, from typer's own copy of click (later typers) and from
    click itself (older typers run on it). Both can be installed at once (MLflow brings click): catching click's
    alone let every mistake typer's copy raised end in a traceback, exit 1 (a new user's trial)."""
    errors, aborts = [], []
    try:
        from typer import Abort, TyperException

        errors.append(TyperException)
        aborts.append(Abort)
    except ImportError:
        pass
    try:
        from click.exceptions import Abort, ClickException

        errors.append(ClickException)
        aborts.append(Abort)
    except ModuleNotFoundError:
        pass
    return tuple(dict.fromkeys(errors)), tuple(dict.fromkeys(aborts))


def _run() -> None:
    errors, aborts = _parser_errors()
    try:
        code = app(standalone_mode=False)
    except errors as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see 'edgetransfer {ctx.info_name} --help')" if ctx is not None and ctx.parent is not None else ""
        if exc.format_message():  # (no command at all: the help was printed, and that is the message)
            print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except aborts:
        print("interrupted", file=sys.stderr)
        code = 130
    if TERMINATED and code == 130:  # the shell's code for a SIGTERM, as CI systems expect
        code = 128 + signal.SIGTERM
    sys.exit(code if isinstance(code, int) else 0)

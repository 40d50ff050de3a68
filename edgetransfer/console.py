"""The terminal: results go to stdout, progress and notes to stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _console(**kwargs) -> Console:
    """A console; written to a file or pipe (a CI log) it is 160 columns wide, so that tables are not cut."""
    console = Console(highlight=False, soft_wrap=True, **kwargs)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=160, **kwargs)
    return console


out = _console()
err = _console(stderr=True)


class _Progress(Progress):
    def add_task(self, description, *args, **fields):  # every task has the status column's field, "" by default
        fields.setdefault("status", "")
        return super().add_task(description, *args, **fields)


def progress() -> Progress:
    """A progress bar on stderr: description, bar, done/total, elapsed and remaining time."""
    return _Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # a bar in a log file is noise; the per-epoch lines stay
    )

"""The command line: one module per command, each a thin layer over one library function."""

from __future__ import annotations

import typer

from edgetransfer.cli.bench import bench
from edgetransfer.cli.export import export
from edgetransfer.cli.finetune import finetune
from edgetransfer.cli.models import models
from edgetransfer.cli.pipeline import pipeline
from edgetransfer.cli.predict import predict

app = typer.Typer(
    help="From a pretrained vision backbone to a fast, small, accurate model on an edge device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(pipeline)
app.command()(finetune)
app.command()(export)
app.command()(bench)
app.command()(predict)
app.command()(models)


def main() -> None:
    app()

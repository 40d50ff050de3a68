"""edgetransfer models."""

from __future__ import annotations

from edgetransfer.cli._common import friendly_errors


@friendly_errors
def models() -> None:
    """List the backbones edgetransfer knows and whether their weights are available offline here."""
    from rich.table import Table

    from edgetransfer import backbones, console

    table = Table()
    for col in ("backbone", "features", "input", "weights"):
        table.add_column(col, no_wrap=col != "weights")
    for name in backbones.names():
        spec = backbones.get(name)
        table.add_row(name, str(spec.feature_dim), f"{spec.input_size}px", backbones.weights_status(spec))
    console.out.print(table)

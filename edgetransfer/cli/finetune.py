"""edgetransfer finetune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors

DATA_HELP = (
    "Image folder: DIR/<class>/*.png|jpg (split 70/15/15 with --seed) or DIR/train|val|test/<class>/...; "
    "'digits' for the built-in handwritten digits."
)


def default_out(data: str, backbone: str) -> str:
    return str(Path("models") / f"{Path(data).name or 'data'}-{backbone}")


@friendly_errors
def finetune(
    data: Annotated[str, typer.Option("--data", help=DATA_HELP)],
    backbone: Annotated[str, typer.Option(help="Backbone name (see 'edgetransfer models').")] = "mobilenet_v2",
    out: Annotated[
        str | None, typer.Option(help="Run directory to create.", show_default="models/<data>-<backbone>")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Start from this weights file (.pth or .safetensors) instead of ImageNet.")
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="Input resolution in pixels.", show_default="the backbone's, 224")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, one-cycle schedule).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for the split, the initial head and the batch order.")] = 0,
    device: Annotated[str, typer.Option(help="auto (a GPU when present), cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it already exists.")] = False,
) -> None:
    """Fine-tune an ImageNet backbone on your labelled images; keep the best checkpoint (by val accuracy)."""
    from edgetransfer.finetune import FinetuneConfig
    from edgetransfer.finetune import finetune as run_finetune
    from edgetransfer.pipeline import resolve_data

    data = resolve_data(data, seed)
    config = FinetuneConfig(
        data=data,
        out=out or default_out(data, backbone),
        backbone=backbone,
        weights=str(weights) if weights else None,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        workers=workers,
        overwrite=overwrite,
    )
    run = run_finetune(config)
    typer.echo(str(run.path))

"""edgetransfer pipeline."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors
from edgetransfer.cli.finetune import (
    DATA_HELP,
    OUT_HELP,
    config_default,
    default_out,
    kept_after_write_error,
    say_interrupted,
)
from edgetransfer.errors import WriteError


@friendly_errors
def pipeline(
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    backbone: Annotated[str, typer.Option(help="Backbone name (see 'edgetransfer models').")] = "mobilenet_v2",
    out: Annotated[str | None, typer.Option(help=OUT_HELP, show_default=False)] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Input resolution in pixels.", show_default="from the images (96 for the digits)"),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Fine-tuning epochs, at most (early stopping as in finetune).", show_default=config_default("epochs")
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(help="Training time at most: 90s, 30m, 2h or plain seconds (epochs are re-planned), as finetune."),
    ] = None,
    device: Annotated[str, typer.Option(help="Training device: auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the split and the training.")] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out if it is a run made by edgetransfer (never any other folder).")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option(help="Train on the readable images of a folder with bad files (listed in the card).")
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Start from this weights file (.pth or .safetensors) instead of ImageNet's: the backbone's own, or "
            "a run's model.safetensors (its body; the head is new)."
        ),
    ] = None,
) -> None:
    """Run finetune -> export (fp32, int8, OpenVINO) -> bench, and print accuracies and a latency table."""
    from edgetransfer.durations import parse_duration
    from edgetransfer.finetune import FinetuneConfig
    from edgetransfer.pipeline import run_pipeline, summary

    config = FinetuneConfig(
        data=data,
        out=out or default_out(data, backbone),
        backbone=backbone,
        size=size,
        **({"epochs": epochs} if epochs is not None else {}),  # finetune's default, not a copy of it
        time_budget=parse_duration(time_budget) if time_budget is not None else None,
        skip_bad=skip_bad,
        weights=str(weights) if weights is not None else None,
        device=device,
        seed=seed,
        overwrite=overwrite,
    )
    started = time.time()
    again = f"edgetransfer finetune --resume --out {shlex.quote(config.out)}"  # what goes on from a stopped one
    try:
        done = run_pipeline(config)
    except KeyboardInterrupt:
        later = _later_stage(config.out, started)
        if later:  # fine-tuned (and exported): the next commands, not only "nothing half-written was kept"
            print(f"interrupted; {later}", file=sys.stderr)
        else:
            say_interrupted(config.out, started, resume=False, again=again)
        raise typer.Exit(130) from None
    except WriteError as exc:
        raise kept_after_write_error(exc, config.out, started, resume=False, again=again) from None
    summary(*done)


def _later_stage(out: str, started: float) -> str:
    """What a pipeline stopped after its fine-tune keeps and the commands that go on from it, or "" (stopped in the
    fine-tune: said by finetune's rule). Run again, the pipeline refused the folder, and --overwrite trained again (a
    new user's trial)."""
    from edgetransfer.adapt import not_adapted
    from edgetransfer.cli.finetune import _finished_card
    from edgetransfer.rundir import CARD

    card = _finished_card(Path(out) / CARD)
    if card is None or (Path(out) / CARD).stat().st_mtime < started or not_adapted(card):
        return ""
    run = shlex.quote(str(out))
    if card.complete.get("export"):
        return f"{out} keeps the fine-tuned and exported run: 'edgetransfer bench {run}' measures it"
    return f"{out} keeps the fine-tuned run: 'edgetransfer export {run}', then 'edgetransfer bench {run}', go on"

"""edgetransfer explain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors
from edgetransfer.explain import ExplainConfig  # the defaults below are the library's own


@friendly_errors
def explain(
    run: Annotated[Path, typer.Argument(help="Run directory with exported models ('edgetransfer export').")],
    threads: Annotated[
        int, typer.Option(help="Intra-op threads for the profiles (1..1024, as bench).")
    ] = ExplainConfig.threads,
    runs: Annotated[
        int, typer.Option(help="Timed inferences per model after warm-up (1..10000).")
    ] = ExplainConfig.runs,
    images: Annotated[
        int,
        typer.Option(
            help="Validation images for the per-layer int8 error (SQNR; 1..256), spread through the classes (the "
            "whole-model checks take --check-images)."
        ),
    ] = ExplainConfig.images,
    check_images: Annotated[
        int,
        typer.Option(
            help="Validation images, at most, on which int8's outputs are checked against fp32's and its kernels "
            "against exact int8 arithmetic (1..100000; never fewer than --images), spread through the classes. Each "
            "is decoded and kept in memory: fewer for a quicker look, more for a rare overflow."
        ),
    ] = ExplainConfig.check_images,
    data: Annotated[
        str | None,
        typer.Option(
            help="Where the run's own data folder is now, if it moved (its images are checked against the run's "
            "record).",
            show_default="the card's; where it is gone, the folder its export was given with --data",
        ),
    ] = None,
) -> None:
    """Why is my int8 slow or wrong: time per op type, which layers run in int8, what quantize/dequantize and
    reorders cost, the CPU's instruction set, and each layer's int8 error; writes RUN/explain.json."""
    from edgetransfer import console
    from edgetransfer.explain import EXPLAIN_JSON
    from edgetransfer.explain import explain as run_explain
    from edgetransfer.rundir import RunDir

    found = RunDir.open(run)
    doc = run_explain(
        found, ExplainConfig(threads=threads, runs=runs, images=images, check_images=check_images, data=data)
    )
    for line in doc["verdict"]:
        console.out.print(f"- {line}")
    console.err.print(f"detail: {found.file(EXPLAIN_JSON)}")

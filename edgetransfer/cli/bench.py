"""edgetransfer bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors, split_list


@friendly_errors
def bench(
    run: Annotated[Path, typer.Argument(help="Run directory with exported models.")],
    backends: Annotated[
        str, typer.Option(help="Comma-separated: torch-cpu, torch-cuda, ort-cpu, openvino-cpu; or 'all' (those here).")
    ] = "torch-cpu,ort-cpu,openvino-cpu",
    variants: Annotated[str, typer.Option(help="Comma-separated model variants: fp32, int8.")] = "fp32,int8",
    batch: Annotated[int, typer.Option(help="Images per inference.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for every backend.", show_default="all cores")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (backend default; OpenVINO may run fp32 in bf16) or fp32 (force fp32 math).")
    ] = "auto",
    warmup: Annotated[int, typer.Option(help="Untimed runs before measuring.")] = 10,
    min_runs: Annotated[int, typer.Option(help="Timed runs, at least.")] = 50,
    min_time: Annotated[float, typer.Option(help="Seconds of timed runs, at least.")] = 1.0,
    accuracy: Annotated[bool, typer.Option(help="Measure top-1 on the run's test split.")] = True,
    data: Annotated[
        Path | None, typer.Option(help="Labelled image folder for accuracy.", show_default="the run's")
    ] = None,
) -> None:
    """Measure latency (p50/p90/p99), throughput, size and accuracy per backend; write bench.json in the run."""
    from edgetransfer import console
    from edgetransfer.bench import BenchConfig, table
    from edgetransfer.bench import bench as run_bench
    from edgetransfer.rundir import BENCH_JSON, RunDir

    config = BenchConfig(
        backends=split_list(backends),
        variants=split_list(variants),
        batch=batch,
        threads=threads,
        precision=precision,
        warmup=warmup,
        min_runs=min_runs,
        min_time=min_time,
        accuracy=accuracy,
        data=str(data) if data else None,
    )
    target = RunDir.open(run)
    console.out.print(table(run_bench(target, config)))
    console.out.print(f"wrote {target.file(BENCH_JSON)}")

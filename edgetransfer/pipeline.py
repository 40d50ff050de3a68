"""The whole job in one call: finetune -> export (fp32 + int8 + OpenVINO) -> bench."""

from __future__ import annotations

import time

from edgetransfer import console
from edgetransfer.bench import BenchConfig, table
from edgetransfer.bench.command import run_command
from edgetransfer.bench.report import noisy
from edgetransfer.export import ExportConfig, export
from edgetransfer.finetune import FinetuneConfig, finetune
from edgetransfer.rundir import BENCH_REPORTS, RunDir


def run_pipeline(
    finetune_config: FinetuneConfig,
    *,
    export_config: ExportConfig = ExportConfig(),
    bench_config: BenchConfig = BenchConfig(),
) -> tuple[RunDir, dict, dict[str, float]]:
    """Fine-tune, export and benchmark (writing the reports ``edgetransfer bench`` writes: bench.json, .csv, .md and
    .html in the run); returns the run, the bench document and each stage's wall time."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    run = finetune(finetune_config)  # resolves the built-in digits itself
    timings["finetune"] = time.perf_counter() - started
    export(run, export_config)
    timings["export"] = time.perf_counter() - started - timings["finetune"]
    document = run_command(run, bench_config).document
    timings["bench"] = time.perf_counter() - started - timings["finetune"] - timings["export"]
    timings["total"] = time.perf_counter() - started
    return run, document, timings


def summary(run: RunDir, document: dict, timings: dict[str, float]) -> None:
    """Print the test accuracies and the latency table."""
    metrics = run.load_card().metrics
    console.out.print(f"\nrun: {run.path}")
    console.out.print("test top-1 accuracy:")
    for key, label in [
        ("torch", "PyTorch (fine-tuned)"),
        ("onnx_fp32", "ONNX fp32"),
        ("onnx_fp16", "ONNX fp16"),
        ("onnx_int8", "ONNX int8"),
        ("openvino_fp32", "OpenVINO fp32 IR"),
        ("openvino_fp16", "OpenVINO fp16 IR"),
        ("openvino_int8", "OpenVINO int8 IR"),
    ]:
        if key in metrics:
            top1 = metrics[key].get("test_top1")
            console.out.print(f"  {label:<22} {'not measured (no test images)' if top1 is None else f'{top1:.2%}'}")
    console.out.print(table(document))
    for line in noisy(document):
        console.err.print(f"[yellow]{line}[/]", markup=True)
    written = [str(run.file(name)) for name in BENCH_REPORTS if run.file(name).is_file()]
    console.out.print("bench reports: " + ", ".join(written), markup=False)
    console.out.print(
        "wall time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if k != "total")
        + f"; total {timings['total']:.1f}s"
    )

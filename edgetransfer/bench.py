"""Benchmark a run's models on the chosen backends: latency percentiles, throughput, size and accuracy."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgetransfer import backends as backend_registry
from edgetransfer import console
from edgetransfer.backends.base import PRECISIONS, LoadOptions
from edgetransfer.data import batches, load_splits
from edgetransfer.errors import RunDirError, UsageError
from edgetransfer.evaluation import top1
from edgetransfer.machine import machine_info, usable_cores
from edgetransfer.rundir import BENCH_JSON, RunDir, atomic_write_text
from edgetransfer.versions import package_versions

BENCH_SCHEMA_VERSION = 1
DEFAULT_BACKENDS = ("torch-cpu", "ort-cpu", "openvino-cpu")
VARIANTS = ("fp32", "int8")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS  # or ("all",): every backend available here
    variants: tuple[str, ...] = VARIANTS
    batch: int = 1
    threads: int | None = None  # default: every usable core
    precision: str = "auto"
    warmup: int = 10
    min_runs: int = 50
    min_time: float = 1.0  # seconds
    accuracy: bool = True
    data: str | None = None
    threads_resolved: int = field(default=0, compare=False)

    def validate(self) -> None:
        if self.batch < 1 or self.min_runs < 1 or self.warmup < 0 or self.min_time < 0:
            raise UsageError("--batch and --min-runs must be at least 1; --warmup and --min-time not negative")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise UsageError(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")


def latency_stats(times_ms: list[float], batch: int) -> dict:
    """Percentiles, mean, stdev and coefficient of variation of per-inference times, and images/s."""
    arr = np.asarray(times_ms)
    mean = float(arr.mean())
    stdev = float(statistics.stdev(times_ms)) if len(times_ms) > 1 else 0.0
    return {
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": mean,
        "stdev": stdev,
        "cv_percent": 100 * stdev / mean if mean else 0.0,
        "runs": len(times_ms),
        "throughput": 1000.0 * batch / mean if mean else 0.0,
    }


def time_session(session, images: np.ndarray, config: BenchConfig) -> list[float]:
    """Per-run times in ms after warm-up, until both ``min_runs`` and ``min_time`` are met."""
    for _ in range(config.warmup):
        session.run(images)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < config.min_runs or time.perf_counter() - started < config.min_time:
        t0 = time.perf_counter_ns()
        session.run(images)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def _resolve_backends(names: tuple[str, ...]) -> list:
    if names == ("all",):
        return [b for b in backend_registry.all_backends() if b.is_available()]
    chosen = [backend_registry.get(n) for n in names]
    for backend in chosen:
        backend.require()
    return chosen


def _size(path: Path) -> int:
    extra = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return path.stat().st_size + (extra.stat().st_size if extra and extra.is_file() else 0)


def bench(run: RunDir, config: BenchConfig = BenchConfig()) -> dict:
    """Measure every (backend, variant) present in ``run``; write and return the ``bench.json`` document."""
    config.validate()
    card = run.load_card()
    chosen = _resolve_backends(config.backends)
    threads = config.threads or usable_cores()
    test = ()
    if config.accuracy:
        folder = config.data or card.dataset.get("path")
        if folder and Path(folder).is_dir():
            test = load_splits(folder, seed=card.dataset.get("seed", 0)).test
        else:
            console.err.print(f"[yellow]note: data folder {folder} not found; accuracy not measured (--data DIR)[/]")
    sample = next(batches(test or (), card.preprocessing), (None,))[0]
    if sample is None:
        sample = np.random.default_rng(0).standard_normal((1, 3, card.preprocessing.crop, card.preprocessing.crop))
    images = np.repeat(sample[:1].astype(np.float32), config.batch, axis=0)
    reference = card.metrics.get("torch", {}).get("test_top1")
    results, skipped = [], []
    for backend in chosen:
        for variant in config.variants:
            rel = backend.variants.get(variant)
            if rel is None:  # e.g. torch has no int8 variant
                continue
            path = run.file(rel)
            if not path.is_file():
                reason = f"{rel} is not in the run (run 'edgetransfer export')"
                skipped.append({"backend": backend.name, "variant": variant, "reason": reason})
                continue
            with console.err.status(f"benchmarking {backend.name} {variant}..."):
                t0 = time.perf_counter()
                session = backend.load(path, card, LoadOptions(threads, config.precision, config.batch))
                load_s = time.perf_counter() - t0
                stats = latency_stats(time_session(session, images, config), config.batch)
                accuracy = None
                if test:
                    accuracy = top1(
                        backend.load(path, card, LoadOptions(threads, config.precision)), test, card.preprocessing
                    )
            results.append(
                {
                    "backend": backend.name,
                    "variant": variant,
                    "precision": session.precision,
                    "model": rel,
                    "model_bytes": _size(path),
                    "load_s": load_s,
                    "latency_ms": stats,
                    "test_top1": accuracy,
                    "test_images": len(test),
                    "top1_delta_points": None
                    if accuracy is None or reference is None
                    else 100 * (accuracy - reference),
                }
            )
    for item in skipped:
        console.err.print(f"[yellow]skipped {item['backend']} {item['variant']}: {item['reason']}[/]")
    if not results:
        raise RunDirError(f"nothing to benchmark in {run.path}: run 'edgetransfer export {run.path}' first")
    document = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(run.path),
        "backbone": card.backbone,
        "input": card.preprocessing.input_shape,
        "settings": {**asdict(config), "threads_resolved": threads},
        "machine": machine_info(),
        "versions": package_versions(),
        "results": results,
        "skipped": skipped,
    }
    atomic_write_text(run.file(BENCH_JSON), json.dumps(document, indent=2) + "\n")
    return document


def table(document: dict):
    """A rich table of a bench document."""
    from rich.table import Table

    settings = document["settings"]
    title = (
        f"{document['backbone']} {document['input'][2]}px, batch {settings['batch']}, "
        f"{settings['threads_resolved']} thread(s); latency in ms"
    )
    out = Table(title=title)
    for col in ("backend", "model", "runs in", "top-1", "p50", "p90", "p99", "img/s", "MB"):
        text = col in ("backend", "model", "runs in")
        out.add_column(col, justify="left" if text else "right", no_wrap=True)
    for r in document["results"]:
        lat = r["latency_ms"]
        acc = "-" if r["test_top1"] is None else f"{100 * r['test_top1']:.2f}%"
        out.add_row(
            r["backend"],
            r["variant"],
            r["precision"],
            acc,
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['throughput']:.0f}",
            f"{r['model_bytes'] / 1e6:.1f}",
        )
    return out

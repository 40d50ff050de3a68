"""Bench documents made up in memory (schema-valid), for tests of the gate, reports and profiles."""

from __future__ import annotations

import numpy as np

from edgetransfer.bench.schema import BENCH_SCHEMA_VERSION, validate_document
from edgetransfer.bench.stats import latency_stats

MACHINE = {"cpu": "Test CPU", "cores": 2, "flags": ["avx2"], "platform": "Linux"}
VERSIONS = {"python": "3.11.0", "onnxruntime": "1.20.0", "openvino": "2025.0"}


def samples(median_ms: float, n: int = 200, *, spread: float = 0.03, seed: int = 0) -> list[float]:
    """Latency-like samples: lognormal around ``median_ms`` with a few slow outliers."""
    rng = np.random.default_rng(seed)
    values = median_ms * np.exp(rng.normal(0, spread, n))
    values[rng.random(n) < 0.02] *= 1.5
    return [round(float(v), 5) for v in values]


def result(backend: str, variant: str, latency: dict[int, list[float]], *, top1: float | None = 0.9, **extra) -> dict:
    out = {
        "backend": backend,
        "variant": variant,
        "precision": variant,
        "threads": 2,
        "model": f"model.{variant}.onnx",
        "model_bytes": 4_000_000 if variant == "int8" else 9_000_000,
        "model_sha256": "0" * 64,
        "load_s": 0.1,
        "first_run_ms": 2.0,
        "rss_start_mb": 40.0,
        "peak_rss_mb": 120.0,
        "latency": [
            {"batch": b, **latency_stats(s, b), "rounds": [len(s)], "samples_ms": list(s)} for b, s in latency.items()
        ],
        "async": [],
        "accuracy": None
        if top1 is None
        else {"top1": top1, "top5": 1.0, "k": 3, "images": 100, "top1_delta_points": 0.0, "top5_delta_points": 0.0},
    }
    out.update(extra)
    return out


def document(results: list[dict], **overrides) -> dict:
    """A complete bench document around ``results`` (accuracy deltas against the first fp32 result)."""
    reference = next((r["accuracy"] for r in results if r["variant"] == "fp32" and r["accuracy"]), None)
    for r in results:
        if r["accuracy"] and reference:
            r["accuracy"]["top1_delta_points"] = 100 * (r["accuracy"]["top1"] - reference["top1"])
    doc = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": "edgetransfer.bench",
        "created": "2026-01-01T00:00:00+00:00",
        "run": "models/test",
        "model": {
            "backbone": "mobilenet_v2",
            "input": ["batch", 3, 32, 32],
            "num_classes": 3,
            "labels": ["a", "b", "c"],
        },
        "settings": {
            "backends": ["ort-cpu"],
            "batches": sorted({lat["batch"] for r in results for lat in r["latency"]}),
            "precision": "auto",
            "min_runs": 50,
            "min_time": 1.0,
            "rounds": 5,
            "threads_resolved": 2,
            "isolated": True,
            "warmup": 10,
            "warmup_time": 0.2,
            "profile": None,
        },
        "profile": None,
        "machine": dict(MACHINE),
        "versions": dict(VERSIONS),
        "accuracy_data": {"source": "test", "images": 100},
        "accuracy_reference": None,
        "results": results,
        "skipped": [],
        "failed": [],
        "unavailable": [],
        "budget_checks": [],
        "recommendation": None,
        "gate": None,
    }
    doc.update(overrides)
    return validate_document(doc, "fake document")

import json

import numpy as np
import pytest

from edgetransfer.bench import BENCH_SCHEMA_VERSION, BenchConfig, bench, latency_stats
from edgetransfer.errors import BackendUnavailableError, UsageError


def test_latency_stats_are_the_percentiles_of_the_times():
    times = [float(t) for t in range(1, 101)]  # 1..100 ms
    stats = latency_stats(times, batch=2)
    assert stats["p50"] == pytest.approx(np.percentile(times, 50))
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["throughput"] == pytest.approx(2000 / 50.5)
    assert stats["runs"] == 100


def test_bench_writes_every_variant_with_accuracy(trained_run):
    doc = bench(trained_run, BenchConfig(warmup=1, min_runs=5, min_time=0))
    saved = json.loads(trained_run.file("bench.json").read_text())
    assert saved["schema_version"] == BENCH_SCHEMA_VERSION == doc["schema_version"]
    got = {(r["backend"], r["variant"]) for r in saved["results"]}
    assert got == {
        ("torch-cpu", "fp32"),
        ("ort-cpu", "fp32"),
        ("ort-cpu", "int8"),
        ("openvino-cpu", "fp32"),
        ("openvino-cpu", "int8"),
    }
    for result in saved["results"]:
        lat = result["latency_ms"]
        assert result["latency_ms"]["runs"] >= 5 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert 0 <= result["test_top1"] <= 1 and result["model_bytes"] > 0
    assert {"cpu", "cores", "flags"} <= set(saved["machine"])


def test_precision_fp32_makes_openvino_run_fp32(trained_run):
    doc = bench(
        trained_run,
        BenchConfig(
            backends=("openvino-cpu",),
            variants=("fp32",),
            precision="fp32",
            warmup=0,
            min_runs=2,
            min_time=0,
            accuracy=False,
        ),
    )
    assert doc["results"][0]["precision"] == "fp32"


def test_unknown_or_missing_backends_are_named(trained_run):
    with pytest.raises(UsageError, match="unknown backend 'tpu'"):
        bench(trained_run, BenchConfig(backends=("tpu",)))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="torch-cuda"):
            bench(trained_run, BenchConfig(backends=("torch-cuda",)))

"""Benchmark a run's models: latency, throughput, memory, accuracy per backend and variant; profiles with
budgets; reports (table, JSON, CSV, Markdown, HTML); and a noise-aware regression gate for CI.

Modules: :mod:`.config` (what to measure), :mod:`.plan` (which files, checked before loading), :mod:`.measure`
(one model, in a process of its own), :mod:`.runner` (:func:`bench`), :mod:`.stats`, :mod:`.schema` (bench.json),
:mod:`.profiles`, :mod:`.gate` (the verdict) and :mod:`.gate_text` (in words), :mod:`.report` and :mod:`.html`, and
:mod:`.command` (what ``edgetransfer bench`` does).
"""

from edgetransfer.bench.config import DEFAULT_BACKENDS, VARIANTS, BenchConfig, make_config
from edgetransfer.bench.report import table
from edgetransfer.bench.runner import bench
from edgetransfer.bench.schema import BENCH_SCHEMA_VERSION, load_document, validate_document
from edgetransfer.bench.stats import latency_stats

__all__ = [
    "BENCH_SCHEMA_VERSION",
    "DEFAULT_BACKENDS",
    "VARIANTS",
    "BenchConfig",
    "bench",
    "latency_stats",
    "load_document",
    "make_config",
    "table",
    "validate_document",
]

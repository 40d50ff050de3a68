"""The ``bench.json`` schema (versioned): what every document holds, checked when one is read back (a baseline, a
document from a device) and before a fresh one is written (a number no measurement can give is never reported).

One pydantic schema (see :mod:`edgetransfer.schemas`): types, NaN and infinities, latencies that are zero or
negative, settings that would measure for hours, absurd sizes; the first mistake is one line naming the file and
the key path. Tables this version reads are closed where the project writes them whole (a latency entry: an unknown
key is an error); elsewhere a key added by a newer edgetransfer of the same schema version is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, Strict, ValidationError, model_validator

from edgetransfer.bench.config import MAX_BATCH, RANGES
from edgetransfer.errors import UsageError
from edgetransfer.schemas import MAX_JSON_FILE_BYTES, Name, Schema, Text, error_line, read_text

BENCH_SCHEMA_VERSION = 2  # 1: the foundation's bench.json (one batch size, no samples)
KIND = "edgetransfer.bench"
MAX_SAMPLES = 10_000_000  # timed runs of one model at one batch size
MAX_RESULTS = 10_000

Ms = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]  # a time: a finite number above 0
NonNegative = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
Points = Annotated[float, Strict(), Field(ge=-100, le=100, allow_inf_nan=False)]
Count = Annotated[int, Strict(), Field(ge=0, le=10**12)]
Batch = Annotated[int, Strict(), Field(ge=1, le=MAX_BATCH)]
Threads = Annotated[int, Strict(), Field(ge=1, le=1024)]
Path_ = Annotated[str, Strict(), Field(max_length=4096)]


class Open(Schema):
    """A table a newer edgetransfer may add keys to (kept, not checked)."""

    model_config = ConfigDict(extra="allow")


class Latency(Schema):
    batch: Batch
    p50_ms: Ms
    p90_ms: Ms
    p99_ms: Ms
    mean_ms: Ms
    min_ms: Ms
    stdev_ms: NonNegative
    cv_percent: NonNegative
    throughput_ips: NonNegative
    runs: Count
    rounds: Annotated[list[Annotated[int, Strict(), Field(ge=1)]], Field(min_length=1, max_length=100_000)]
    samples_ms: Annotated[list[Ms], Field(max_length=MAX_SAMPLES)]

    @model_validator(mode="after")
    def _counts_agree(self) -> Latency:
        if len(self.samples_ms) != self.runs:
            raise ValueError(f"{len(self.samples_ms)} samples_ms for {self.runs} runs (expected one per run)")
        if sum(self.rounds) != len(self.samples_ms):
            raise ValueError(f"rounds add up to {sum(self.rounds)} runs, but samples_ms holds {len(self.samples_ms)}")
        return self


class Async(Open):
    batch: Batch
    images_per_s: NonNegative
    requests: Count
    inferences: Count
    seconds: NonNegative


class Accuracy(Open):
    top1: Fraction
    top5: Fraction
    k: Count
    images: Count
    top1_delta_points: Points | None
    top5_delta_points: Points | None


class Result(Open):
    backend: Name
    variant: Name
    precision: Name
    threads: Threads | None
    model: Path_
    model_bytes: Annotated[int, Strict(), Field(ge=0, le=10**13)]
    model_sha256: Annotated[str, Strict(), Field(max_length=64)]
    load_s: NonNegative
    first_run_ms: NonNegative
    rss_start_mb: NonNegative | None
    peak_rss_mb: NonNegative | None
    latency: Annotated[list[Latency], Field(max_length=64)]
    async_: Annotated[list[Async], Field(alias="async", max_length=64)]
    accuracy: Accuracy | None


class Model(Open):
    backbone: Name
    input: list[Any]
    num_classes: Annotated[int, Strict(), Field(ge=1, le=1_000_000)]
    labels: Annotated[list[Text], Field(max_length=1_000_000)]


class Machine(Open):
    cpu: Text
    cores: Threads
    flags: list[Text]


def _setting(name: str) -> Any:
    low, high, _ = RANGES[name]
    kind = int if name in ("warmup", "min_runs", "rounds", "processes", "threads") else float  # as in BenchConfig
    return Annotated[kind, Strict(), Field(ge=low, le=high, allow_inf_nan=False)]


class Settings(Open):
    backends: list[Name]
    batches: Annotated[list[Batch], Field(min_length=1, max_length=64)]
    precision: Name
    min_runs: _setting("min_runs")
    min_time: _setting("min_time")
    rounds: _setting("rounds")
    threads_resolved: _setting("threads")
    isolated: Annotated[bool, Strict()]
    warmup: _setting("warmup") | None = None
    warmup_time: _setting("warmup_time") | None = None
    processes: _setting("processes") | None = None
    async_time: _setting("async_time") | None = None
    threads: _setting("threads") | None = None
    max_accuracy_drop: _setting("max_accuracy_drop") | None = None
    timeout: _setting("timeout") | None = None


class Named(Open):
    backend: Name
    variant: Name


class Failed(Named):
    error: Text


class Skipped(Named):
    reason: Text


class Reference(Open):
    run: Path_
    results: Annotated[list[Result], Field(max_length=MAX_RESULTS)]


class Probe(Open):
    """The machine probe's timed runs (``--save-baseline``): the yardstick of a stored baseline's machine factor."""

    latency: Annotated[list[Latency], Field(min_length=1, max_length=64)]


class BenchDocument(Open):
    schema_version: Annotated[int, Strict()]
    kind: Name
    created: Name
    run: Path_
    model: Model
    settings: Settings
    profile: dict[str, Any] | None
    machine: Machine
    versions: dict[str, Any]
    accuracy_data: dict[str, Any]
    accuracy_reference: dict[str, Any] | None
    results: Annotated[list[Result], Field(max_length=MAX_RESULTS)]
    skipped: list[Skipped]
    failed: list[Failed]
    unavailable: list[dict[str, Any]]
    budget_checks: list[dict[str, Any]]
    recommendation: dict[str, Any] | None
    gate: dict[str, Any] | None
    reference: Reference | None = None
    probe: Probe | None = None


def problem(document: Any) -> str | None:
    """What is wrong with a bench document of the current schema, as ``KEY: expected ...`` (None when it is
    complete and every number is one a measurement can give)."""
    try:
        BenchDocument.model_validate(document)
    except ValidationError as exc:
        return error_line(exc, "", BenchDocument)
    return None


def values(document: dict) -> list[str]:
    """[] when a freshly measured document is sound, else the one line saying what is not (a latency that is NaN,
    infinite, zero or negative, settings that would measure for hours...)."""
    found = problem(document)
    return [found] if found else []


def validate_document(document: Any, source: str = "bench document") -> dict:
    """The document, if it is a complete bench document of this schema version; else a one-line
    :class:`UsageError` that names ``source``, the key and what was expected."""
    if not isinstance(document, dict) or "schema_version" not in document:
        raise UsageError(f"{source} is not an edgetransfer bench document (no schema_version)")
    kind = document.get("kind")
    card = kind is None and "labels" in document and "preprocessing" in document
    if card or kind not in (None, "edgetransfer.bench"):  # a card.json read "has bench schema version 1" (its own)
        what = "a run's model card" if card else f"kind {kind!r}"
        raise UsageError(
            f"{source}: not an edgetransfer bench document ({what}); a baseline is what "
            "'edgetransfer bench RUN --save-baseline FILE' saves"
        )
    version = document["schema_version"]
    if isinstance(version, str) and version.strip() == str(BENCH_SCHEMA_VERSION):
        raise UsageError(f"{source}: schema_version is the text {version!r}; it should be the number {version.strip()}")
    if version != BENCH_SCHEMA_VERSION:
        raise UsageError(
            f"{source} has bench schema version {version!r}; this edgetransfer reads version "
            f"{BENCH_SCHEMA_VERSION}: measure it again with 'edgetransfer bench RUN --save-baseline FILE' using "
            "this version"
        )
    found = problem(document)
    if found:
        raise UsageError(f"{source}: {found}")
    return document


def load_document(path: Path | str) -> dict:
    """Read and check a bench document (a ``bench.json`` or a baseline file): a regular file of at most
    :data:`~edgetransfer.schemas.MAX_JSON_FILE_BYTES`."""
    path = Path(path)
    text = read_text(path, what="baseline file", limit=MAX_JSON_FILE_BYTES, error=UsageError)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise UsageError(f"{path} nests too deeply to be a bench document") from None
    return validate_document(document, str(path))

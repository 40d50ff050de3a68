"""The ``bench.json`` schema (versioned): what every document holds, checked when one is read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetransfer.errors import UsageError

BENCH_SCHEMA_VERSION = 2  # 1: the foundation's bench.json (one batch size, no samples)
KIND = "edgetransfer.bench"

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
TOP = {
    "schema_version": int,
    "kind": str,
    "created": str,
    "run": str,
    "model": dict,
    "settings": dict,
    "profile": (dict, type(None)),
    "machine": dict,
    "versions": dict,
    "accuracy_data": dict,
    "accuracy_reference": (dict, type(None)),
    "results": list,
    "skipped": list,
    "failed": list,
    "unavailable": list,
    "budget_checks": list,
    "recommendation": (dict, type(None)),
    "gate": (dict, type(None)),
}
MODEL = {"backbone": str, "input": list, "num_classes": int, "labels": list}
MACHINE = {"cpu": str, "cores": int, "flags": list}
SETTINGS = {"backends": list, "batches": list, "precision": str, "min_runs": int, "min_time": _NUM, "rounds": int}
SETTINGS |= {"threads_resolved": int, "isolated": bool}
RESULT = {
    "backend": str,
    "variant": str,
    "precision": str,
    "threads": (int, type(None)),
    "model": str,
    "model_bytes": int,
    "model_sha256": str,
    "load_s": _NUM,
    "first_run_ms": _NUM,
    "rss_start_mb": _OPT_NUM,
    "peak_rss_mb": _OPT_NUM,
    "latency": list,
    "async": list,
    "accuracy": (dict, type(None)),
}
LATENCY = {
    "batch": int,
    "p50_ms": _NUM,
    "p90_ms": _NUM,
    "p99_ms": _NUM,
    "mean_ms": _NUM,
    "stdev_ms": _NUM,
    "cv_percent": _NUM,
    "min_ms": _NUM,
    "runs": int,
    "throughput_ips": _NUM,
    "rounds": list,
    "samples_ms": list,
}
ASYNC = {"batch": int, "images_per_s": _NUM, "requests": int, "inferences": int, "seconds": _NUM}
ACCURACY = {
    "top1": _NUM,
    "top5": _NUM,
    "k": int,
    "images": int,
    "top1_delta_points": _OPT_NUM,
    "top5_delta_points": _OPT_NUM,
}
REFERENCE = {"run": str, "results": list}
FAILED = {"backend": str, "variant": str, "error": str}
SKIPPED = {"backend": str, "variant": str, "reason": str}


def _check(obj: Any, spec: dict, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where} is not an object")
        return
    for key, kind in spec.items():
        if key not in obj:
            problems.append(f"{where}.{key} is missing")
        elif not isinstance(obj[key], kind) or (isinstance(obj[key], bool) and kind in (int, _NUM, _OPT_NUM)):
            problems.append(f"{where}.{key} has the wrong type ({type(obj[key]).__name__})")


def problems(document: Any) -> list[str]:
    """Everything wrong with a bench document of the current schema ([] when it is complete)."""
    found: list[str] = []
    _check(document, TOP, "bench", found)
    if found:
        return found
    _check(document["model"], MODEL, "model", found)
    _check(document["machine"], MACHINE, "machine", found)
    _check(document["settings"], SETTINGS, "settings", found)
    reference = document.get("reference")  # optional: a reference run measured side by side
    if reference is not None:
        _check(reference, REFERENCE, "reference", found)
    extra = reference["results"] if isinstance(reference, dict) and isinstance(reference.get("results"), list) else []
    listed = [(f"results[{i}]", r) for i, r in enumerate(document["results"])]
    listed += [(f"reference.results[{i}]", r) for i, r in enumerate(extra)]
    for where, result in listed:
        _check(result, RESULT, where, found)
        if not isinstance(result, dict) or found:
            continue
        for j, lat in enumerate(result["latency"]):
            _check(lat, LATENCY, f"{where}.latency[{j}]", found)
            if isinstance(lat, dict) and len(lat.get("samples_ms", [])) != lat.get("runs"):
                found.append(
                    f"{where}.latency[{j}]: {len(lat.get('samples_ms', []))} samples for {lat.get('runs')} runs"
                )
        for j, item in enumerate(result["async"]):
            _check(item, ASYNC, f"{where}.async[{j}]", found)
        if result["accuracy"] is not None:
            _check(result["accuracy"], ACCURACY, f"{where}.accuracy", found)
    for i, item in enumerate(document["failed"]):
        _check(item, FAILED, f"failed[{i}]", found)
    for i, item in enumerate(document["skipped"]):
        _check(item, SKIPPED, f"skipped[{i}]", found)
    return found


def validate_document(document: Any, source: str = "bench document") -> dict:
    """The document, if it is a complete bench document of this schema version; else a one-line
    :class:`UsageError` that says what to do."""
    if not isinstance(document, dict) or "schema_version" not in document:
        raise UsageError(f"{source} is not an edgetransfer bench document (no schema_version)")
    version = document["schema_version"]
    if version != BENCH_SCHEMA_VERSION:
        raise UsageError(
            f"{source} has bench schema version {version}; this edgetransfer reads version {BENCH_SCHEMA_VERSION}: "
            "measure it again with 'edgetransfer bench RUN --save-baseline FILE' using this version"
        )
    found = problems(document)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise UsageError(f"{source} is not a complete bench document: {'; '.join(found[:3])}{more}")
    return document


def load_document(path: Path | str) -> dict:
    """Read and check a bench document (a ``bench.json`` or a baseline file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"baseline file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    return validate_document(document, str(path))

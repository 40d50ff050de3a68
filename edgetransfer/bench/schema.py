"""The ``bench.json`` schema (versioned): what every document holds, checked when one is read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetransfer.bench.config import MAX_BATCH, RANGES, batch_problem, setting_problem
from edgetransfer.card import finite
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


POSITIVE_MS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms")  # every latency: a finite number above 0


def _latency_values(lat: dict, where: str) -> list[str]:
    found = [
        f"{where}.{k} is {lat[k]!r} (expected a finite number above 0)"
        for k in POSITIVE_MS
        if not (finite(lat[k]) and lat[k] > 0)
    ]
    for key in ("stdev_ms", "cv_percent", "throughput_ips"):
        if not (finite(lat[key]) and lat[key] >= 0):
            found.append(f"{where}.{key} is {lat[key]!r} (expected a finite number, not negative)")
    if batch_problem(lat["batch"]):
        found.append(f"{where}.batch: {batch_problem(lat['batch'])}")
    bad = next((t for t in lat["samples_ms"] if not (finite(t) and t > 0)), None)
    if bad is not None:
        found.append(f"{where}.samples_ms holds {bad!r} (expected times in ms, each a finite number above 0)")
    rounds = lat["rounds"]
    if not rounds or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in rounds):
        found.append(f"{where}.rounds is {rounds!r} (expected the number of runs in each round, each at least 1)")
    elif sum(rounds) != len(lat["samples_ms"]):
        found.append(f"{where}.rounds add up to {sum(rounds)} runs, but samples_ms holds {len(lat['samples_ms'])}")
    return found


def _settings_values(settings: dict) -> list[str]:
    found = [
        f"settings.{setting_problem(k, settings[k])}"
        for k in RANGES
        if settings.get(k) is not None and setting_problem(k, settings[k])
    ]
    if setting_problem("threads", settings["threads_resolved"]):
        found.append(f"settings.{setting_problem('threads', settings['threads_resolved'], 'threads_resolved')}")
    batches = settings["batches"]
    if not batches or any(batch_problem(b) for b in batches):
        found.append(
            f"settings.batches is {batches!r} (expected batch sizes, each a whole number from 1 to {MAX_BATCH})"
        )
    return found


def values(document: dict) -> list[str]:
    """Numbers in a complete document that no measurement can give: a latency that is NaN, infinite, zero or
    negative, settings that would measure for hours ([] when every one is sane)."""
    found = _settings_values(document["settings"])
    reference = document.get("reference") or {}
    listed = [(f"results[{i}]", r) for i, r in enumerate(document["results"])]
    listed += [(f"reference.results[{i}]", r) for i, r in enumerate(reference.get("results", []))]
    for where, result in listed:
        for j, lat in enumerate(result["latency"]):
            found += _latency_values(lat, f"{where}.latency[{j}]")
        accuracy = result["accuracy"]
        for key in ("top1", "top5") if accuracy else ():
            if not (finite(accuracy[key]) and 0 <= accuracy[key] <= 1):
                found.append(f"{where}.accuracy.{key} is {accuracy[key]!r} (expected a fraction from 0 to 1)")
            delta = accuracy[f"{key}_delta_points"]
            if delta is not None and not (finite(delta) and -100 <= delta <= 100):
                found.append(f"{where}.accuracy.{key}_delta_points is {delta!r} (expected points from -100 to 100)")
    return found


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
        raise UsageError(f"{source} is not a complete bench document: {_listed(found)}")
    found = values(document)
    if found:
        raise UsageError(f"{source} cannot be used: {_listed(found)}")
    return document


def _listed(found: list[str]) -> str:
    return "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")


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

"""The regression gate: is this run slower than a baseline (or than a reference backend in the same run)?

Distributions, not single numbers: both documents keep every timed run, in the interleaved rounds they were
measured in. Each (backend, variant, batch) is cut into blocks of consecutive runs; the ratio is the geometric
mean of the ratios of block medians, with a Welch t confidence interval over blocks (runs taken side by side are
not independent: the spread between blocks is the machine's real noise). With a reference backend, each block is
divided by the reference's block of the same round first, so a change in machine load cancels out. A key is
SLOWER when the ratio is above 1 + max_regression *and* its interval excludes 1 (the difference is not noise).
A key that looks slower, or might be (its ratio above 1 + max_regression / 2), is then measured again, and the
verdict is taken on both measurements together (twice the data: a real slowdown near the threshold is caught
more often), and SLOWER stands only if the re-measurement alone points the same way (above 1 + max_regression
/ 2), so that a burst of noise in the first measurement does not fail the gate.

With a reference run (``--reference-run``, e.g. the main branch's build), each model of the run is measured in
the same rounds as the reference run's model of the same backend and variant, and the gate divides block by block:
no stored times, so it holds on any machine and through any drift of its load.

Exit codes: 0 none slower, 1 slower, 2 the comparison cannot be made (another schema or model, a backend
missing, a measurement failed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetransfer.bench.config import BenchConfig
from edgetransfer.bench.probe import PROBE_NAME, machine_probe, merge_probe
from edgetransfer.bench.stats import block_log_medians, blocks_per_round, log_ratio_interval
from edgetransfer.errors import UsageError

OK, SLOWER, FASTER = "ok", "slower", "faster"
MACHINE_KEYS = ("cpu", "cores", "flags")  # a baseline taken where any of these differ was taken on another machine


@dataclass(frozen=True)
class GateConfig:
    """How strict the gate is. ``relative_to`` ("backend" or "backend:variant") compares each model's ratio
    to a reference measured in the same run (with a baseline: that ratio now against the ratio then)."""

    max_regression: float = 0.10
    relative_to: str | None = None
    confirm: bool = True  # re-measure what looks (possibly) slower, and decide on both measurements
    level: float = 0.95

    def reference(self) -> tuple[str, str | None] | None:
        if not self.relative_to:
            return None
        backend, _, variant = self.relative_to.partition(":")
        return backend, variant or None


@dataclass
class Row:
    backend: str
    variant: str
    batch: int
    before_ms: float  # baseline median (absolute) or baseline ratio (relative)
    now_ms: float
    ratio: float
    low: float
    high: float
    verdict: str
    reference: str | None = None  # "backend variant" of the reference, in relative mode
    confirm: tuple[float, float, float] | None = None  # (ratio, low, high) of both measurements together
    again: float | None = None  # the ratio of the re-measurement alone

    @property
    def key(self) -> tuple[str, str, int]:
        return self.backend, self.variant, self.batch


@dataclass
class GateResult:
    mode: str  # "baseline", "relative", "relative+baseline" or "reference-run"
    max_regression: float
    level: float = 0.95
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the comparison cannot be made: exit 2
    warnings: list[str] = field(default_factory=list)
    baseline: str | None = None  # the baseline file, or the reference run
    machine_factor: float | None = None  # probe now / probe then: how much slower the machine is (stored baseline)

    @property
    def slower(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == SLOWER]

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else 1 if self.slower else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "baseline": self.baseline,
            "max_regression": self.max_regression,
            "level": self.level,
            "exit_code": self.exit_code,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "problems": self.problems,
            "warnings": self.warnings,
            "machine_factor": self.machine_factor,
        }


Series = tuple[list[float], list[int]]  # per-run samples (ms) and how many of them each round took


def _samples(document: dict) -> dict[tuple[str, str, int], Series]:
    return {
        (r["backend"], r["variant"], lat["batch"]): (lat["samples_ms"], lat["rounds"])
        for r in document["results"]
        for lat in r["latency"]
    }


def _blocks(*series: Series) -> list[np.ndarray]:
    """Per-block log medians of each series, cut alike (so that blocks of one run's rounds pair up)."""
    per_round = blocks_per_round([s[1] for s in series])
    return [block_log_medians(s[0], s[1], per_round) for s in series]


def _paired(x: Series, ref: Series) -> np.ndarray:
    """log(x / ref) per block of the same round: measured seconds apart, under the same machine state."""
    bx, br = _blocks(x, ref)
    return bx - br if len(bx) == len(br) else bx - float(np.median(br))


def _median(samples: list[float]) -> float:
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _differences(baseline: dict, current: dict, result: GateResult) -> None:
    """Problems (another model, other settings) and warnings (another machine or library versions)."""
    before, now = baseline["model"], current["model"]
    for key in ("backbone", "input", "num_classes"):
        if before.get(key) != now.get(key):
            result.problems.append(
                f"the baseline is of another model: {key} {before.get(key)} there, {now.get(key)} here"
            )
    if before.get("labels") != now.get("labels") and not result.problems:  # the same network, other classes
        differ = next(
            (
                f"{a!r} there, {b!r} here"
                for a, b in zip(before.get("labels") or [], now.get("labels") or [], strict=False)
                if a != b
            ),
            "",
        )
        result.warnings.append(
            f"the baseline's model has other class names ({differ or 'another order'}): a model of other data? "
            "its speed is compared (the same backbone, input and number of classes)"
        )
    for key, what in (("threads_resolved", "threads"), ("precision", "precision")):
        b, n = baseline["settings"].get(key), current["settings"].get(key)
        if b != n:
            result.problems.append(f"the baseline was measured with {what} {b}, this run with {n} (use --{what} {b})")
    b, n = baseline["settings"].get("isolated"), current["settings"].get("isolated")
    if b is not None and n is not None and b != n:
        how = {True: "each model in a process of its own", False: "every model in one process"}
        result.problems.append(
            f"the baseline was measured with {how[b]}, this run with {how[n]} "
            f"(use {'--isolate' if b else '--in-process'})"
        )
    old_files = {(r["backend"], r["variant"]): r["model_sha256"] for r in baseline["results"]}
    changed = [
        f"{r['backend']} {r['variant']}"
        for r in current["results"]
        if old_files.get((r["backend"], r["variant"])) not in (None, r["model_sha256"])
    ]
    if changed:
        result.warnings.append(
            f"model files differ from the baseline's ({', '.join(changed)}): their speed is compared"
        )
    m_before, m_now = baseline["machine"], current["machine"]
    if any(m_before.get(k) != m_now.get(k) for k in MACHINE_KEYS):
        described = "; ".join(
            f"{k} {m_before.get(k)} -> {m_now.get(k)}" for k in MACHINE_KEYS if m_before.get(k) != m_now.get(k)
        )
        hint = "" if result.mode != "baseline" else " (absolute times do not carry across machines: see --relative-to)"
        result.warnings.append(f"the baseline was taken on another machine: {described}{hint}")
    v_before, v_now = baseline["versions"], current["versions"]
    changed = [
        f"{k} {v_before.get(k)} -> {v_now.get(k)}"
        for k in sorted(set(v_before) | set(v_now))
        if v_before.get(k) != v_now.get(k)
    ]
    if changed:
        result.warnings.append(f"library versions differ from the baseline's: {', '.join(changed)}")


def _same_files(current: dict, side: dict, result: GateResult) -> None:
    """Say so when the reference run holds the very same model files: then every difference is noise."""
    mine = {(r["backend"], r["variant"]): r["model_sha256"] for r in current["results"]}
    same = [
        f"{r['backend']} {r['variant']}"
        for r in side["results"]
        if mine.get((r["backend"], r["variant"])) == r["model_sha256"]
    ]
    if same:
        result.warnings.append(
            f"the reference run's model files are this run's ({', '.join(same)}): any difference is noise"
        )


def _same_model_faster(current: dict, baseline: dict, result: GateResult) -> None:
    """A model read FASTER than a stored baseline of the very same file, with the same library versions, on the same
    machine: nothing of the model changed, so it is the machine's drift against its probe (an unchanged model read
    10 % faster in a new user's trial), said with the row's ratio."""
    same_machine = all(current["machine"].get(k) == baseline["machine"].get(k) for k in MACHINE_KEYS)
    if not same_machine or current["versions"] != baseline["versions"]:  # then it may truly be faster
        return
    files = [{(r["backend"], r["variant"]): r.get("model_sha256") for r in d["results"]} for d in (current, baseline)]
    same = [
        f"{row.backend} {row.variant} batch {row.batch} ({row.ratio:.2f}x)"
        for row in result.rows
        if row.verdict == FASTER
        and files[0].get(row.key[:2])
        and files[0].get(row.key[:2]) == files[1].get(row.key[:2])
    ]
    if same:
        result.warnings.append(
            f"{', '.join(same)}: read faster, but the model file, the library versions and the machine are the "
            "baseline's: the machine's drift against its probe, not the model"
        )


def _verdict(ratio: float, low: float, high: float, max_regression: float) -> str:
    if ratio > 1 + max_regression and low > 1:
        return SLOWER
    if ratio < 1 / (1 + max_regression) and high < 1:
        return FASTER
    return OK


def _reference_key(
    ref: tuple[str, str | None], backend_of: str, variant: str, available: set[tuple[str, str]]
) -> tuple[str, str]:
    """``backend:variant`` as given; ``backend`` alone: the same variant there if it has it, else fp32, and for that
    backend's own models its fp32 (each was its own reference: every variant of it went unjudged, unsaid; a
    reviewer's finding)."""
    backend, fixed = ref
    if fixed:
        return backend, fixed
    if backend_of == backend:
        return backend, "fp32"
    return (backend, variant) if (backend, variant) in available else (backend, "fp32")


def compare(
    current: dict,
    baseline: dict | None,
    config: GateConfig,
    *,
    baseline_name: str | None = None,
    only: set[tuple[str, str]] | None = None,
) -> GateResult:
    """Compare ``current`` with ``baseline``, and/or with a reference in the same run (``config.relative_to``), or
    with the reference run measured side by side with it (``current["reference"]``, from ``--reference-run``)."""
    ref = config.reference()
    side = current.get("reference")
    if side is not None and (baseline is not None or ref is not None):
        raise UsageError(
            "--reference-run measures two runs side by side: it does not combine with --baseline or --relative-to"
        )
    if baseline is None and ref is None and side is None:
        raise UsageError(
            "nothing to compare with: give a baseline (--baseline FILE), --relative-to BACKEND or --reference-run DIR"
        )
    if side is not None:
        mode, against = "reference-run", side["run"]
    else:
        mode = "baseline" if ref is None else "relative" if baseline is None else "relative+baseline"
        against = baseline_name
    result = GateResult(mode, config.max_regression, config.level, baseline=against)
    if baseline is not None:
        _differences(baseline, current, result)
    if side is not None:
        _same_files(current, side, result)
    now = _samples(current)
    before = _samples(baseline) if baseline is not None else {}
    theirs = _samples(side) if side is not None else {}
    probed = mode == "baseline" and machine_probe(current, baseline, now, before, result)
    if mode == "baseline" and baseline.get("probe") and not current.get("probe"):  # it failed to measure: no
        return result  # verdict by absolute times that could mislead (said among the problems)
    ref = (PROBE_NAME, "fp32") if probed else ref  # each model judged relative to the machine probe
    pairs = {(b, v) for b, v, _ in now}
    for r in current.get("failed", []):
        if baseline is None or any(k[:2] == (r["backend"], r["variant"]) for k in before):
            whose = " of the reference run" if r.get("run") == "reference" else ""
            result.problems.append(f"{r['backend']} {r['variant']}{whose} could not be measured: {r['error']}")
    keys = sorted(before) if baseline is not None else sorted(now)
    if baseline is not None and only is None:  # measured now, absent from the baseline: said, not silently unjudged

        def yardstick(key) -> bool:  # --relative-to's model (its backend's fp32 when no variant is named)
            return ref is not None and key[0] == ref[0] and key[1] == (ref[1] or "fp32")

        unjudged = sorted(k for k in now if k not in before and k[0] != PROBE_NAME and not yardstick(k))
        if unjudged:
            named = ", ".join(f"{b} {v} batch {n}" for b, v, n in unjudged[:4])
            more = f" and {len(unjudged) - 4} more" if len(unjudged) > 4 else ""
            result.warnings.append(
                f"not judged: {named}{more} (not in the baseline); save a baseline that measures them to gate them"
            )
    if only is not None:  # a re-measurement of some keys: leave the others alone
        keys = [k for k in keys if k[:2] in only]
    for key in keys:
        backend, variant, batch = key
        if side is not None:  # this run's model against the reference run's, block by block of the same rounds
            if key not in theirs:
                result.problems.append(
                    f"cannot compare {backend} {variant} batch {batch}: not measured in the reference run"
                )
                continue
            ref_name = None
            interval = log_ratio_interval(_paired(now[key], theirs[key]), level=config.level)
            shown = (_median(theirs[key][0]), _median(now[key][0]))
        elif ref is None:
            if key not in now:
                result.problems.append(f"{backend} {variant} batch {batch} is in the baseline but was not measured")
                continue
            ref_name = None
            interval = log_ratio_interval(*_blocks(now[key], before[key]), level=config.level)
            shown = (_median(before[key][0]), _median(now[key][0]))
        else:
            rkey = (*_reference_key(ref, backend, variant, pairs | {k[:2] for k in before}), batch)
            if rkey[:2] == (backend, variant):
                continue
            ref_name = f"{rkey[0]} {rkey[1]}"
            sources = [("this run", now)] + ([("the baseline", before)] if baseline is not None else [])
            missing = [
                f"{k[0]} {k[1]} batch {k[2]} in {where}" for where, d in sources for k in (key, rkey) if k not in d
            ]
            if missing:
                result.problems.append(f"cannot compare {backend} {variant} with {ref_name}: no {', '.join(missing)}")
                continue
            now_ratio = _median(now[key][0]) / _median(now[rkey][0])
            if baseline is None:
                interval = log_ratio_interval(_paired(now[key], now[rkey]), level=config.level)
                shown = (1.0, now_ratio)
            else:
                paired = _paired(now[key], now[rkey]), _paired(before[key], before[rkey])
                interval = log_ratio_interval(*paired, level=config.level)
                shown = (_median(before[key][0]) / _median(before[rkey][0]), now_ratio)
                shown = (_median(before[key][0]), _median(now[key][0])) if probed else shown
        ratio, low, high = interval
        if low == 0 and high == math.inf and 0 < ratio < math.inf:  # one block of runs a side: no interval
            result.problems.append(
                f"cannot compare {backend} {variant} batch {batch}: too few runs to tell a change from noise (one "
                "block of runs a side; more --rounds or --min-runs)"
            )
            continue
        if not all(math.isfinite(x) and x > 0 for x in (ratio, low, high, *shown)):
            result.problems.append(
                f"cannot compare {backend} {variant} batch {batch}: its times give a ratio of {ratio:g} "
                f"(a time that is zero, negative, NaN or infinite)"
            )
            continue
        verdict = _verdict(ratio, low, high, config.max_regression)
        result.rows.append(Row(backend, variant, batch, shown[0], shown[1], ratio, low, high, verdict, ref_name))
    if probed:
        _same_model_faster(current, baseline, result)
    if not result.rows and not result.problems and (only is None or keys):  # a gate that judged nothing passed
        what = (
            f"with {ref[0]}{f' {ref[1]}' if ref[1] else ''}"  # --relative-to BACKEND alone: no variant
            if ref is not None and not probed
            else "with the " + (mode.split("+")[0])
        )
        result.problems.append(
            f"nothing to compare {what}: no model was measured beside it (e.g. --relative-to ort-cpu:fp32 with "
            "--variants fp32 alone, or a run without the int8 model); a gate that judges nothing cannot pass"
        )
    return result


def _leans_slower(ratio: float, max_regression: float) -> bool:
    """Above half the threshold: a slowdown near the threshold lands on either side of it in one noisy
    measurement."""
    return ratio > 1 + max_regression / 2


def suspects(result: GateResult) -> list[Row]:
    """Rows worth measuring again: slower, or leaning that way."""
    return [r for r in result.rows if r.verdict == SLOWER or _leans_slower(r.ratio, result.max_regression)]


def _merge_results(first: list[dict], second: list[dict], keys: set[tuple[str, str]]) -> list[dict]:
    extra = {(r["backend"], r["variant"]): r for r in second}
    merged = []
    for result in first:
        key = (result["backend"], result["variant"])
        if key in keys and key in extra:
            more = {lat["batch"]: lat for lat in extra[key]["latency"]}
            latency = [
                {
                    **lat,
                    "samples_ms": lat["samples_ms"] + more[lat["batch"]]["samples_ms"],
                    "rounds": lat["rounds"] + more[lat["batch"]]["rounds"],
                }
                if lat["batch"] in more
                else lat
                for lat in result["latency"]
            ]
            result = {**result, "latency": latency}
        merged.append(result)
    return merged


def merge_samples(first: dict, second: dict, keys: set[tuple[str, str]]) -> dict:
    """``first`` with the latency samples (and rounds) of ``keys`` from ``second`` appended (the reference run's
    too): the rounds of both measurements, each still pairing its models side by side."""
    merged = {**first, "results": _merge_results(first["results"], second["results"], keys)}
    if first.get("reference") and second.get("reference"):
        side = _merge_results(first["reference"]["results"], second["reference"]["results"], keys)
        merged["reference"] = {**first["reference"], "results": side}
    merged["failed"] = first.get("failed", []) + second.get("failed", [])
    merged["probe"] = merge_probe(first.get("probe"), second.get("probe"))
    return merged


def confirm(first: GateResult, second: GateResult, pooled: GateResult) -> GateResult:
    """The verdict of each re-measured row, taken on both measurements together, and SLOWER only if the
    re-measurement alone points the same way (a burst of noise in the first one is not carried through by
    its weight in the pool); records the pooled figures."""
    alone = {r.key: r for r in second.rows}
    together = {r.key: r for r in pooled.rows}
    for row in suspects(first):
        redo, again = together.get(row.key), alone.get(row.key)
        if redo is None or again is None:
            continue
        row.confirm, row.again = (redo.ratio, redo.low, redo.high), again.ratio
        agrees = _leans_slower(again.ratio, first.max_regression)
        row.verdict = redo.verdict if redo.verdict != SLOWER or agrees else OK
    first.problems += [p for p in second.problems + pooled.problems if p not in first.problems]
    return first


def check(
    run,
    bench_config: BenchConfig,
    config: GateConfig,
    baseline: dict | None,
    *,
    baseline_name: str | None = None,
    measure: Callable[..., dict] | None = None,
) -> tuple[dict, GateResult]:
    """Measure ``run``, compare, and re-measure what looks (possibly) slower, deciding on both measurements
    together; returns the (first) bench document, with the gate's result in ``document["gate"]``, and the
    result."""
    if measure is None:
        from edgetransfer.bench.runner import bench as measure
    document = measure(run, bench_config, write=False)
    result = compare(document, baseline, config, baseline_name=baseline_name)
    rows = suspects(result)
    if rows and config.confirm and not result.problems:
        slower = {(r.backend, r.variant) for r in rows}
        measured = slower | {tuple(r.reference.split(" ", 1)) for r in rows if r.reference}
        keys = tuple(sorted(f"{b}:{v}" for b, v in measured))
        again = dataclasses.replace(bench_config, only=keys, accuracy=False, async_time=0.0)
        second = measure(run, again, write=False)
        pooled = merge_samples(document, second, measured)
        result = confirm(
            result,
            compare(second, baseline, config, baseline_name=baseline_name, only=slower),
            compare(pooled, baseline, config, baseline_name=baseline_name, only=slower),
        )
    document["gate"] = result.to_dict()
    return document, result

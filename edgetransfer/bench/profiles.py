"""Deployment profiles (TOML): bench settings plus budgets; budgets become PASS/FAIL lines; the recommendation."""

from __future__ import annotations

import difflib
import functools
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, create_model

from edgetransfer.errors import UsageError
from edgetransfer.schemas import Name, Schema, Text, dataclass_schema, read_text, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

BUDGETS = {  # key -> (what it limits, unit, higher is better)
    "p50_ms": ("p50", "ms", False),
    "p90_ms": ("p90", "ms", False),
    "p99_ms": ("p99", "ms", False),
    "min_throughput": ("throughput", "img/s", True),
    "max_top1_drop_points": ("top-1 drop", "points", False),
    "max_model_mb": ("model size", "MB", False),
    "max_peak_rss_mb": ("peak RSS", "MB", False),
}
SETTINGS = ("threads", "batches", "precision", "warmup", "warmup_time", "min_runs", "min_time", "rounds", "processes")
SETTINGS += ("async_time", "backends", "variants")


@dataclass(frozen=True)
class Profile:
    """A deployment target: the settings to measure it with and the budgets a model must meet there."""

    name: str
    description: str = ""
    source: str = ""
    objective: str | None = None  # p50, p90, p99 or throughput: what --recommend optimises
    settings: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "objective": self.objective,
            "settings": self.settings,
            "budget": self.budget,
        }


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``edgetransfer/profiles/*.toml``."""
    folder = resources.files("edgetransfer") / "profiles"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (camera, vehicle, server) or a TOML file by path."""
    text = profile_text(name_or_path)
    if text is not None:
        return parse_profile(text, str(Path(name_or_path)))
    if name_or_path in builtin_profiles():
        text = (resources.files("edgetransfer") / "profiles" / f"{name_or_path}.toml").read_text(encoding="utf-8")
        return parse_profile(text, f"built-in:{name_or_path}")
    known = ", ".join(builtin_profiles())
    close = difflib.get_close_matches(name_or_path, builtin_profiles(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown profile {name_or_path!r}{hint}; built-in: {known}; or the path of a .toml file")


def profile_text(name_or_path: str) -> str | None:
    """A profile file's text, or None where ``name_or_path`` names no file (a shipped profile's name)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise UsageError(f"profile file not found: {path}")
        return read_text(path, what="profile", error=UsageError)
    return None


MAX_BUDGET = 1e9  # no latency, throughput, size or memory budget is larger


@functools.cache
def profile_schema():
    """A profile's schema: ``[settings]`` derived from :class:`BenchConfig`'s fields (the :data:`SETTINGS` among
    them, with the ranges of the command line), ``[budget]`` one number >= 0 per :data:`BUDGETS` key."""
    from edgetransfer.bench.config import OBJECTIVES, BenchConfig, constraints

    settings = dataclass_schema(
        BenchConfig, "ProfileSettings", constraints=constraints(), partial=True, include=SETTINGS
    )
    limit = Annotated[float, Strict(), Field(ge=0, le=MAX_BUDGET, allow_inf_nan=False)]
    # (a drop over 100 points was refused later as '--max-accuracy-drop', a flag the user never gave: a review)
    points = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
    kinds = {k: points if k == "max_top1_drop_points" else limit for k in BUDGETS}
    budget = create_model("ProfileBudget", __base__=Schema, **{k: (kinds[k] | None, None) for k in BUDGETS})
    return create_model(
        "ProfileFile",
        __base__=Schema,
        name=(Name | None, None),
        description=(Text, ""),
        objective=(Literal[OBJECTIVES] | None, None),
        settings=(settings, settings()),
        budget=(budget, budget()),
    )


def parse_profile(text: str, source: str) -> Profile:
    """Check a profile's TOML against :func:`profile_schema` (an unknown key is an error, with the closest known
    one: a typo must not silently drop a budget)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profile {source} is not valid TOML: {exc}") from None
    checked = validate(profile_schema(), data, f"profile {source}", error=UsageError)
    settings = checked.settings.model_dump(exclude_unset=True)
    budget = checked.budget.model_dump(exclude_unset=True)
    return Profile(
        name=checked.name or Path(source).stem,
        description=checked.description,
        source=source,
        objective=checked.objective,
        settings={k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        budget={k: float(v) for k, v in budget.items()},
    )


# ------------------------------------------------------------------------- budgets and recommendation


def _engine(backend: str) -> str:
    return "openvino" if backend.startswith("openvino") else "onnx" if backend.startswith("ort") else ""


def _value(result: dict, key: str, exported: dict | None = None) -> tuple[float | None, str]:
    """A result's figure for a budget key, and where it comes from (the top-1 drop: measured here, or else the one
    the export measured, ``exported`` from :func:`exported_drops`)."""
    if key in ("p50_ms", "p90_ms", "p99_ms"):
        worst = max(result["latency"], key=lambda lat: lat[key])
        call = f": one call of {worst['batch']} images" if worst["batch"] > 1 else ""  # not per image
        return worst[key], f"worst at batch {worst['batch']}{call}"
    if key == "min_throughput":
        return best_throughput(result)
    if key == "max_top1_drop_points":
        acc = result.get("accuracy") or {}
        delta = acc.get("top1_delta_points")
        if delta is not None:
            return 0.0 - delta + 0.0, "vs the fp32 reference"
        if result["backend"].startswith("torch") and result["variant"] == "fp32":  # the reference itself
            return 0.0, "the fp32 reference itself"
        known = (exported or {}).get((_engine(result["backend"]), result["variant"]))
        return (None, "accuracy not measured") if known is None else (known, "measured at export, test split")
    if key == "max_model_mb":
        return result["model_bytes"] / 1e6, "on disk"
    peak = result.get("peak_rss_mb")
    return (None, "not measured in-process") if peak is None else (peak, "of its process")


def batches_note(profile: dict, results: list[dict]) -> str | None:
    """A note where the batch sizes measured are not the profile's (``--batch`` replaced them): where a latency
    budget is judged at a batch size the profile lacks, the budget holds for one call at every batch size measured,
    so a per-frame budget (the camera's 33 ms) is then applied to a call of several images (a new user read 'batch 1'
    in the header and saw a FAIL at batch 8); where some of the profile's batch sizes were not measured, its budgets
    were not checked there (the vehicle's 50 ms deadline for a batch of 8 read PASS from batch 1 and 2 alone: a
    review). None otherwise."""
    own = sorted(set(profile.get("settings", {}).get("batches") or ()))  # (a profile's [8, 1, 8]: said once each)
    measured = sorted({lat["batch"] for r in results for lat in r.get("latency") or []})
    budgets = profile.get("budget", {})
    latency = [k for k in budgets if k in ("p50_ms", "p90_ms", "p99_ms")]
    if not own or not measured or not (latency or "min_throughput" in budgets):  # model size, top-1: any batch
        return None
    said = []
    if latency and [b for b in measured if b > 1 and b not in own]:  # a call the profile lacks
        said.append(
            "its latency budget is judged for one call at every batch size measured, a call of several images included"
        )
    missing = [b for b in own if b not in measured]
    if missing:
        said.append(f"its latency and throughput budgets were not checked at batch {', '.join(map(str, missing))}")
    if not said:
        return None
    sizes, replaced = ", ".join(map(str, measured)), ", ".join(map(str, own))
    return f"note: measured at batch {sizes} (--batch replaced the profile's {replaced}): {'; '.join(said)}"


def threads_note(profile: dict, settings: dict) -> str | None:
    """A note where ``--threads`` replaced the profile's threads: its budgets are for the device's threads (the camera
    profile's 1), not those measured (none was said: a review)."""
    own, measured = profile.get("settings", {}).get("threads"), settings.get("threads")
    if own is None or measured is None or own == measured or not profile.get("budget"):
        return None
    return (
        f"note: measured with {measured} threads (--threads replaced the profile's {own}): its budgets are judged on "
        f"{measured}, not on the {own} the profile describes"
    )


def best_throughput(result: dict) -> tuple[float, str]:
    """Highest images/s over the batch sizes and the async mode."""
    options = [(lat["throughput_ips"], f"batch {lat['batch']}") for lat in result["latency"]]
    options += [(a["images_per_s"], f"async, batch {a['batch']}") for a in result.get("async") or []]
    return max(options)


def check_budgets(results: list[dict], budget: dict[str, float], exported: dict | None = None) -> list[dict]:
    """One check per (result, budget): value, limit and passed (False when the value was not measured; a top-1 drop
    not measured here is the one the export measured, ``exported``, where there is one)."""
    checks = []
    for result in results:
        for key, limit in budget.items():
            what, unit, higher_better = BUDGETS[key]
            value, where = _value(result, key, exported)
            passed = value is not None and (value >= limit if higher_better else value <= limit)
            checks.append(
                {
                    "backend": result["backend"],
                    "variant": result["variant"],
                    "budget": key,
                    "what": what,
                    "unit": unit,
                    "limit": limit,
                    "value": value,
                    "where": where,
                    "passed": passed,
                }
            )
    return checks


def budget_line(check: dict) -> str:
    """``PASS ort-cpu int8: p99 3.21 ms <= 50 ms (worst at batch 8)``; a failed check says the inequality that
    holds (``FAIL ...: p99 55.5 ms > 50 ms``)."""
    at_least = BUDGETS[check["budget"]][2]
    sign = (">=" if at_least else "<=") if check["passed"] else ("<" if at_least else ">")
    value = "not measured" if check["value"] is None else f"{check['value']:.4g} {check['unit']}"
    verdict = "PASS" if check["passed"] else "FAIL"
    return (
        f"{verdict} {check['backend']} {check['variant']}: {check['what']} {value} {sign} "
        f"{check['limit']:g} {check['unit']} ({check['where']})"
    )


def objective_value(result: dict, objective: str) -> float:
    """The figure --recommend ranks by: latency at the smallest batch (ms), or the best images/s."""
    if objective == "throughput":
        return best_throughput(result)[0]
    smallest = min(result["latency"], key=lambda lat: lat["batch"])
    return smallest[f"{objective}_ms"]


def exported_drops(metrics: dict) -> dict[tuple[str, str], float]:
    """(engine, variant) -> the test top-1 points the export measured it losing against fp32 (card metrics; an fp32
    model against PyTorch's), for a bench that measures no accuracy itself: ("onnx", "int8") for the ort-* backends,
    ("openvino", ...) for OpenVINO. Rounded to 1e-6 as evaluation.points: one image of 100 is 1.0 points, not
    1.0000000000000009 (which a 1-point budget failed, a review found)."""
    from edgetransfer.evaluation import points

    pairs = {}
    torch = (metrics.get("torch") or {}).get("test_top1")
    for engine in ("onnx", "openvino"):
        fp32 = (metrics.get(f"{engine}_fp32") or {}).get("test_top1")
        pairs[(engine, "fp32")] = (torch, fp32)  # the converted fp32 vs PyTorch's
        for variant in ("fp16", "int8"):
            pairs[(engine, variant)] = (fp32, (metrics.get(f"{engine}_{variant}") or {}).get("test_top1"))
    measured = {
        key: (a, b) for key, (a, b) in pairs.items() if isinstance(a, (int, float)) and isinstance(b, (int, float))
    }
    drops = {key: points(a, b) for key, (a, b) in measured.items()}
    return {key: drop for key, drop in drops.items() if drop is not None}  # (NaN: not measured)
    return drops


def recommend(
    results: list[dict], checks: list[dict], *, objective: str, max_drop: float, exported: dict | None = None
) -> dict:
    """The fastest variant whose top-1 is within ``max_drop`` points of the fp32 reference and that meets every
    budget; ``{"backend": None, "reason": ...}`` when none does. Without accuracy measured here, the drops the
    export measured (``exported``, from :func:`exported_drops`) still exclude a variant known to lose too much."""
    failed = {(c["backend"], c["variant"]) for c in checks if not c["passed"]}
    measured = any(r.get("accuracy") for r in results)
    candidates, excluded = [], []
    for r in results:
        acc = r.get("accuracy") or {}
        delta = acc.get("top1_delta_points")
        # a drop not measured here (no accuracy, or no fp32 reference beside it: --variants int8 --data DIR) is the
        # one the export measured, as check_budgets takes it; it read "loses more than N points" without any drop
        known = None if delta is not None else _value(r, "max_top1_drop_points", exported)[0]
        if (r["backend"], r["variant"]) in failed:
            missed = sorted({c["what"] for c in checks if (c["backend"], c["variant"]) == (r["backend"], r["variant"])
                             and not c["passed"]})  # fmt: skip
            excluded.append(f"{r['backend']} {r['variant']} misses the {' and '.join(missed)} budget")
        elif delta is not None and -delta > max_drop:
            excluded.append(f"{r['backend']} {r['variant']} loses more than {max_drop:g} top-1 points")
        elif known is not None and known > max_drop:
            excluded.append(
                f"{r['backend']} {r['variant']} lost {known:.2f} top-1 points at export (test split), more than "
                f"{max_drop:g}"
            )
        else:
            candidates.append(r)
    higher_better = objective == "throughput"
    unit = "img/s" if higher_better else "ms"
    if not candidates:
        return {"backend": None, "variant": None, "objective": objective, "reason": "; ".join(excluded)}
    best = sorted(candidates, key=lambda r: objective_value(r, objective), reverse=higher_better)[0]
    acc = best.get("accuracy") or {}
    ran = {}  # threads each engine ran: OpenVINO uses at most one per core, where a profile asks for more
    for r in results:
        if r.get("threads") is not None:
            ran.setdefault(r["threads"], []).append(r["backend"])
    where = "best of batch sizes and async" if higher_better else f"batch {min(b['batch'] for b in best['latency'])}"
    return {
        "backend": best["backend"],
        "variant": best["variant"],
        "precision": best["precision"],
        "objective": objective,
        "value": objective_value(best, objective),
        "unit": unit,
        "where": where,
        "top1": acc.get("top1"),
        "top1_delta_points": acc.get("top1_delta_points"),
        "max_drop_points": max_drop,
        "accuracy_checked": measured,
        "excluded": excluded,
        # the engines ran different thread counts (a vehicle profile's 4 on 2 cores: ONNX Runtime's 4 took turns
        # and missed the deadline where OpenVINO's 2 did not): not a like-for-like race
        "threads_differ": "; ".join(f"{', '.join(sorted(set(b)))}: {n}" for n, b in sorted(ran.items()))
        if len(ran) > 1
        else None,
        "largest_batch": None if higher_better else _fastest_at_largest_batch(candidates, best, objective),
    }


def _fastest_at_largest_batch(candidates: list[dict], best: dict, objective: str) -> dict | None:
    """Where latency is ranked at the smallest batch and larger ones were measured: the fastest at the largest,
    when it is another variant (a new user's bench of batches 1 and 8 was recommended ONNX Runtime int8 at batch 1,
    where OpenVINO int8 took 15.2 ms at batch 8 against its 26.5, unsaid)."""
    largest = max(lat["batch"] for r in candidates for lat in r["latency"])
    if largest == min(lat["batch"] for lat in best["latency"]):
        return None

    def at(r: dict) -> float | None:
        return next((lat[f"{objective}_ms"] for lat in r["latency"] if lat["batch"] == largest), None)

    timed = [r for r in candidates if at(r) is not None]
    if not timed:
        return None
    fastest = min(timed, key=lambda r: (at(r), r is not best))  # a tie goes to the pick
    if fastest is best:
        return None
    return {"batch": largest, "backend": fastest["backend"], "variant": fastest["variant"], "value": at(fastest),
            "pick_measured": at(best) is not None}  # fmt: skip


def recommendation_line(rec: dict) -> str:
    if not rec.get("backend"):
        return f"recommend: no variant qualifies ({rec.get('reason') or 'nothing measured'})"
    name = "throughput" if rec["objective"] == "throughput" else rec["objective"]
    acc = (
        f", top-1 {100 * rec['top1']:.2f}% ({rec['top1_delta_points']:+.2f} points vs fp32)"
        if rec.get("top1") is not None and rec.get("top1_delta_points") is not None
        else f", top-1 {100 * rec['top1']:.2f}% (no fp32 reference measured beside it)"
        if rec.get("top1") is not None
        else " (accuracy not measured)"
    )
    differ = (
        f"; note: the engines ran different numbers of threads ({rec['threads_differ']}): not a like-for-like "
        "comparison; --threads N with N at most this machine's cores measures them alike"
        if rec.get("threads_differ")
        else ""
    )
    large = rec.get("largest_batch")
    batched = (
        f"; at batch {large['batch']} {large['backend']} {large['variant']} is the fastest ({name} "
        f"{large['value']:.4g} ms{'' if large.get('pick_measured', True) else '; the pick was not measured there'}"
        f"): the pick is for batch {rec['where'].removeprefix('batch ')}"
        if large
        else ""
    )
    return (
        f"recommend: {rec['backend']} {rec['variant']} (runs in {rec['precision']}): {name} "
        f"{rec['value']:.4g} {rec['unit']} at {rec['where']}{acc}; accuracy budget {rec['max_drop_points']:g} "
        f"points{batched}{differ}"
    )

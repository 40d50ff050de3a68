"""What to measure and how long: :class:`BenchConfig`, and the parsing of its command-line spellings."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal

from edgetransfer.backends.base import PRECISIONS
from edgetransfer.errors import UsageError
from edgetransfer.schemas import dataclass_schema, validate

if TYPE_CHECKING:
    from edgetransfer.bench.profiles import Profile

DEFAULT_BACKENDS = ("torch-cpu", "ort-cpu", "openvino-cpu")
VARIANTS = ("fp32", "fp16", "int8")
OBJECTIVES = ("p50", "p90", "p99", "throughput")
MAX_BATCH = 1024
# The range of each measurement setting, from the command line, a profile or a baseline's settings: anything outside
# would measure for hours (or allocate gigabytes) before saying a word.
RANGES: dict[str, tuple[float, float, str]] = {  # name -> (lowest, highest, unit)
    "warmup": (0, 10_000, "runs"),
    "warmup_time": (0, 60, "seconds"),
    "min_runs": (1, 100_000, "runs"),
    "min_time": (0, 600, "seconds"),
    "rounds": (1, 1000, "rounds"),
    "processes": (1, 1000, "processes"),
    "async_time": (0, 60, "seconds"),
    "threads": (1, 1024, "threads"),
    "max_accuracy_drop": (0, 100, "points"),
    "timeout": (1, 86_400, "seconds"),
}


def batch_problem(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_BATCH:
        return None
    return f"batch size {value!r} (expected a whole number from 1 to {MAX_BATCH})"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long. Latency is measured in ``rounds`` that alternate between the models (so a
    change in machine load hits all of them alike), each model in a process of its own when ``isolate``."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS  # or ("all",): every backend available here
    variants: tuple[str, ...] | None = None  # None: every variant the run has a file for
    batches: tuple[int, ...] = (1,)
    threads: int | None = None  # default: every usable core
    precision: str = "auto"
    warmup: int = 10  # untimed runs before measuring, at least...
    warmup_time: float = 0.2  # ...and this many seconds
    min_runs: int = 50  # timed runs, at least...
    min_time: float = 1.0  # ...and this many seconds (per model and batch size, over all rounds)
    rounds: int = 10
    processes: int = 1  # fresh processes per model the rounds are shared among (averages out a process's luck)
    async_time: float = 0.5  # seconds of multi-stream throughput per batch size (OpenVINO); 0: off
    accuracy: bool = True
    data: str | None = None  # labelled folder for accuracy; default: the run's test split
    isolate: bool = True  # each (backend, variant) in a fresh process: its own peak RSS, a crash stays there
    only: tuple[str, ...] = ()  # "backend:variant" keys to measure, e.g. the gate's re-measurement
    max_accuracy_drop: float = 1.0  # top-1 points below the fp32 reference that --recommend accepts
    objective: str = "p50"  # what --recommend minimises (p50/p90/p99 at the smallest batch) or maximises
    recommend: bool = False  # name the best variant within the accuracy budget (document["recommendation"])
    profile: Profile | None = None
    timeout: float = 600.0  # seconds one step of one model may take before it counts as hung
    reference_run: str | None = None  # another run whose models are measured side by side in the same rounds
    probe: bool = False  # also measure the machine probe (bench/probe.py) in the same rounds: baselines and their gate

    def validate(self) -> None:
        """Every setting checked against the schema derived from these fields and :func:`constraints` (types,
        finite numbers, the ranges of :data:`RANGES`, batch sizes, choices): the first mistake as one line."""
        if not self.backends:
            raise UsageError("--backends is empty; name at least one (torch-cpu, ort-cpu, openvino-cpu, ...) or 'all'")
        if self.variants is not None and not self.variants:
            raise UsageError(f"--variants is empty; name at least one of {', '.join(VARIANTS)}")
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profile"}
        validate(options_schema(), values, "", error=UsageError, flags=True)
        if self.processes > self.rounds:
            raise UsageError(
                f"--processes must be at least 1 and at most --rounds ({self.rounds}), not {self.processes}"
                + (
                    f" (profile {self.profile.name} sets {' and '.join(set_here)})"
                    if self.profile is not None
                    and (set_here := [k for k in ("processes", "rounds") if k in self.profile.settings])
                    else ""
                )
            )
        if self.processes > 1 and not self.isolate:  # it measured in one process and recorded processes N
            raise UsageError(
                f"--processes {self.processes} measures each model in {self.processes} fresh processes, and "
                "--in-process measures every model in this one: give one of them"
            )

    def settings(self) -> dict[str, Any]:
        """The resolved settings as JSON-ready values (the profile by name)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profile"}
        out["profile"] = self.profile.name if self.profile else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


SETTING_NAMES = frozenset(f.name for f in fields(BenchConfig)) - {"profile"}


def constraints() -> dict[str, Any]:
    """What a setting may hold beyond its type, for the command line, a profile and a baseline alike."""
    from pydantic import Field, Strict

    from edgetransfer.schemas import Name

    found: dict[str, Any] = {k: Field(ge=low, le=high) for k, (low, high, _) in RANGES.items()}
    batch = Annotated[int, Strict(), Field(ge=1, le=MAX_BATCH)]
    found["batches"] = Annotated[tuple[batch, ...], Strict(False), Field(min_length=1, max_length=64)]
    found["variants"] = Annotated[tuple[Literal[VARIANTS], ...], Strict(False), Field(min_length=1)]
    found["backends"] = Annotated[tuple[Name, ...], Strict(False), Field(min_length=1, max_length=64)]
    found["only"] = Annotated[tuple[Name, ...], Strict(False), Field(max_length=1000)]
    found["precision"] = Literal[PRECISIONS]
    found["objective"] = Literal[OBJECTIVES]
    return found


@functools.cache
def options_schema():
    """BenchConfig's schema, derived from its fields (all but the profile) and :func:`constraints`."""
    return dataclass_schema(BenchConfig, "BenchOptions", constraints=constraints(), include=SETTING_NAMES)


def make_config(
    explicit: dict[str, Any], *, profile: Profile | None = None, baseline: dict | None = None
) -> BenchConfig:
    """A config from, in rising priority: the defaults, a baseline's settings (measure what it measured), a
    profile's settings, and the values given explicitly (``None`` values count as not given)."""
    values: dict[str, Any] = {}
    if baseline:
        if not baseline.get("results"):
            raise UsageError(
                "the baseline holds no measured model (its results are empty); save one with a bench "
                "that measured something: bench RUN --save-baseline FILE"
            )
        kept = ("backends", "variants", "batches", "threads", "precision", "warmup", "warmup_time", "min_runs")
        kept += ("min_time", "rounds", "processes", "async_time")
        settings = baseline.get("settings", {})
        values.update({k: settings[k] for k in kept if settings.get(k) is not None})
        if settings.get("isolated") is not None:  # in one process, models share its thread pools: measure alike
            values["isolate"] = settings["isolated"]
        if settings.get("threads") is None and settings.get("threads_resolved"):
            values["threads"] = settings["threads_resolved"]
        if "variants" not in values:  # the baseline took what its run had: ask for exactly those now
            values["variants"] = sorted({r["variant"] for r in baseline.get("results", [])}, key=VARIANTS.index)
    if profile:
        values.update(profile.settings)
        values["profile"] = profile
        if profile.objective:
            values["objective"] = profile.objective
        if "max_top1_drop_points" in profile.budget:
            values["max_accuracy_drop"] = profile.budget["max_top1_drop_points"]
    values.update({k: v for k, v in explicit.items() if v is not None})
    for key in ("backends", "variants", "batches", "only"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    for key in ("backends", "variants"):  # one named twice (ort-cpu,ort-cpu) is measured once, where first named
        if isinstance(values.get(key), tuple):
            values[key] = tuple(dict.fromkeys(values[key]))
    if isinstance(values.get("batches"), tuple):  # a profile's [8, 1, 8], as --batch's: batch 8 was measured twice
        values["batches"] = tuple(sorted(set(values["batches"])))
    if values.get("isolate") is False and explicit.get("processes") is None and values.get("processes", 1) > 1:
        # a baseline's or profile's fresh processes, with --in-process given (or a baseline measured in one process
        # that recorded processes N): in one process, as it measures; both typed is refused by validate()
        values["processes"] = 1
    return BenchConfig(**values)


def restart_every_rounds(rounds: int, processes: int) -> int:
    """Rounds each fresh process measures before the next one starts (0: one process for all of them)."""
    return math.ceil(rounds / processes) if processes > 1 else 0


def processes_per_batch(rounds: int, processes: int) -> int:
    """The fresh processes a model's rounds at one batch size are shared among: ``--processes`` where the rounds
    divide evenly, else fewer (rounds 4, processes 3: 2 rounds each, so 2 processes; a review)."""
    every = restart_every_rounds(rounds, processes)
    return 1 + (rounds - 1) // every if every else 1


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8"`` or ``"1..8"`` (doubling from 1, then 8 itself: 1,2,4,8; ``"3..10"``: 3,6,10) -> batch sizes."""
    sizes: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if ".." in part:
                low, high = (int(x) for x in part.split(".."))
                _check_batch(text, low)
                _check_batch(text, high)
                if low > high:
                    raise UsageError(f"--batch {text!r}: the range {part} runs backwards (expected LOW..HIGH)")
                size = low
                while size < high:
                    sizes.append(size)
                    size *= 2
                sizes.append(high)
            else:
                sizes.append(_check_batch(text, int(part)))
    except ValueError:
        raise UsageError(f"--batch {text!r}: expected sizes like 1,8 or 1..8") from None
    if not sizes:
        raise UsageError(f"--batch {text!r}: expected sizes like 1,8 or 1..8")
    return tuple(sorted(set(sizes)))


def _check_batch(text: str, size: int) -> int:
    if batch_problem(size):
        raise UsageError(f"--batch {text!r}: {batch_problem(size)}")
    return size


def parse_fraction(text: str, option: str = "--max-regression") -> float:
    """``"10%"`` or ``"10"`` -> 0.1: a percentage, with or without its sign. A bare number below 1 is refused: read
    as a fraction it meant another gate than read as a percentage ('0.5': 50 % or 0.5 %?), and a bare 1 was once
    100 % beside 2 meaning 2 %, so a gate written '1' for 1 % passed a 70 % slowdown."""
    stripped = text.strip()
    try:
        number = float(stripped.rstrip("%"))
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a percentage like 10%") from None
    if not stripped.endswith("%") and 0 < number < 1:
        raise UsageError(
            f"{option} {text!r}: a percentage or a fraction? write {number * 100:g}% or {number:g}% (a bare number "
            "is read as a percentage)"
        )
    value = number / 100
    if not 0 < value < 10:
        raise UsageError(f"{option} {text!r}: must be above 0% and below 1000%")
    return value

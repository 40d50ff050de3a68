"""Statistics of latency samples: percentiles, and a bootstrap confidence interval for a ratio of medians."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def latency_stats(times_ms: Sequence[float], batch: int) -> dict:
    """Percentiles, mean, stdev and coefficient of variation of per-inference times (ms), and images/s."""
    arr = np.asarray(times_ms, dtype=float)
    mean = float(arr.mean())
    stdev = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    p50, p90, p99 = (float(x) for x in np.percentile(arr, [50, 90, 99]))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "stdev_ms": stdev,
        "cv_percent": 100 * stdev / mean if mean else 0.0,
        "min_ms": float(arr.min()),
        "runs": len(arr),
        "throughput_ips": 1000.0 * batch / mean if mean else 0.0,
    }


def block_log_medians(samples: Sequence[float], rounds: Sequence[int], per_round: int) -> np.ndarray:
    """log(median) of each block of consecutive samples: every round cut into ``per_round`` equal blocks.

    Blocks, not single runs, are the unit of comparison: runs next to each other share the machine's state
    (load, clock, caches), so treating thousands of runs as independent would claim a precision the machine does
    not have; the spread between blocks measured minutes or seconds apart is the honest noise. A block whose
    median is not a positive finite time gives NaN (and so does every figure computed from it)."""
    x = np.asarray(samples, dtype=float)
    out, start = [], 0
    for count in rounds:
        for part in np.array_split(x[start : start + count], per_round):
            if len(part):
                median = float(np.median(part))
                out.append(math.log(median) if 0 < median < math.inf else math.nan)
        start += count
    return np.asarray(out)


def blocks_per_round(rounds: Sequence[Sequence[int]], min_blocks: int = 12) -> int:
    """How many blocks to cut each round into so that there are at least ``min_blocks`` (every block non-empty)."""
    fewest_rounds = min(len(r) for r in rounds)
    shortest = min(min(r) for r in rounds)
    return max(1, min(math.ceil(min_blocks / max(fewest_rounds, 1)), shortest))


def log_ratio_interval(
    a: np.ndarray, b: np.ndarray | None = None, *, level: float = 0.95
) -> tuple[float, float, float]:
    """exp(mean(a) - mean(b)) and its Welch t confidence interval: (ratio, low, high).

    ``a`` and ``b`` are per-block log medians (or, for ratios to a reference measured in the same rounds, the
    per-block differences); ``b=None`` compares ``a`` with 0."""
    from scipy.stats import t as student

    def part(x: np.ndarray) -> tuple[float, float, int]:
        return float(np.mean(x)), (float(np.var(x, ddof=1)) / len(x) if len(x) > 1 else 0.0), len(x)

    mean_a, var_a, n_a = part(a)
    mean_b, var_b, n_b = part(b) if b is not None else (0.0, 0.0, 0)
    diff, var = mean_a - mean_b, var_a + var_b
    if n_a < 2 and n_b < 2:  # one block a side: no spread to judge by, so no interval (it read as zero wide)
        return _exp(diff), 0.0, math.inf
    if var == 0:
        return _exp(diff), _exp(diff), _exp(diff)
    terms = [v**2 / (n - 1) for v, n in ((var_a, n_a), (var_b, n_b)) if n > 1 and v > 0]
    dof = var**2 / sum(terms) if terms else 1.0
    half = float(student.ppf(0.5 + level / 2, dof)) * math.sqrt(var)
    return _exp(diff), _exp(diff - half), _exp(diff + half)


def _exp(x: float) -> float:
    """exp, infinite past what a float holds (a ratio of absurd times) instead of an OverflowError."""
    return math.exp(x) if x < 700 else math.inf


NOISY_CV_PERCENT = 50.0  # a CV above this: the spread of single runs is large
NOISY_CI = 0.05  # a 95% CI of the typical time wider than ±5%: a comparison cannot see a 5% change


def median_interval(samples: Sequence[float], rounds: Sequence[int], *, level: float = 0.95) -> tuple[float, float]:
    """The confidence interval of the typical time (the geometric mean of block medians, as the gate judges it),
    as fractions below and above it: (0.03, 0.04) is -3% to +4%."""
    blocks = block_log_medians(samples, rounds, blocks_per_round([rounds]))
    typical, low, high = log_ratio_interval(blocks, level=level)
    return 1 - low / typical, high / typical - 1


def noise_problem(latency: dict) -> str | None:
    """Why one measurement (a latency entry of a bench document) is too noisy to trust, or None. The rule: a CV
    above :data:`NOISY_CV_PERCENT` or a 95% CI of the typical time wider than ±:data:`NOISY_CI`."""
    below, above = median_interval(latency["samples_ms"], latency["rounds"])
    why = []
    if latency["cv_percent"] > NOISY_CV_PERCENT:
        why.append(f"CV {latency['cv_percent']:.0f}% (above {NOISY_CV_PERCENT:.0f}%)")
    if not math.isfinite(above):
        why.append("too few runs to estimate its spread (one block: more --rounds or --min-runs)")
    elif max(below, above) > NOISY_CI:
        why.append(f"95% CI of the median -{100 * below:.1f}% to +{100 * above:.1f}% (wider than ±{100 * NOISY_CI:g}%)")
    return "; ".join(why) or None

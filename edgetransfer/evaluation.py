"""Accuracy, parity and int8-vs-fp32 speed of loaded models (backend sessions, ONNX files) on labelled images.

Images are decoded once per stage into a :class:`Decoded` set, by the device runtime's own preprocessing, and every
model of the stage is scored on the same arrays: the number in the card is what the device will see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample, batches
from edgetransfer.errors import ExportError

if TYPE_CHECKING:
    from edgetransfer.backends.base import Session

MAX_DECODED_BYTES = 1 << 30  # a set larger than this as float32 is decoded batch by batch each time instead


def fp32_reference(metrics: dict[str, dict]) -> tuple[str, dict]:
    """The card metric int8 drops are taken against, and its figures: fp32 math (the fp32 ONNX model in ONNX
    Runtime) where it was measured, else the fp32 IR's. The IR's ran in bf16 on a CPU with AVX-512 BF16 or AMX:
    measured against them, what bf16 lost was left out of an int8 IR's drop (the demo's card said 0.00 validation
    points where the loss against fp32 was 0.74), and a device without bf16 loses all of it."""
    for key in ("onnx_fp32", "openvino_fp32"):
        if metrics.get(key):
            return key, metrics[key]
    return "onnx_fp32", {}


def spaced(total: int, count: int) -> np.ndarray:
    """The indices of at most ``count`` items evenly spaced through ``total`` (all of them when ``count`` >=
    ``total``)."""
    if count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max(count, 0)).round().astype(int))


class Decoded:
    """Labelled images preprocessed once into a float32 NCHW array (or, past :data:`MAX_DECODED_BYTES`, decoded
    again on each pass, so that memory stays bounded)."""

    def __init__(self, samples: Sequence[Sample], pre: Preprocessing, *, images: np.ndarray | None = None) -> None:
        self.samples, self.pre = tuple(samples), pre
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)
        if images is None and self.samples and len(self.samples) * 3 * pre.crop**2 * 4 <= MAX_DECODED_BYTES:
            images = np.concatenate([b for b, _ in batches(self.samples, pre, batch_size=64)])
        self.images = images  # None: decoded on each pass

    def __len__(self) -> int:
        return len(self.samples)

    def head(self, count: int) -> Decoded:
        """The first ``count`` images, without decoding them again."""
        images = None if self.images is None else self.images[:count]
        return Decoded(self.samples[:count], self.pre, images=images)

    def spread(self, count: int) -> Decoded:
        """At most ``count`` images evenly spaced through the set, without decoding them again. A split is listed
        class by class: its first 64 images were the digits' classes 0-2 alone, so the parity checks and the int8
        layer ranking that took them looked at a few classes only."""
        if count >= len(self):
            return self
        picked = spaced(len(self), count)
        images = None if self.images is None else self.images[picked]
        return Decoded([self.samples[i] for i in picked], self.pre, images=images)

    def batches(self, batch_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.images is None:
            yield from batches(self.samples, self.pre, batch_size)
            return
        for start in range(0, len(self.samples), batch_size):
            yield self.images[start : start + batch_size], self.labels[start : start + batch_size]


def decoded(data: Decoded | Sequence[Sample], pre: Preprocessing | None = None) -> Decoded:
    """``data`` as a :class:`Decoded` set (samples are decoded here, with ``pre``)."""
    if isinstance(data, Decoded):
        return data
    if pre is None:
        raise TypeError("samples need the preprocessing to decode them with")
    return Decoded(data, pre)


def evaluate(session: Session, data: Decoded, batch_size: int = 32) -> float:
    """Top-1 accuracy (0..1) of ``session`` on ``data``; NaN when there are no images."""
    if not len(data):
        return float("nan")
    correct = 0
    for images, labels in data.batches(batch_size):
        correct += int((session.run(images).argmax(1) == labels).sum())
    return correct / len(data)


def top1(session: Session, samples: Decoded | Sequence[Sample], pre: Preprocessing | None = None) -> float:
    """:func:`evaluate` on samples (decoded here) or on a :class:`Decoded` set."""
    return evaluate(session, decoded(samples, pre))


def parity(
    reference: Session,
    candidate: Session,
    samples: Decoded | Sequence[Sample],
    pre: Preprocessing | None = None,
    rtol: float = 0.0,
) -> dict:
    """Max absolute logit difference and top-1 agreement of two models on the same images, and the largest |logit|
    of the reference. With ``rtol``, also ``max_diff_beyond_rtol``: the largest of each image's max difference less
    ``rtol`` times that image's largest |logit| (a precision such as fp16 errs in proportion to the values it holds;
    held to an absolute tolerance, this is numpy's ``allclose`` rule with each image's largest |logit| as the
    scale of all its logits)."""
    max_diff, agree, count, scale, beyond = 0.0, 0, 0, 0.0, -math.inf
    for images, _ in decoded(samples, pre).batches():
        a, b = reference.run(images), candidate.run(images)
        for which, logits in (("the reference model", a), ("the model under check", b)):
            if not np.isfinite(logits).all():
                raise ExportError(f"{which} gives NaN or infinite logits on the check's inputs; parity cannot hold")
        row_diff, row_scale = np.abs(a - b).max(1), np.abs(a).max(1)
        max_diff = max(max_diff, float(row_diff.max()))
        scale = max(scale, float(row_scale.max()))
        beyond = max(beyond, float((row_diff - rtol * row_scale).max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        count += len(images)
    figures = {"max_abs_diff": max_diff, "top1_agreement": agree / max(count, 1), "images": count}
    figures["max_abs_logit"] = scale
    if rtol:
        figures["max_diff_beyond_rtol"] = max(beyond, 0.0)
    return figures


def points(a: float | None, b: float | None) -> float | None:
    """``a - b`` (accuracies as fractions) in percentage points, rounded to 1e-6 so that one image of 100 is exactly
    1.0 and not 1.0000000000000009 (which a 1.0-point budget would refuse); None where either was not measured (no
    images: None, or NaN from :func:`evaluate`)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return round(100 * (a - b), 6)


def measured(accuracy: float | None) -> float | None:
    """``accuracy`` as a card records it: None where there were no images to measure it on (not NaN)."""
    return None if accuracy is None or math.isnan(accuracy) else accuracy


def top1_text(accuracy: float | None, split: str = "test") -> str:
    """``test top-1 93.75%``, or why there is no figure (a split too small to hold out any image)."""
    if measured(accuracy) is None:
        return f"no {split} images: accuracy not measured"
    return f"{split} top-1 {accuracy:.2%}"


SPEEDUP_WORTH_IT = 1.25  # int8 that is not at least this much faster than fp32 is said to be no win
SLOWER = 1.25  # ... and one that takes more than this much of fp32's time is said to be slower


def speed_said(model: str, fp32: str, ratio: float, where: str) -> tuple[str, bool]:
    """What export says of an int8 ``model``'s latency ``ratio`` to ``fp32``'s, measured ``where``, and whether it
    is a warning: slower past :data:`SLOWER`; at 0.8x-1.25x the ratio and that it is not under the 0.80x counted as
    a speed-up (it read "not measurably faster" of an IR bench measured at 0.69x, export's short measure 0.82x: a
    new user's trial)."""
    if ratio > SLOWER:
        return f"{model} is slower than {fp32} here: {ratio:.2f}x fp32's median latency {where}", True
    if ratio >= 1 / SPEEDUP_WORTH_IT:
        return (
            f"{model} runs {ratio:.2f}x fp32's median latency here, not under the {1 / SPEEDUP_WORTH_IT:.2f}x export "
            f"counts as a speed-up {where}",
            True,
        )
    return f"{ratio:.2f}x fp32's median latency {where}", False


DYNAMIC_NOTE = "; dynamic (weight-only) int8 runs convolutions slowly in ONNX Runtime: try --int8-method static"


def cpu_clock() -> tuple[Callable[[], float], str]:
    """The clock that times one inference in export's latency ratios, and its name: the process's CPU time, except
    on Windows, whose process times move in 15.6 ms ticks (a sub-millisecond inference would read 0), where it is
    wall time."""
    import sys
    import time

    if sys.platform == "win32":
        return time.perf_counter, "wall time"
    return time.process_time, "CPU time"


LATENCY_MEASURE = f"ONNX Runtime, one image, 1 thread, {cpu_clock()[1]}"  # what latency_ratio measures (card, messages)


def latency_ratio(fp32: Path, candidate: Path, size: int, *, seconds: float = 1.0) -> float:
    """Median latency of the ONNX file ``candidate`` over that of ``fp32`` in ONNX Runtime at 1 thread, each
    inference timed in the process's CPU time (see :func:`session_latency_ratio`).

    CPU time, not wall time: a decision taken at export time (is int8 with layers in float still faster than fp32?)
    must not depend on what else the machine runs. For the demo's int8 model, at 0.65-0.67x fp32 on a quiet machine
    by wall-clock ratios at the default threads, those ratios read 0.16-1.24x while a process per core shared the
    CPU; at 1 thread the inference runs on the calling thread, with no pool that spins or waits for a descheduled
    peer, and its CPU-time ratio read 0.60-0.62x quiet and 0.64-0.69x under the same loads
    (benchmarks/results/probe_cpu_time.md): it still moves, by up to about 0.07 (shared caches), not by 4x. It also
    reads a little lower than at the default threads (0.61 against 0.65 there, quiet): int8 gains a little more on
    one thread. On Windows it is wall time (:func:`cpu_clock`)."""
    from edgetransfer.backends.ort import _OrtSession, ort_session

    sessions = [_OrtSession(ort_session(path, threads=1), "fp32") for path in (fp32, candidate)]
    return session_latency_ratio(*sessions, size, seconds=seconds, clock=cpu_clock()[0])


def session_latency_ratio(
    fp32: Session, candidate: Session, size: int, *, seconds: float = 1.0, clock: Callable[[], float] | None = None
) -> float:
    """Median latency of ``candidate`` over that of ``fp32`` on one image, measured in alternating rounds within
    ``seconds`` of wall time (one run's ratio: the machine's noise hits both alike); each inference timed by
    ``clock`` (wall time by default)."""
    import time

    clock = clock or time.perf_counter
    image = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    sessions = (fp32, candidate)
    times: list[list[float]] = [[], []]
    for session in sessions:  # warm-up
        for _ in range(3):
            session.run(image)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[1]) < 10:
        for session, kept in zip(sessions, times, strict=True):
            started = clock()
            session.run(image)
            kept.append(clock() - started)
    ratio = float(np.median(times[1]) / np.median(times[0])) if np.median(times[0]) > 0 else math.nan
    if not math.isfinite(ratio) or ratio <= 0:  # a clock too coarse for one inference: no figure, said so
        raise ExportError(f"the latency ratio could not be measured here (the clock read {ratio}); re-run the export")
    return ratio

"""Accuracy, parity and int8-vs-fp32 speed of loaded models (backend sessions, ONNX files) on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample, batches
from edgetransfer.errors import ExportError

if TYPE_CHECKING:
    from edgetransfer.backends.base import Session


def top1(session: Session, samples: tuple[Sample, ...], pre: Preprocessing, batch_size: int = 32) -> float:
    """Top-1 accuracy (0..1) of ``session`` on ``samples``; NaN when there are none."""
    if not samples:
        return float("nan")
    correct = 0
    for images, labels in batches(samples, pre, batch_size):
        correct += int((session.run(images).argmax(1) == labels).sum())
    return correct / len(samples)


def parity(reference: Session, candidate: Session, samples: tuple[Sample, ...], pre: Preprocessing) -> dict:
    """Max absolute logit difference and top-1 agreement of two models on the same images."""
    max_diff, agree, count = 0.0, 0, 0
    for images, _ in batches(samples, pre):
        a, b = reference.run(images), candidate.run(images)
        for which, logits in (("the reference model", a), ("the model under check", b)):
            if not np.isfinite(logits).all():
                raise ExportError(f"{which} gives NaN or infinite logits on validation images; parity cannot hold")
        max_diff = max(max_diff, float(np.abs(a - b).max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        count += len(images)
    return {"max_abs_diff": max_diff, "top1_agreement": agree / max(count, 1), "images": count}


SPEEDUP_WORTH_IT = 1.25  # int8 that is not at least this much faster than fp32 is said to be no win
DYNAMIC_NOTE = "; dynamic (weight-only) int8 runs convolutions slowly in ONNX Runtime: try --int8-method static"


def latency_ratio(fp32: Path, candidate: Path, size: int, *, seconds: float = 1.0) -> float:
    """Median latency of ``candidate`` over that of ``fp32`` on one image in ONNX Runtime, measured in alternating
    rounds within ``seconds`` (one run's ratio: the machine's noise hits both alike)."""
    import time

    import numpy as np

    from edgetransfer.backends.ort import ort_session

    sessions = [ort_session(fp32), ort_session(candidate)]
    feed = {"input": np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)}
    times: list[list[float]] = [[], []]
    for session in sessions:  # warm-up
        for _ in range(3):
            session.run(None, feed)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[1]) < 10:
        for session, kept in zip(sessions, times, strict=True):
            started = time.perf_counter()
            session.run(None, feed)
            kept.append(time.perf_counter() - started)
    return float(np.median(times[1]) / np.median(times[0]))

"""Accuracy and parity of any loaded model (a backend session) on a split of labelled images."""

from __future__ import annotations

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

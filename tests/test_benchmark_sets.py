"""The benchmarks' generated image sets are what their descriptions say (their figures are reported by them)."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import datasets  # noqa: E402  (benchmarks/datasets.py)


def test_photo_crops_are_resized_as_asked(tmp_path):
    """``photo_crops`` kept every crop at its own size (~90-1,270 px squares): its loop overwrote ``side``."""
    sized = datasets.photo_crops(tmp_path / "64", classes=2, per_class=3, side=64)
    assert {Image.open(p).size for p in sized.rglob("*.jpg")} == {(64, 64)}
    free = datasets.photo_crops(tmp_path / "free", classes=2, per_class=6, seed=3)
    sizes = [Image.open(p).size for p in free.rglob("*.jpg")]
    assert len(sizes) == 12 and all(200 <= min(s) and max(s) <= 640 for s in sizes)
    assert any(w != h for w, h in sizes)  # rectangles, landscape and portrait, not the crops' squares

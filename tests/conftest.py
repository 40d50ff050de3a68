"""Shared fixtures: an isolated environment (no downloads, temporary caches) and small image folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """Weights cache and data home in temporary folders; downloads forbidden."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("TORCH_HOME", "EDGETRANSFER_DATA", "EDGETRANSFER_OFFLINE")}
    os.environ.update(TORCH_HOME=str(home / "torch"), EDGETRANSFER_DATA=str(home / "data"), EDGETRANSFER_OFFLINE="1")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def make_folder(root: Path, per_class: int = 12, classes: int = 3, seed: int = 0) -> Path:
    """``root/<class>/*.png`` with ``per_class`` generated images of each class."""
    from edgetransfer.builtin_data import write_pattern_folder

    return write_pattern_folder(root, per_class=per_class, classes=classes, seed=seed)


def drawn_images(folder, count, seed, size=160):
    """``count`` different images (random coloured ellipses on a random background) as PNGs in ``folder``."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = (int(v) for v in rng.integers(0, size - 20, 2))
            w, h = (int(v) for v in rng.integers(10, size // 2, 2))
            draw.ellipse((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        image.save(folder / f"{i:03d}.png")
    return sorted(folder.iterdir())


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One small fine-tuned and exported run (generated images, 32px, 1 epoch), shared by the tests that read it."""
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.finetune import FinetuneConfig, finetune
    from edgetransfer.quantize import Int8Config

    base = tmp_path_factory.mktemp("shared-run")
    data = make_folder(base / "images", per_class=10)
    run = finetune(FinetuneConfig(data=str(data), out=str(base / "run"), size=32, epochs=2, batch_size=8))
    export(run, ExportConfig(int8=Int8Config(calibration_size=16)))
    return run


@pytest.fixture(autouse=True)
def fresh_image_checks(monkeypatch):
    """Each test checks its images anew: edgetransfer.data keeps its verdicts on files for the whole process."""
    import edgetransfer.data

    monkeypatch.setattr(edgetransfer.data, "_CHECKED", {})

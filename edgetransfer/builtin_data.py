"""Data the package makes itself: the built-in handwritten digits (scikit-learn's 1,797 bundled scans, written
once as an image folder) and generated pattern images for smoke tests and the CI gate."""

from __future__ import annotations

from pathlib import Path

from edgetransfer import console
from edgetransfer.data import SPLITS, Sample, stratified
from edgetransfer.rundir import staging_dir, write_errors_said


def write_pattern_folder(root: Path, *, per_class: int = 12, classes: int = 3, size: int = 40, seed: int = 0) -> Path:
    """``root/class<k>/NNN.png``: noisy RGB images whose class anyone can see (0 horizontal stripes, 1 vertical
    stripes, 2 a bright square), for smoke tests and the CI gate. At most three classes."""
    import numpy as np
    from PIL import Image

    if not 1 <= classes <= 3:
        raise ValueError("write_pattern_folder makes 1 to 3 classes")
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            if label == 0:
                pixels[::6] = 230
            elif label == 1:
                pixels[:, ::6] = 230
            else:
                pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 230
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


DIGITS_NAME = "digits"


def default_data_home() -> Path:
    import os

    return Path(os.environ.get("EDGETRANSFER_DATA", Path.home() / ".cache" / "edgetransfer" / "data"))


def _complete(root: Path) -> bool:
    """Whether the digits folder ``root`` was finished (written whole through a staging folder: its test/ is there)."""
    return (root / "test").is_dir()


def materialize_digits(home: Path | None = None, *, seed: int = 0) -> Path:
    """Write scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) as a train/val/test image folder.

    The split is stratified 70/15/15 with ``seed``; the folder is built once and reused.
    """
    root = Path(home or default_data_home()) / f"{DIGITS_NAME}-seed{seed}"
    if _complete(root):
        return root
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    samples = tuple(Sample(Path(f"{i:04d}.png"), int(t)) for i, t in enumerate(digits.target))
    parts = dict(zip(SPLITS, stratified(samples, seed, 0.15, 0.15), strict=True))
    with write_errors_said(root), staging_dir(root, keep_existing=_complete) as tmp:  # unwritable: one line
        for split, group in parts.items():
            for sample in group:
                folder = tmp / split / str(sample.label)
                folder.mkdir(parents=True, exist_ok=True)
                index = int(sample.path.stem)
                pixels = np.clip(digits.images[index] * (255.0 / 16.0), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / sample.path.name)
    return root


def resolve_data(data: str, seed: int = 0) -> str:
    """The built-in name ``digits`` becomes its image folder (written once); anything else is a path."""
    if data == DIGITS_NAME and not Path(data).exists():
        with console.err.status("writing the built-in digits dataset..."):
            return str(materialize_digits(seed=seed))
    return data

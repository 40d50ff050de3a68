"""Labelled image sets made here from what installs offline, for benchmarks and the README's figures.

    .venv/bin/python benchmarks/datasets.py photo-crops /tmp/photos --classes 10 --per-class 60

``photo-crops``: each class is one of scikit-image's sample photographs; its images are crops at a random
position, scale (30-90 % of the shorter side), rotation (+-20 degrees), brightness and contrast (+-25 %), saved as
JPEGs of 300x200 to 640x480 pixels (landscape or portrait). Real pixels, but an easy task (which photo is this
crop from?): figures on it say what a run costs, not how hard data behaves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "colorwheel",
    "camera",
    "coins",
    "horse",
)


def _photo(name: str):
    import numpy as np
    import skimage.data

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image  # stereo pairs
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3].astype(np.uint8)


def photo_crops(root: Path, *, classes: int = 10, per_class: int = 60, seed: int = 0) -> Path:
    """``root/<photo>/NNN.jpg``: ``per_class`` random crops of each of ``classes`` sample photographs."""
    import numpy as np
    from PIL import Image, ImageEnhance

    if not 2 <= classes <= len(PHOTOS):
        raise ValueError(f"photo_crops makes 2..{len(PHOTOS)} classes")
    rng = np.random.default_rng(seed)
    for name in PHOTOS[:classes]:
        photo = Image.fromarray(_photo(name))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            turned = photo.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR, expand=False)
            side = int(min(turned.size) * rng.uniform(0.3, 0.9))
            x = int(rng.integers(0, turned.size[0] - side + 1))
            y = int(rng.integers(0, turned.size[1] - side + 1))
            crop = turned.crop((x, y, x + side, y + side))
            width, height = int(rng.integers(300, 641)), int(rng.integers(200, 481))
            if rng.random() < 0.3:
                width, height = height, width  # some portrait images
            crop = crop.resize((width, height), Image.BILINEAR)
            crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.75, 1.25)))
            crop = ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.75, 1.25)))
            crop.save(folder / f"{i:03d}.jpg", quality=90)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["photo-crops"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(photo_crops(args.root, classes=args.classes, per_class=args.per_class, seed=args.seed))


if __name__ == "__main__":
    main()

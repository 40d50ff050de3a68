"""Labelled image sets made here from what installs offline, for benchmarks and the README's figures.

    .venv/bin/python benchmarks/datasets.py photo-crops /tmp/photos --classes 10 --per-class 60
    .venv/bin/python benchmarks/datasets.py suite /tmp/suite      # the eight sets of the fine-tuning benchmark

``photo-crops``: each class is one of scikit-image's sample photographs; its images are crops at a random
position, scale (30-90 % of the shorter side), rotation (+-20 degrees), brightness and contrast (+-25 %), saved as
JPEGs of 300x200 to 640x480 pixels (landscape or portrait). Real pixels, but an easy task (which photo is this
crop from?): figures on it say what a run costs, not how hard data behaves.

``suite``: eight small sets that differ in kind (see :data:`SUITE`), split in two halves: the defaults of
``edgetransfer finetune`` are chosen on the ``choose`` half only and reported on the ``report`` half.
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


CHOOSE_PHOTOS = ("cat", "brick", "grass", "gravel", "moon", "clock", "coins", "cell", "page", "text")


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


def photo_crops(root: Path, *, classes: int = 10, per_class: int = 60, seed: int = 0, side: int | None = None) -> Path:
    """``root/<photo>/NNN.jpg``: ``per_class`` random crops of each of ``classes`` sample photographs (300-640 px,
    or ``side`` x ``side`` px)."""
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
            # (its own name: it was ``side``, which overwrote the argument, so every image kept its crop's size,
            # ~90-1,270 px squares, whatever ``side`` asked; sets made before the fix were those)
            crop_side = int(min(turned.size) * rng.uniform(0.3, 0.9))
            x = int(rng.integers(0, turned.size[0] - crop_side + 1))
            y = int(rng.integers(0, turned.size[1] - crop_side + 1))
            crop = turned.crop((x, y, x + crop_side, y + crop_side))
            width, height = int(rng.integers(300, 641)), int(rng.integers(200, 481))
            if rng.random() < 0.3:
                width, height = height, width  # some portrait images
            if side is not None:
                width = height = side
            crop = crop.resize((width, height), Image.BILINEAR)
            crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.75, 1.25)))
            crop = ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.75, 1.25)))
            crop.save(folder / f"{i:03d}.jpg", quality=90)
    return root


def _crops(image, rng, count: int, out_sizes: tuple[int, int], *, scale=(0.3, 0.9), rotate=20.0, jpeg=True):
    """``count`` random crops of one photo (PIL image) at a random position, scale, rotation and lighting, each
    resized to a random size in ``out_sizes`` (square side range)."""
    from PIL import Image, ImageEnhance

    crops = []
    for _ in range(count):
        turned = image.rotate(float(rng.uniform(-rotate, rotate)), resample=Image.BILINEAR, expand=False)
        side = int(min(turned.size) * rng.uniform(*scale))
        x = int(rng.integers(0, turned.size[0] - side + 1))
        y = int(rng.integers(0, turned.size[1] - side + 1))
        out = int(rng.integers(out_sizes[0], out_sizes[1] + 1))
        crop = turned.crop((x, y, x + side, y + side)).resize((out, out), Image.BILINEAR)
        crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.75, 1.25)))
        crops.append(ImageEnhance.Contrast(crop).enhance(float(rng.uniform(0.75, 1.25))))
    return crops


def _save(images, folder: Path, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image.save(folder / f"{i:03d}{suffix}", **({"quality": 90} if suffix == ".jpg" else {}))


def digits28(root: Path, *, per_class: int = 25, seed: int = 0) -> Path:
    """scikit-learn's 8x8 handwritten digits, ``per_class`` of each, upscaled to 28x28 grey PNGs (MNIST-like)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        chosen = rng.choice(np.flatnonzero(digits.target == label), per_class, replace=False)
        pixels = [np.clip(digits.images[i] * (255 / 16), 0, 255).astype(np.uint8) for i in chosen]
        _save([Image.fromarray(p).resize((28, 28), Image.BILINEAR) for p in pixels], root / str(label))
    return root


def grey_textures(root: Path, *, per_class: int = 30, seed: int = 0) -> Path:
    """Eight grey photographs and textures of scikit-image (brick, grass, gravel, camera, coins, moon, page, clock),
    crops of 48-96 px saved as single-channel PNGs."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "clock"):
        photo = Image.fromarray(getattr(skimage.data, name)())
        _save(_crops(photo, rng, per_class, (48, 96), scale=(0.3, 0.7)), root / name)
    return root


def long_tail(root: Path, *, most: int = 60, seed: int = 0) -> Path:
    """Six classes of colour photo crops (64-128 px) whose counts fall from ``most`` to ``most // 10`` (1:10)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ("cat", "astronaut", "rocket", "coffee", "immunohistochemistry", "stereo_motorcycle")
    counts = np.round(np.geomspace(most, most / 10, len(names))).astype(int)
    for name, count in zip(names, counts, strict=True):
        photo = Image.fromarray(_photo(name))
        _save(_crops(photo, rng, int(count), (64, 128), scale=(0.2, 0.5)), root / name, ".jpg")
    return root


LOW_SHOT_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "retina", "colorwheel", "hubble_deep_field", "camera")


def low_shot(root: Path, *, shots: int = 10, seed: int = 0, photos=LOW_SHOT_PHOTOS) -> Path:
    """Eight classes (one per name in ``photos``) of colour photo crops (128-256 px JPEGs): ``shots`` training images
    per class in ``root/train``, 4 validation and 15 test images per class in ``root/val`` and ``root/test``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in photos:
        photo = Image.fromarray(_photo(name))
        for split, count in (("train", shots), ("val", 4), ("test", 15)):
            _save(_crops(photo, rng, count, (128, 256), scale=(0.15, 0.5)), root / split / name, ".jpg")
    return root


def fifty_regions(root: Path, *, per_class: int = 8, seed: int = 0, scale=(0.5, 0.9), photos=PHOTOS[:10]) -> Path:
    """50 classes: five regions (four quadrants and the centre) of ten photographs; each image a crop inside its
    region (``scale`` of the region's shorter side), 40-64 px. Fine-grained: the classes of one photo share its
    colours, and smaller crops show less of what tells the regions apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in photos:
        photo = Image.fromarray(_photo(name))
        w, h = photo.size
        regions = {
            "tl": (0, 0, w // 2, h // 2),
            "tr": (w // 2, 0, w, h // 2),
            "bl": (0, h // 2, w // 2, h),
            "br": (w // 2, h // 2, w, h),
            "c": (w // 4, h // 4, 3 * w // 4, 3 * h // 4),
        }
        for region, box in regions.items():
            part = photo.crop(box)
            _save(_crops(part, rng, per_class, (40, 64), scale=scale, rotate=10), root / f"{name}-{region}")
    return root


def two_textures(root: Path, *, per_class: int = 100, seed: int = 0, blurs=(0.8, 1.6)) -> Path:
    """Two classes of generated 32 px noise textures, told apart by the size of their blobs (fine vs coarse: the
    Gaussian blur radii ``blurs``, each drawn within +-20 %)."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    for label, blur in zip(("fine", "coarse"), blurs, strict=True):
        images = []
        for _ in range(per_class):
            noise = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 1.2) * blur))), float)
            smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-6) * 50 + 128 + rng.normal(0, 12, smooth.shape)
            images.append(Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)))
        _save(images, root / label)
    return root


def mixed_sizes(root: Path, *, per_class: int = 150, seed: int = 0) -> Path:
    """Twelve classes, one per colour photograph of :data:`PHOTOS`: small crops (10-30 % of the shorter side) saved
    at a random size from 28 to 640 px (JPEG), so that one set holds thumbnails and camera-sized images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = Image.fromarray(_photo(name))
        _save(_crops(photo, rng, per_class, (28, 640), scale=(0.1, 0.3)), root / name, ".jpg")
    return root


def shapes(root: Path, *, per_class: int = 25, seed: int = 0) -> Path:
    """Ten classes of drawn shapes, 64 px (benchmarks/int8_methods.make_shapes)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from int8_methods import make_shapes

    return make_shapes(root, per_class=per_class, size=64, seed=seed)


# name -> (maker, half, what it is); the defaults are chosen on "choose" and reported on "report"
SUITE = {
    "digits": (digits28, "choose", "10 classes, 25 each, 28 px grey handwritten digits (not mirror images)"),
    "shapes": (shapes, "choose", "10 classes, 25 each, 64 px generated shapes"),
    "photo-crops": (
        lambda root, seed=0: photo_crops(root, classes=10, per_class=25, seed=seed),
        "choose",
        "10 classes, 25 each, 300-640 px JPEG crops of photographs",
    ),
    "long-tail": (long_tail, "choose", "6 classes, 60 down to 6 images (1:10), 64-128 px photo crops"),
    "grey-textures": (grey_textures, "report", "8 classes, 30 each, 48-96 px single-channel crops"),
    "low-shot": (low_shot, "report", "8 classes, 10 training images each (+4 val, 15 test), 128-256 px"),
    "fifty-regions": (fifty_regions, "report", "50 classes, 8 each, 40-64 px regions of ten photographs"),
    "two-textures": (two_textures, "report", "2 classes, 100 each, 32 px generated noise textures"),
    # the issue's scale (10 classes, ~2,000 train, 64 px): in neither half (its photos are photo-crops'), it measures
    # the whole-command time where training, not start-up, dominates
    "photos64-large": (
        lambda root, seed=0: photo_crops(root, classes=10, per_class=350, seed=seed, side=64),
        "scale",
        "10 classes, 350 each, 64 px JPEG crops of the photo-crops photographs",
    ),
    # the scale on a set that is not saturated (fifty-regions, 70 per class): made after every default was
    # fixed and never used to choose one, so it is held out; one test image is 0.2 point instead of fifty-regions' 2
    "regions-large": (
        lambda root, seed=0: fifty_regions(root, per_class=70, seed=seed),
        "scale",
        "50 classes, 70 each, 40-64 px regions of ten photographs (fifty-regions at the issue's scale)",
    ),
    # regions-large saturated (98.7-98.9 %) in run 5: the same with crops of 20-45 % of a region instead of 50-90 %,
    # so that a recipe has room to win or lose; made after run 5, held out like it
    "small-regions-large": (
        lambda root, seed=0: fifty_regions(root, per_class=70, seed=seed, scale=(0.2, 0.45)),
        "scale",
        "50 classes, 70 each, 40-64 px crops of 20-45 % of a region of ten photographs",
    ),
    # the same kind of hard set at scale for the choose half (run 7), from ten other images (mostly grey): so that
    # a recipe is chosen on a set with room to win, and reported on small-regions-large, which it never saw
    "choose-regions-large": (
        lambda root, seed=0: fifty_regions(root, per_class=70, seed=seed, scale=(0.2, 0.45), photos=CHOOSE_PHOTOS),
        "scale",
        "50 classes, 70 each, 40-64 px crops of 20-45 % of a region of ten other images (cat, brick, grass, ...)",
    ),
    # run 11's held-out sets, made when its rule was committed and never run before it: training splits on both
    # sides of --strategy auto's 1,000-image threshold (train ~1,060, ~500, ~630, ~1,260 images)
    "grey-textures-mid": (
        lambda root, seed=0: grey_textures(root, per_class=190, seed=seed + 11),
        "fresh",
        "8 classes, 190 each, 48-96 px single-channel crops (grey-textures at 1,520 images)",
    ),
    "regions-mid": (
        lambda root, seed=0: fifty_regions(root, per_class=14, seed=seed + 11, scale=(0.3, 0.6), photos=PHOTOS[2:12]),
        "fresh",
        "50 classes, 14 each, 40-64 px crops of 30-60 % of a region of ten photographs (two not in fifty-regions)",
    ),
    "two-textures-mid": (
        lambda root, seed=0: two_textures(root, per_class=450, seed=seed + 11, blurs=(1.0, 1.4)),
        "fresh",
        "2 classes, 450 each, 32 px noise textures whose blob sizes differ less than two-textures'",
    ),
    "mixed-sizes": (
        mixed_sizes,
        "fresh",
        "12 classes, 150 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    # run 12 (choosing whether --strategy auto's threshold goes down to 300 training images): a choose set between
    # 300 and 1,000 training images from the choose half's ten other images; regions-mid and two-textures-mid
    # (run 11's fresh sets, seen since) choose with it: see RUN12_CHOOSE
    "choose-regions-mid": (
        lambda root, seed=0: fifty_regions(root, per_class=14, seed=seed + 12, scale=(0.3, 0.6), photos=CHOOSE_PHOTOS),
        "choose-mid",
        "50 classes, 14 each, 40-64 px crops of 30-60 % of a region of the choose half's ten other images",
    ),
    # run 12's held-out sets, made when its rule was committed and never run before it: training splits from
    # ~340 to ~840 images, the range the threshold would move into
    "grey-textures-400": (
        lambda root, seed=0: grey_textures(root, per_class=60, seed=seed + 12),
        "fresh2",
        "8 classes, 60 each, 48-96 px single-channel crops (grey-textures at 480 images)",
    ),
    "mixed-sizes-mid": (
        lambda root, seed=0: mixed_sizes(root, per_class=50, seed=seed + 12),
        "fresh2",
        "12 classes, 50 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    "regions-700": (
        lambda root, seed=0: fifty_regions(root, per_class=20, seed=seed + 12, scale=(0.25, 0.5)),
        "fresh2",
        "50 classes, 20 each, 40-64 px crops of 25-50 % of a region of fifty-regions' ten photographs",
    ),
    "two-textures-840": (
        lambda root, seed=0: two_textures(root, per_class=600, seed=seed + 12, blurs=(1.0, 1.5)),
        "fresh2",
        "2 classes, 600 each, 32 px noise textures (blur radii 1.0 vs 1.5)",
    ),
    # run 13's held-out sets (is the batch size from the training split?), made when its rule was committed and
    # never run before it: training splits of ~50 to ~170 images, where batch 32 gives under 10 steps per epoch
    "low-shot-6": (
        lambda root, seed=0: low_shot(
            root,
            shots=6,
            seed=seed + 13,
            photos=(
                "immunohistochemistry",
                "stereo_motorcycle",
                "horse",
                "coins",
                "astronaut",
                "coffee",
                "rocket",
                "camera",
            ),
        ),
        "fresh3",
        "8 classes, 6 training images each (+4 val, 15 test), 128-256 px crops of eight photographs",
    ),
    "grey-textures-160": (
        lambda root, seed=0: grey_textures(root, per_class=20, seed=seed + 13),
        "fresh3",
        "8 classes, 20 each, 48-96 px single-channel crops (grey-textures at 160 images)",
    ),
    "mixed-sizes-small": (
        lambda root, seed=0: mixed_sizes(root, per_class=20, seed=seed + 13),
        "fresh3",
        "12 classes, 20 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    # run 14's held-out sets (the batch size from the training split, chosen on every set seen before), made when
    # its decision was committed and never run before it: small splits of each kind (56 to 210 training images)
    "digits-15": (
        lambda root, seed=0: digits28(root, per_class=15, seed=seed + 14),
        "fresh4",
        "10 classes, 15 each, 28 px grey handwritten digits (other images than digits')",
    ),
    "shapes-15": (
        lambda root, seed=0: shapes(root, per_class=15, seed=seed + 14),
        "fresh4",
        "10 classes, 15 each, 64 px generated shapes",
    ),
    "long-tail-40": (
        lambda root, seed=0: long_tail(root, most=40, seed=seed + 14),
        "fresh4",
        "6 classes, 40 down to 4 images (1:10), 64-128 px photo crops",
    ),
    "two-textures-40": (
        lambda root, seed=0: two_textures(root, per_class=40, seed=seed + 14, blurs=(1.0, 1.4)),
        "fresh4",
        "2 classes, 40 each, 32 px noise textures (blur radii 1.0 vs 1.4)",
    ),
    "regions-6": (
        lambda root, seed=0: fifty_regions(root, per_class=6, seed=seed + 14, scale=(0.3, 0.7), photos=PHOTOS[2:12]),
        "fresh4",
        "50 classes, 6 each, 40-64 px crops of 30-70 % of a region of ten photographs",
    ),
    "photo-crops-120": (
        lambda root, seed=0: photo_crops(root, classes=6, per_class=20, seed=seed + 14),
        "fresh4",
        "6 classes, 20 each, crops of colour photographs (300-640 px; finetune picks 224 px for them)",
    ),
    # run 15's held-out sets (2026-12-06): no default changes with them; they re-measure the defaults as they stand,
    # on another CPU (an Intel Xeon without AVX-512 BF16) and with the img/s measure made time-weighted. Training
    # splits of 268-420 images (aimed at run 12's range, where it met the targets); new seeds (+15); no digits
    # (digits-15 shared images with the choose half); photo-crops as described now that photo_crops resizes
    # (300-640 px)
    "photo-crops-480": (
        lambda root, seed=0: photo_crops(root, classes=8, per_class=60, seed=seed + 15),
        "fresh5",
        "8 classes, 60 each, 300-640 px JPEG crops of colour photographs",
    ),
    "grey-textures-480": (
        lambda root, seed=0: grey_textures(root, per_class=60, seed=seed + 15),
        "fresh5",
        "8 classes, 60 each, 48-96 px single-channel crops",
    ),
    "shapes-60": (
        lambda root, seed=0: shapes(root, per_class=60, seed=seed + 15),
        "fresh5",
        "10 classes, 60 each, 64 px generated shapes",
    ),
    "regions-12": (
        lambda root, seed=0: fifty_regions(root, per_class=12, seed=seed + 15, scale=(0.3, 0.7), photos=PHOTOS[1:11]),
        "fresh5",
        "50 classes, 12 each, 40-64 px crops of 30-70 % of a region of ten photographs",
    ),
    "long-tail-150": (
        lambda root, seed=0: long_tail(root, most=150, seed=seed + 15),
        "fresh5",
        "6 classes, 150 down to 15 images (1:10), 64-128 px photo crops",
    ),
    # run 16's held-out sets (2026-12-06), made with the early-stopping change (not before the middle of the planned
    # epochs) and never run before it: other kinds and seeds (+16) than fresh5, 150-500 training images
    "photo-crops-300": (
        lambda root, seed=0: photo_crops(root, classes=6, per_class=50, seed=seed + 16),
        "fresh6",
        "6 classes, 50 each, 300-640 px JPEG crops of colour photographs",
    ),
    "grey-textures-360": (
        lambda root, seed=0: grey_textures(root, per_class=45, seed=seed + 16),
        "fresh6",
        "8 classes, 45 each, 48-96 px single-channel crops",
    ),
    "two-textures-300": (
        lambda root, seed=0: two_textures(root, per_class=150, seed=seed + 16, blurs=(1.0, 1.4)),
        "fresh6",
        "2 classes, 150 each, 32 px noise textures (blur radii 1.0 vs 1.4)",
    ),
    "regions-10": (
        lambda root, seed=0: fifty_regions(root, per_class=10, seed=seed + 16, scale=(0.3, 0.7), photos=PHOTOS[2:12]),
        "fresh6",
        "50 classes, 10 each, 40-64 px crops of 30-70 % of a region of ten photographs",
    ),
    "mixed-sizes-40": (
        lambda root, seed=0: mixed_sizes(root, per_class=40, seed=seed + 16),
        "fresh6",
        "12 classes, 40 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    # run 19's held-out sets (2026-12-06), made after every default was fixed and never run before it: the issue's
    # scale (840-1,400 training images, 180-300 test images, so that one test image is 0.3-0.6 point, not 2), kinds
    # that do not saturate (fresh5/fresh6's photo and grey sets reached 97-100 %), new seeds (+19)
    "regions-2000": (
        lambda root, seed=0: fifty_regions(root, per_class=40, seed=seed + 19, scale=(0.2, 0.45), photos=PHOTOS[2:12]),
        "fresh7",
        "50 classes, 40 each, 40-64 px crops of 20-45 % of a region of ten photographs",
    ),
    "mixed-sizes-1440": (
        lambda root, seed=0: mixed_sizes(root, per_class=120, seed=seed + 19),
        "fresh7",
        "12 classes, 120 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    "two-textures-1200": (
        lambda root, seed=0: two_textures(root, per_class=600, seed=seed + 19, blurs=(1.0, 1.3)),
        "fresh7",
        "2 classes, 600 each, 32 px noise textures (blur radii 1.0 vs 1.3)",
    ),
    # run 20's held-out sets (2026-12-06), made after run 19 and never run before it: between runs 15/16 (204-420
    # training images, targets missed) and run 19 (840-1,400, met): 500-560 training images, seeds +20
    "regions-750": (
        lambda root, seed=0: fifty_regions(root, per_class=15, seed=seed + 20, scale=(0.2, 0.45), photos=PHOTOS[1:11]),
        "fresh8",
        "50 classes, 15 each, 40-64 px crops of 20-45 % of a region of ten photographs",
    ),
    "mixed-sizes-720": (
        lambda root, seed=0: mixed_sizes(root, per_class=60, seed=seed + 20),
        "fresh8",
        "12 classes, 60 each, crops of 10-30 % of a colour photograph saved at 28-640 px",
    ),
    "two-textures-800": (
        lambda root, seed=0: two_textures(root, per_class=400, seed=seed + 20, blurs=(1.0, 1.3)),
        "fresh8",
        "2 classes, 400 each, 32 px noise textures (blur radii 1.0 vs 1.3)",
    ),
}

RUN12_CHOOSE = ("choose-regions-mid", "regions-mid", "two-textures-mid")  # run 12's choose sets (300-1,000 train)


def make_suite(root: Path, *, seed: int = 0, names=None) -> dict[str, Path]:
    """Every set of :data:`SUITE` (or ``names``) under ``root/<name>``, made once."""
    made = {}
    for name, (maker, _, _) in SUITE.items():
        if names and name not in names:
            continue
        folder = root / name
        if not folder.is_dir():
            maker(folder, seed=seed)
        made[name] = folder
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["photo-crops", "suite"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "suite":
        for name, folder in make_suite(args.root, seed=args.seed).items():
            print(f"{name:14s} {SUITE[name][1]:7s} {folder}")
    else:
        print(photo_crops(args.root, classes=args.classes, per_class=args.per_class, seed=args.seed))


if __name__ == "__main__":
    main()

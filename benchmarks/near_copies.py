"""How well finetune's near-copy look (edgetransfer.data.near_copies) tells copies from different images.

Copies: photographs (scikit-image's) and six altered versions of each (JPEG at quality 50; half size and JPEG 70;
quarter size; brighter; less contrast; grey): the share of (photo, altered) pairs found alike (also after shrinking
the photo to 160 and 80 px). Different images: every pair of images within each benchmark set (datasets.SUITE, and
the tests' generated pattern folder) found alike; such sets hold no copies (a pair found is a false one, unless a
generator drew one region twice). The thresholds were chosen on the ``choose`` photos and sets; the ``report`` ones
were not used to choose them.

    python benchmarks/near_copies.py ROOT [--out benchmarks/results/near_copies.md]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402

from edgetransfer import data  # noqa: E402

PHOTOS = {
    "choose": ("astronaut", "coffee", "chelsea", "camera", "rocket", "coins", "page", "text", "moon", "grass"),
    "report": ("gravel", "brick", "cell", "clock", "horse", "hubble_deep_field", "immunohistochemistry", "retina",
               "colorwheel", "logo"),
}  # fmt: skip
SETS = {
    "choose": ("shapes", "photo-crops", "long-tail", "grey-textures", "low-shot", "fifty-regions", "two-textures",
               "mixed-sizes", "regions-700", "photo-crops-480", "photo-crops-300", "grey-textures-360", "regions-10",
               "mixed-sizes-40", "regions-2000", "mixed-sizes-1440", "regions-750", "mixed-sizes-720"),
    "report": ("grey-textures-mid", "regions-mid", "two-textures-mid", "mixed-sizes-mid", "grey-textures-400",
               "low-shot-6", "mixed-sizes-small", "shapes-15", "long-tail-40", "regions-6", "photo-crops-120",
               "shapes-60", "regions-12", "long-tail-150"),
}  # fmt: skip


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    image = Image.open(buffer)
    image.info["file"] = buffer.getvalue()  # the JPEG file as encoded (saved as it is by _thumb)
    return image


ALTERED = {
    "JPEG 50": lambda im: _jpeg(im, 50),
    "half size, JPEG 70": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2)), 70),
    "quarter size": lambda im: im.resize((im.width // 4, im.height // 4)),
    "brighter (1.15)": lambda im: ImageEnhance.Brightness(im.convert("RGB")).enhance(1.15),
    "less contrast (0.8)": lambda im: ImageEnhance.Contrast(im.convert("RGB")).enhance(0.8),
    "grey": lambda im: im.convert("L"),
}


def _thumb(image: Image.Image) -> bytes | None:
    """The thumbnail finetune's check makes of ``image`` as a file: a JPEG made by :func:`_jpeg` as it was encoded
    (decoded in draft mode, as there), anything else saved as PNG."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / ("image.jpg" if "file" in image.info else "image.png")
        path.write_bytes(image.info["file"]) if "file" in image.info else image.save(path)
        return data._decode_check(path)[1]


def _shrunk(image: Image.Image, side: int | None) -> Image.Image:
    if side is None:
        return image
    scale = side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def copies(names: tuple[str, ...], side: int | None = None) -> dict[str, float]:
    """Per alteration: the share of the photos (shrunk to a shorter ``side`` first, when given) whose altered copy
    is found (a copy too small to compare is not)."""
    from skimage import data as photos

    found = {kind: [] for kind in ALTERED}
    for name in names:
        image = _shrunk(Image.fromarray(getattr(photos, name)()), side)
        original = data.unit_rows([_thumb(image)])
        for kind, alter in ALTERED.items():
            thumb = _thumb(alter(image))
            found[kind].append(thumb is not None and bool(data.alike(original, data.unit_rows([thumb]))[0, 0]))
    return {kind: float(np.mean(hits)) for kind, hits in found.items()}


def false_pairs(folder: Path) -> tuple[int, int, int, float]:
    """(images, images compared, pairs found alike, the highest correlation of edges) within one set."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    thumbs = [t for t in (data._decode_check(p)[1] for p in files) if t is not None]
    if len(thumbs) < 2:
        return len(files), len(thumbs), 0, float("nan")
    rows = data.unit_rows(thumbs)
    found, edges = data.alike(rows, rows), rows[0] @ rows[0].T
    np.fill_diagonal(found, False)
    np.fill_diagonal(edges, -1.0)
    return len(files), len(thumbs), int(np.triu(found).sum()), float(edges.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="where the benchmark sets are made (once)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here too")
    args = parser.parse_args()
    start = time.time()
    lines = [
        "# Near copies: what finetune's look finds (edgetransfer.data.near_copies)",
        "",
        f"Thumbnails {data.THUMB}x{data.THUMB} grey; alike where Laplacians correlate at {data.NEAR_COPY} or more "
        f"and grey levels at {data.NEAR_COPY_LEVELS} or more; images from {data.NEAR_COPY_SIDE} px. "
        "`python benchmarks/near_copies.py ROOT`.",
        "",
        "## Copies found (share of photographs whose altered copy is found)",
        "",
        "| half | photos' shorter side | " + " | ".join(ALTERED) + " |",
        "|---|---|" + "---|" * len(ALTERED),
    ]
    for half, names in PHOTOS.items():
        for side in (None, 160, 80):
            shares = copies(names, side)
            lines.append(
                f"| {half} ({len(names)} photos) | {side or 'as shipped (300-640)'} | "
                + " | ".join(f"{v:.0%}" for v in shares.values())
                + " |"
            )
    lines += [
        "",
        "## Different images taken for copies (pairs within each set)",
        "",
        "| half | set | images | compared (from 32 px) | pairs found | highest correlation of edges |",
        "|---|---|---|---|---|---|",
    ]
    from edgetransfer.builtin_data import write_pattern_folder

    patterns = args.root / "patterns"
    if not patterns.is_dir():  # the tests' folder (make_folder): one stripe pattern a class under other noise
        write_pattern_folder(patterns, per_class=60, classes=3)
    files, compared, pairs, highest = false_pairs(patterns)
    lines.append(f"| choose | the tests' patterns (3 x 60, 40 px) | {files} | {compared} | {pairs} | {highest:.4f} |")
    for half, names in SETS.items():
        for name, folder in datasets.make_suite(args.root, seed=0, names=names).items():
            files, compared, pairs, highest = false_pairs(folder)
            lines.append(f"| {half} | {name} | {files} | {compared} | {pairs} | {highest:.4f} |")
    lines += ["", f"Wall time {time.time() - start:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

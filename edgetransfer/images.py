"""Images as the models see them, in numpy and Pillow alone (no torch): open any image file as 8-bit RGB the way
training did, and preprocess it exactly as the evaluation transform does. Shared by the device runtime and by
export and bench, so every accuracy the project reports is measured on what a device app feeds the model."""

from __future__ import annotations

import os
import stat
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgetransfer.card import Preprocessing
from edgetransfer.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".webp", ".avif", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pnm"}
)
# photos in formats Pillow does not read (HEIC needs a plugin; camera raw files need a raw developer): named as such
UNREADABLE_PHOTOS = frozenset({".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # Windows' own, as macOS's are dot-files


def not_an_image(path: Path) -> str:
    """Why a file that is not read as an image is not (for the messages that list such files)."""
    suffix = path.suffix.lower()
    if suffix in UNREADABLE_PHOTOS:
        return f"a {suffix} photo, a format this install cannot read: convert it to JPEG or PNG"
    kind = _signature(path)
    if kind is not None and kind[0] == "TIFF" and suffix:  # most camera raw formats are TIFF inside
        return f"a TIFF-based {suffix} file (a camera raw?), a format not read here: convert it to JPEG or PNG"
    if kind is not None:  # a camera's IMG_0001 without an extension, a .jpg saved as .dat
        return f"a {kind[0]} image without an image file extension: rename it to {kind[1]}"
    return "not an image file"


def unidentified(path: Path) -> str:
    """Why Pillow could not identify a file with an image's extension: a TIFF of a kind it does not decode (float
    colour channels, which scientific cameras and image tools write, were said to be "damaged"), else damaged."""
    kind = _signature(path)
    if kind is not None and kind[0] == "TIFF":
        return "a TIFF of a kind Pillow does not decode, such as floating-point colour: save it as 8- or 16-bit"
    return _content(path) or "damaged, or not the format its extension says"


HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})


def _content(path: Path) -> str | None:
    """What a file with an image's extension holds instead, where its first bytes tell (an iPhone's HEIC photo
    renamed .jpg, a web server's error page saved as .jpg, macOS's metadata beside a photo: each was "damaged, or
    not the format its extension says"; a new user's trial), else None."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "a HEIC/HEIF photo whatever its extension says, a format this install cannot read: convert it to JPEG"
    if text.startswith((b"<!doctype html", b"<html")) or (text.startswith(b"<") and b"<html" in text):
        return "a web page (HTML), not an image: a failed download?"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG drawing, a format not read here: convert it to PNG"
    if head.startswith(b"\x00\x05\x16\x07"):
        return "macOS metadata (an AppleDouble file, as the '._' files beside photos are), not an image"
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, not an image: unpack it"
    return None


_SIGNATURES = (  # the first bytes of the formats the data folders read, and the extension each takes
    (b"\xff\xd8\xff", ("JPEG", ".jpg")),
    (b"\x89PNG\r\n\x1a\n", ("PNG", ".png")),
    (b"GIF8", ("GIF", ".gif")),
    (b"II*\x00", ("TIFF", ".tif")),
    (b"MM\x00*", ("TIFF", ".tif")),
)


def _signature(path: Path) -> tuple[str, str] | None:
    """(format, extension) when the file's first bytes are those of an image format read here, else None."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device: reading it could wait forever
            return None
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ("WebP", ".webp")
    if head[:2] == b"BM" and head[6:10] == bytes(4):  # two letters alone begin many a text file
        return ("BMP", ".bmp")
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), None)


# folders systems make beside a user's files: a zip made on macOS unpacks __MACOSX/ (resource forks, ._x.jpg); a
# Synology NAS keeps each photo's thumbnails in @eaDir/ (they were read as a class, and a thumbnail of a validation
# image trained on: a new user's trial); Windows' recycle bin and volume folder, a Synology share's #recycle/
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "#recycle", "$RECYCLE.BIN", "System Volume Information"})


def ignored_folder(name: str) -> bool:
    """A hidden folder or a system's (:data:`SYSTEM_FOLDERS`): never a class, never read."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def ignored_file(name: str) -> bool:
    """A hidden or system file (.DS_Store, ._x.jpg, Thumbs.db, desktop.ini): never data, never listed."""
    return name.startswith(".") or name.lower() in SYSTEM_FILES


RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
ImageInput = str | Path | Image.Image | np.ndarray
MAX_IMAGE_BYTES = 256_000_000  # one image file; Pillow's own limit refuses more than ~179 million pixels
MAX_IMAGES = 1_000_000  # files one call may list (their paths are held in memory)
MAX_ASPECT = 50  # longer side / shorter side past which an image is a strip, not a picture (see too_thin)
_PIXEL_LIMIT_CHECK = threading.Lock()


def to_rgb(image: Image.Image) -> Image.Image:
    """An image as 8-bit RGB, as training saw it: EXIF orientation applied, grey/palette/CMYK converted by Pillow,
    alpha dropped. 16-bit images (``I;16``) are scaled to 8 bits (``/257``) instead of clipped; ``I``/``F`` images
    are read as 8-bit values when they fit 0..255, else as 16-bit; a float (``F``) image whose values all lie in
    0..1 is read as 0..1 (times 255)."""
    image.load()  # decoded outside the lock (a TIFF is turned upright by Pillow as it loads, its tag removed)
    with _PIXEL_LIMIT_CHECK, warnings.catch_warnings():
        # a camera's damaged EXIF tag printed Pillow's "Corrupt EXIF data" with its source line, once per image and
        # epoch (a new user's trial; the photo itself is fine): the warnings filters are the process's, so they are
        # changed under the lock, as for the pixel limit; exif_transpose removes the tag it applied
        warnings.simplefilter("ignore", UserWarning)
        upright = ImageOps.exif_transpose(image)
    return _convert_to_rgb(upright)


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{mode} image with values outside 0..65535 cannot be read as 8 or 16 bits")
        if mode == "F" and values.size and 0 < values.max() <= 1.0:  # a float image of 0..1 (it read as black)
            values = values * 255.0
        elif mode in SIXTEEN_BIT_MODES or (values.size and values.max() > 255):
            values = values / 257.0
        return Image.fromarray(np.rint(values).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in image.info:  # the same pixels; Pillow warns on the direct conversion
        # ("Palette images with Transparency expressed in bytes should be converted to RGBA images": its source
        # line on the user's terminal for each such PNG, a new user's trial)
        return image.convert("RGBA").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:  # e.g. "La", "RGBa": Pillow converts them to RGBA first
        try:
            return image.convert("RGBA").convert("RGB")
        except ValueError:
            raise DataError(f"images of mode {mode} cannot be converted to RGB") from None


def regular_file(path: Path, what: str = "image") -> int:
    """The size of ``path``, a regular file of at most :data:`MAX_IMAGE_BYTES`; else a :class:`DataError` (a FIFO,
    a device such as /dev/zero or a socket would block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO, device or socket, not a regular file"
        raise DataError(f"{what} {path} is {kind}")
    if info.st_size > MAX_IMAGE_BYTES:
        raise DataError(f"{what} {path} is {info.st_size:,} bytes (expected at most {MAX_IMAGE_BYTES:,})")
    return info.st_size


def open_image(path: str | Path, *, resize: int | None = None) -> Image.Image:
    """Read an image file as 8-bit RGB (see :func:`to_rgb`), or raise a :class:`DataError` naming it. With
    ``resize`` (the shorter side it will be resized to), a JPEG far larger than that is decoded at 1/2, 1/4 or 1/8
    scale while it stays at least twice ``resize`` (Pillow's draft mode: a 6000x4000 photo costs a few MB, not
    72 MB), as training decodes it. Up to Pillow's hard pixel limit (twice ``Image.MAX_IMAGE_PIXELS``: 179
    million pixels, a 100-megapixel camera's photos) an image is read without Pillow's warning; past it, a
    :class:`DataError`."""
    path = Path(path)
    if not regular_file(path):
        raise DataError(f"cannot read image {path}: empty file")
    try:
        with open_header(path) as img:
            thin = too_thin(*img.size)
            if thin:
                raise DataError(f"image {path}: {thin}")
            if resize and img.format == "JPEG":
                img.draft("RGB", (2 * resize, 2 * resize))
            rgb = to_rgb(img)
            rgb.load()
            return rgb
    except DataError as exc:
        if str(exc).startswith(f"image {path}: "):  # a strip: said as what it is, not as unreadable
            raise
        raise DataError(f"cannot read image {path}: {exc}") from None
    except Image.UnidentifiedImageError:
        # a text file named on predict's command line: as a folder's listing says it (Pillow's "cannot identify
        # image file" for a file no one took for an image); a damaged file with an image's extension: unreadable
        why = not_an_image(path) if path.suffix.lower() not in IMAGE_SUFFIXES else f"unreadable ({unidentified(path)})"
        raise DataError(f"cannot read image {path}: {why}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a broken file
        raise DataError(f"cannot read image {path}: {first_line(exc)}") from None


def open_header(path: Path) -> Image.Image:
    """``Image.open`` (the header read, not the pixels) without Pillow's warning for an image between its soft and
    its hard pixel limit (89 and 179 million pixels: a 100-megapixel camera's photo is an image, not a bomb; past the
    hard limit Pillow raises, one line), or of a damaged EXIF tag (see :func:`to_rgb`). The warnings filters
    are the process's: they are changed under a lock, and only while Pillow reads the header, so an app classifying
    in several threads neither sees the warning nor keeps the filter; decoding runs unlocked."""
    with _PIXEL_LIMIT_CHECK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # a damaged EXIF tag (its DPI is read here): see to_rgb
        return Image.open(path)


def _as_rgb(image: ImageInput, resize: int | None = None) -> Image.Image:
    if isinstance(image, (str, Path)):
        return open_image(image, resize=resize)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
            raise DataError(
                f"an image array must be HxW or HxWxC of uint8 (or uint16 grey), not {image.dtype} {image.shape}"
            )
        if image.ndim == 3 and (image.dtype != np.uint8 or image.shape[2] not in (3, 4)):
            raise DataError(f"an HxWxC image array must be uint8 RGB or RGBA, not {image.dtype} {image.shape}")
        if not image.size:
            raise DataError(f"an image array must not be empty, got shape {image.shape}")
        return _convert_to_rgb(Image.fromarray(np.ascontiguousarray(image)))  # a frame has no EXIF
    raise DataError(f"cannot classify a {type(image).__name__}: pass a path, a PIL image or a numpy array")


def too_thin(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is not classified, or None. Its shorter side is resized to the model's
    size and the longer follows: a 1x40000 spacer or banner (a few hundred bytes) became 96 x 3.8 million pixels,
    1.1 GB, before the centre crop (a reviewer's trial: a MemoryError on a small device)."""
    if max(width, height) > MAX_ASPECT * max(min(width, height), 1):
        return f"{width}x{height} px is a strip (sides over {MAX_ASPECT}:1), not a picture to classify"
    return None


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``shorter`` and the aspect ratio kept, truncated as torchvision does."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """The centre ``crop`` x ``crop`` of an HxWxC array, zero-padded first where it is smaller (torchvision's
    ``CenterCrop``, including its round-half-to-even offsets)."""
    height, width = pixels.shape[:2]
    if crop > height or crop > width:
        pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        height, width = pixels.shape[:2]
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    return pixels[top : top + crop, left : left + crop]


def resize_and_crop(rgb: Image.Image, pre: Preprocessing) -> np.ndarray:
    """An RGB image as the (crop, crop, 3) uint8 array the evaluation transform scales: shorter side to
    ``pre.resize`` with antialiasing, then the centre ``pre.crop``. A strip (see :func:`too_thin`): a
    :class:`DataError`."""
    thin = too_thin(*rgb.size)
    if thin:
        raise DataError(f"an image of {thin}")
    width, height = resized_size(*rgb.size, pre.resize)
    # One pass per axis, horizontal first, as torchvision does (recent Pillow, 13 here, goes vertical first for tall
    # images, which rounds differently): at most one uint8 level from torchvision, the same on any Pillow.
    if width != rgb.width:
        rgb = rgb.resize((width, rgb.height), RESAMPLING[pre.interpolation], reducing_gap=None)
    if height != rgb.height:
        rgb = rgb.resize((width, height), RESAMPLING[pre.interpolation], reducing_gap=None)
    return np.ascontiguousarray(center_crop(np.asarray(rgb), pre.crop))


def preprocess_image(image: ImageInput, pre: Preprocessing) -> np.ndarray:
    """One image as the model's (3, crop, crop) float32 input: the evaluation transform of ``data.eval_transform``
    (shorter side resized with antialiasing, centre crop, scale, mean/std) with Pillow instead of torchvision."""
    pixels = resize_and_crop(_as_rgb(image, pre.resize), pre).astype(np.float32) * np.float32(pre.scale)
    pixels = (pixels - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess(images: Sequence[ImageInput], pre: Preprocessing) -> np.ndarray:
    """A batch of images as one (N, 3, crop, crop) float32 array."""
    return np.stack([preprocess_image(image, pre) for image in images])


def find_images(
    paths: Iterable[str | Path], *, limit: int = MAX_IMAGES, passed_over: list[tuple[Path, str]] | None = None
) -> list[Path]:
    """Image files named or found below the folders named (recursively, hidden and system files skipped, anything
    but a regular file skipped), in order; more than ``limit`` is a :class:`DataError` (the list is held in memory).
    ``passed_over``: a list that receives (path, why) for each other visible file and symlinked folder below the
    folders named, for the caller to say."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            below = []
            for p in path.rglob("*"):
                parts = p.relative_to(path).parts  # (hidden or system folders: a NAS's @eaDir thumbnails too)
                if ignored_file(parts[-1]) or any(ignored_folder(part) for part in parts[:-1]):
                    continue
                if passed_over is not None and p.is_symlink() and not p.exists():  # said (it went in no list)
                    passed_over.append((p, "broken symlink (its target is gone)"))
                    continue
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    if passed_over is not None and p.is_symlink() and p.is_dir():
                        passed_over.append((p, "symlinked folder, not followed: name it to classify its images"))
                    elif passed_over is not None and p.is_file():
                        passed_over.append((p, not_an_image(p)))
                    continue
                if p.is_file():  # follows a link; a FIFO or device named *.png is no image
                    below.append(p)
                    if len(found) + len(below) > limit:
                        raise DataError(f"more than {limit:,} images below {path}; name fewer at a time")
                elif passed_over is not None and not p.is_dir():
                    passed_over.append((p, "a FIFO, device or socket, not a regular file"))
            if not below:
                raise DataError(f"no images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            found += sorted(below)
        else:
            regular_file(path, "image or folder")
            found.append(path)
            if len(found) > limit:
                raise DataError(f"more than {limit:,} images named; name fewer at a time")
    return found


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]

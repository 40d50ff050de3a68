"""A device app in one file, with ONNX Runtime (or OpenVINO), numpy and Pillow alone: no edgetransfer, no torch.
Copy it into your app: everything it needs (labels, resize, crop, mean, std, input shape) it reads from the model
file, and it feeds the model exactly what training fed it (the same tensor as ``edgetransfer predict``, tested).

    python standalone_app.py MODEL IMAGE|DIR [...] [--top-k 3]

MODEL is an exported ``model.onnx`` / ``model.int8.onnx`` (ONNX Runtime) or an OpenVINO IR ``openvino/*.xml``
(``pip install openvino``). Prints ``path  label score`` per image; a file it cannot read is named on stderr and
passed over (exit 1 when none could be classified).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jfif",
    ".jpe",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".avif",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pnm",
}
SYSTEM_FOLDERS = {"__MACOSX", "@eaDir", "#recycle", "$RECYCLE.BIN", "System Volume Information"}  # not images
MAX_ASPECT = 50  # a longer side past 50x the shorter is a strip (a 1x40000 spacer would be resized to 1 GB)
DEFAULTS = {"interpolation": "bilinear", "scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def load_model(path: str):
    """(card, run): the model card embedded in the file, and a function from an (N, 3, crop, crop) float32 array to
    the (N, classes) logits."""
    if os.path.isdir(path):  # a run folder: its model
        path = os.path.join(path, "model.onnx")
    if not os.path.isfile(path):
        raise SystemExit(f"no model file {path}")
    if path.endswith(".xml"):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(path)
        keys = [["edgetransfer", "card"], ["framework", "edgetransfer.card"]]  # an IR; one converted by OpenVINO itself
        key = next((k for k in keys if model.has_rt_info(k)), None)
        if key is None:
            raise SystemExit(f"{path} carries no edgetransfer card (rt_info edgetransfer/card): not an exported model")
        card = model.get_rt_info(key).astype(str)
        # f32: on CPUs with AVX-512 BF16 or AMX, OpenVINO would otherwise run an fp32 model in bf16
        request = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
        return json.loads(card), lambda x: np.asarray(request.infer({0: x})[0])
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a file ONNX Runtime cannot load: said in one line
        raise SystemExit(f"{path} is not a model ONNX Runtime can load: {str(exc).splitlines()[0]}") from None
    card = session.get_modelmeta().custom_metadata_map.get("edgetransfer.card")
    if card is None:
        raise SystemExit(f"{path} carries no edgetransfer card (metadata edgetransfer.card): not an exported model")
    name = session.get_inputs()[0].name
    return json.loads(card), lambda x: session.run(None, {name: x})[0]


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as training saw it: EXIF orientation applied; 16-bit grey divided by 257 (rounded, not clipped);
    32-bit integer or float grey as 8-bit values when they fit 0..255 (a float image of 0..1: times 255), else as
    16-bit; everything else (grey, palette, CMYK, alpha dropped) by Pillow's convert."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{image.mode} image with values outside 0..65535 cannot be read as 8 or 16 bits")
        if image.mode == "F" and values.size and 0 < values.max() <= 1.0:
            values = values * 255.0
        elif image.mode in SIXTEEN_BIT or (values.size and values.max() > 255):
            values = values / 257.0
        return Image.fromarray(np.rint(values).astype(np.uint8)).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:  # a mode Pillow converts to RGB only through RGBA
        return image.convert("RGBA").convert("RGB")


def open_image(path: str | Path, resize: int) -> Image.Image:
    """Read a file; a large JPEG is decoded at reduced scale (1/2, 1/4, 1/8) while both sides stay >= 2 x resize.
    Pillow's warnings are not the user's business here: a 100-megapixel photo (past its soft limit; its hard limit,
    twice that, still raises), a camera's damaged EXIF tag, a palette PNG's transparency."""
    with warnings.catch_warnings():  # (this app reads one image at a time; the filters are the process's)
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            if max(image.size) > MAX_ASPECT * max(min(image.size), 1):
                raise ValueError(f"{image.width}x{image.height} px is a strip (sides over {MAX_ASPECT}:1)")
            if image.format == "JPEG":
                image.draft("RGB", (2 * resize, 2 * resize))
            rgb = to_rgb(image)
            rgb.load()
            return rgb


def preprocess(image: Image.Image, pre: dict) -> np.ndarray:
    """An RGB image as the model's (3, crop, crop) float32 input: shorter side to ``resize`` (aspect kept, the
    longer side truncated), one antialiased pass per axis, horizontal first (as torchvision does), the centre
    ``crop`` (zero-padded first where smaller; offsets rounded half to even), times ``scale``, minus ``mean``,
    over ``std``, channels first."""
    pre = {**DEFAULTS, **pre}
    resize, crop, resample = pre["resize"], pre["crop"], RESAMPLING[pre["interpolation"]]
    w, h = image.size
    width, height = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    if width != w:
        image = image.resize((width, h), resample, reducing_gap=None)
    if height != h:
        image = image.resize((width, height), resample, reducing_gap=None)
    pixels = np.asarray(image)
    pad_h, pad_w = max(crop - pixels.shape[0], 0), max(crop - pixels.shape[1], 0)
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
    top, left = round((pixels.shape[0] - crop) / 2), round((pixels.shape[1] - crop) / 2)
    pixels = pixels[top : top + crop, left : left + crop].astype(np.float32) * np.float32(pre["scale"])
    pixels = (pixels - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _hidden(relative: Path) -> bool:
    """A dot-file or one in a dot-folder, or in a system folder (macOS's __MACOSX, a Synology NAS's @eaDir)."""
    return any(part[0] == "." or part in SYSTEM_FOLDERS for part in relative.parts)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.onnx, model.int8.onnx or an OpenVINO .xml")
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per image (at least 1)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, not {args.top_k}")
    card, run = load_model(args.model)
    pre, labels = card["preprocessing"], card["labels"]
    if pre.get("color", "RGB") != "RGB" or pre.get("layout", "NCHW") != "NCHW":
        raise SystemExit(f"this app feeds RGB NCHW; the model wants {pre.get('color')} {pre.get('layout')}")
    files = []
    for item in map(Path, args.images):
        if item.is_dir():  # image files below it; hidden ones (macOS's ._x.jpg) and a NAS's thumbnails are not
            found = (p for p in item.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            files += sorted(p for p in found if not _hidden(p.relative_to(item)))
        else:
            files.append(item)
    classified = 0
    for path in files:
        try:
            image = open_image(path, pre["resize"])
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # unreadable, truncated, not an image,
            # past Pillow's pixel limit, a strip: said, and the rest go on
            print(f"{path}: skipped: {exc}", file=sys.stderr)
            continue
        probabilities = softmax(run(preprocess(image, pre)[None])[0].astype(np.float64))
        best = np.argsort(-probabilities, kind="stable")[: args.top_k]
        print(f"{path}  " + "  ".join(f"{labels[i]} {probabilities[i]:.4f}" for i in best))
        classified += 1
    if not classified:
        print("no image classified", file=sys.stderr)
    return 0 if classified else 1


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as a Unix tool does, not with a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush would fail again
        code = 1
    sys.exit(code)

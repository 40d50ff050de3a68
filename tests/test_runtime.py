"""edgetransfer.runtime and `edgetransfer predict`: torch-free inference from the model file alone."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from edgetransfer import runtime
from edgetransfer.card import Preprocessing
from edgetransfer.cli.predict import predict
from edgetransfer.errors import DataError, UsageError

# One uint8 level after normalisation by the smallest std: Pillow's and torchvision's antialiased resizes round a
# few pixels differently (Pillow: 22-bit fixed point; torchvision: int16 weights), never by more than this on
# these images (measured: max 0.01751 = 1.00 level, 0-3% of values differing, mean |diff| <= 6e-4).
ONE_LEVEL = 1 / (255 * 0.224)
PARITY_SETTINGS = [(32, 32), (96, 96), (224, 224), (256, 224), (28, 32)]  # (resize, crop); 28/32 pads


@pytest.fixture(scope="module")
def parity_images() -> list[Image.Image]:
    """Real handwritten digits (8x8 grey) and generated RGB images of odd sizes, noisy and smooth."""
    from sklearn.datasets import load_digits

    digits = load_digits().images
    images = [Image.fromarray((digits[i] * 255 / 16).astype(np.uint8)) for i in range(0, len(digits), 120)]
    rng = np.random.default_rng(0)
    for h, w in [(40, 40), (37, 53), (300, 200), (97, 131), (17, 400), (400, 17), (300, 90), (16, 16), (480, 640)]:
        images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    yy, xx = np.mgrid[0:240, 0:320]
    smooth = np.stack([128 + 127 * np.sin(xx / 7.0), 128 + 127 * np.cos(yy / 5.0), (xx + yy) % 256], -1)
    images.append(Image.fromarray(smooth.astype(np.uint8)))
    return images


@pytest.mark.parametrize(("resize", "crop"), PARITY_SETTINGS)
def test_preprocessing_matches_the_torchvision_eval_transform(parity_images, resize, crop):
    from edgetransfer.data import eval_transform

    pre = Preprocessing(resize=resize, crop=crop)
    transform = eval_transform(pre)
    diffs = []
    for image in parity_images:
        expected = transform(image.convert("RGB")).numpy()
        got = runtime.preprocess_image(image, pre)
        assert got.shape == expected.shape == (3, crop, crop) and got.dtype == np.float32
        diffs.append(np.abs(got - expected).ravel())
    diff = np.concatenate(diffs)
    assert diff.max() <= ONE_LEVEL + 1e-5, f"max |diff| {diff.max():.5f}"
    assert diff.mean() <= 1e-3
    assert (diff > 1e-5).mean() <= 0.05


def test_files_are_read_as_training_reads_them(tmp_path, parity_images):
    """From files: EXIF orientation, grey, palette, alpha, CMYK, the same tensor as open_rgb + eval_transform."""
    from edgetransfer.data import eval_transform, open_rgb

    base = parity_images[-1]
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    base.save(rotated, exif=exif)
    files = [rotated]
    for mode, suffix in [("L", ".png"), ("P", ".png"), ("RGBA", ".png"), ("LA", ".png"), ("CMYK", ".jpg")]:
        files.append(tmp_path / f"{mode}{suffix}")
        base.convert(mode).save(files[-1])
    pre = Preprocessing(resize=40, crop=32)
    transform = eval_transform(pre)
    for path in files:
        expected = transform(open_rgb(path, pre.resize)).numpy()
        assert np.abs(runtime.preprocess_image(path, pre) - expected).max() <= ONE_LEVEL + 1e-5, path.name
    assert runtime.open_image(rotated).size == (240, 320)  # portrait after the EXIF rotation


def test_a_damaged_exif_tag_and_a_transparent_palette_are_read_without_pillows_warnings(tmp_path):
    """A camera's damaged EXIF tag and a palette PNG with transparency printed Pillow's warnings, with its source
    lines, once per image and epoch (a new user's trial): read without them, the same pixels, orientation kept."""
    import warnings

    base = Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "Cam", 6  # the camera's make; orientation: rotate to view
    damaged = bytearray(exif.tobytes())
    damaged[14:16] = b"\xff\xff"  # the tag directory claims 65535 entries
    base.save(tmp_path / "damaged.jpg", exif=bytes(damaged))
    base.save(tmp_path / "upright.jpg", exif=exif)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = bytes([0] + [255] * 15)
    palette.save(tmp_path / "palette.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails
        images = {name: runtime.open_image(tmp_path / name) for name in ("damaged.jpg", "upright.jpg", "palette.png")}
        from edgetransfer.data import Sample, median_shorter_side, narrow_note  # fine-tuning's looks at the headers

        samples = (Sample(tmp_path / "damaged.jpg", 0),)
        assert median_shorter_side(samples) == 30 and narrow_note(samples) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Image.open(tmp_path / "palette.png").info.get("transparency") is not None
        pillow = np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"))
    assert np.array_equal(np.asarray(images["palette.png"]), pillow)  # the pixels Pillow's conversion gives
    assert images["upright.jpg"].size == (30, 40)  # rotated by its orientation
    assert images["damaged.jpg"].size == (30, 40)  # its orientation read all the same
    # an image turned upright is not turned again (its tag is gone), and a TIFF, which Pillow turns upright as it
    # loads, is turned once (the review of a first version: twice, and again in to_rgb)
    assert runtime.to_rgb(images["upright.jpg"]).size == (30, 40)
    from PIL import ImageOps, TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112] = 6
    base.save(tmp_path / "turned.tif", tiffinfo=tags)
    with Image.open(tmp_path / "turned.tif") as tif:
        expected = np.asarray(ImageOps.exif_transpose(tif).convert("RGB"))
    assert expected.shape[:2] == (40, 30) and np.array_equal(
        np.asarray(runtime.open_image(tmp_path / "turned.tif")), expected
    )


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    rgb = runtime.open_image(tmp_path / "deep.png")
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.asarray(runtime.to_rgb(Image.fromarray(np.array([[0, 200]], np.int32))))[0, :, 0].tolist() == [0, 200]
    # a float image of 0..1 (a new user's TIFF of a digit read as nearly black): times 255; of 0..255: as is
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(runtime.to_rgb(unit))[0, :, 0].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[0.0, 0.5, 200.0]], np.float32))
    assert np.asarray(runtime.to_rgb(wide))[0, :, 0].tolist() == [0, 0, 200]


def test_arrays_and_pil_images_are_accepted():
    pre = Preprocessing(resize=32, crop=32)
    pixels = np.random.default_rng(1).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    from_array = runtime.preprocess_image(pixels, pre)
    assert np.array_equal(from_array, runtime.preprocess_image(Image.fromarray(pixels), pre))
    with_alpha = np.concatenate([pixels, np.zeros((48, 40, 1), np.uint8)], axis=2)
    assert np.array_equal(from_array, runtime.preprocess_image(with_alpha, pre))
    with pytest.raises(DataError, match="float32"):
        runtime.preprocess_image(pixels.astype(np.float32), pre)
    with pytest.raises(DataError, match=r"must not be empty, got shape \(0, 0, 3\)"):
        runtime.preprocess_image(np.zeros((0, 0, 3), np.uint8), pre)


def test_a_large_jpeg_is_decoded_as_training_decodes_it(tmp_path, monkeypatch):
    """A JPEG far larger than the model's input is decoded at reduced scale by the runtime too (Pillow's draft
    mode), so predict, export and bench see the pixels training and its evaluation saw; past Pillow's pixel limit
    the runtime refuses the file in one line (training's scan calls it bad), with no Python warning."""

    from edgetransfer.decoded import decode
    from edgetransfer.images import resize_and_crop

    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((1600, 1200)).save(big, quality=90)
    pre = Preprocessing(resize=64, crop=64)
    from_runtime = runtime.preprocess_image(big, pre)
    training = decode(big, pre).astype(np.float32) * np.float32(pre.scale)
    training = (training - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    assert np.array_equal(from_runtime, training.transpose(2, 0, 1))
    with Image.open(big) as full:  # without draft mode the pixels differ: the check above can fail
        full_pixels = resize_and_crop(runtime.to_rgb(full), pre)
    assert not np.array_equal(full_pixels, decode(big, pre))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail here instead of the one-line error below
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600 * 1200 - 1)  # past the soft limit: read, no warning
        assert np.array_equal(runtime.preprocess_image(big, pre), from_runtime)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600 * 1200 // 2 - 1)  # past the hard limit: refused
        with pytest.raises(DataError, match="cannot read image .*big.jpg: Image size .* exceeds limit") as info:
            runtime.preprocess_image(big, pre)
    assert "\n" not in str(info.value)


def test_unreadable_and_missing_images_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png") as info:
        runtime.open_image(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="not found"):
        runtime.open_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="cannot read image .*empty.png: empty file"):  # was "cannot identify"
        runtime.open_image(tmp_path / "empty.png")
    (tmp_path / "empty.png").unlink()
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read image .*notes.txt: not an image file$"):  # as a folder says
        runtime.open_image(tmp_path / "notes.txt")  # (was Pillow's "cannot identify image file '...'")
    (tmp_path / "garbage.jpg").write_bytes(b"neither JPEG nor anything")
    with pytest.raises(DataError, match=r"garbage.jpg: unreadable \(damaged, or not the format its extension says\)$"):
        runtime.open_image(tmp_path / "garbage.jpg")
    (tmp_path / "garbage.jpg").unlink()
    # what a file named .jpg holds instead, where its first bytes tell (each was "damaged, or not the format ...")
    for content, said in (
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "a HEIC/HEIF photo whatever its extension says"),
        (b"\n<!DOCTYPE html><html><body>404 Not Found</body></html>", "a web page (HTML), not an image: a failed"),
        (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ", "macOS metadata (an AppleDouble file"),
        (b"%PDF-1.7\n", "a PDF document, not an image"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing, a format not read"),
        (b"PK\x03\x04\x14\x00", "a zip archive, not an image: unpack it"),
    ):
        (tmp_path / "photo.jpg").write_bytes(content)
        with pytest.raises(DataError, match=r"photo.jpg: unreadable \(" + re.escape(said)):
            runtime.open_image(tmp_path / "photo.jpg")
    (tmp_path / "photo.jpg").unlink()
    tifffile = pytest.importorskip("tifffile")  # scikit-image's (dev): a float RGB TIFF, which Pillow cannot decode
    tifffile.imwrite(tmp_path / "float.tif", np.full((8, 8, 3), 0.5, np.float32))
    with pytest.raises(DataError, match=r"float.tif: unreadable \(a TIFF of a kind Pillow does not decode, such as fl"):
        runtime.open_image(tmp_path / "float.tif")  # (was "damaged, or not the format its extension says")
    (tmp_path / "float.tif").unlink()
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert runtime.find_images([tmp_path]) == [broken]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        runtime.find_images([tmp_path / "empty"])


def test_softmax_and_top_classes():
    scores = runtime.softmax(np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], np.float32))
    assert np.allclose(scores.sum(axis=1), 1.0)
    best = runtime.top_classes(scores, ("a", "b", "c"), 2)
    assert [[p.label for p in row] for row in best] == [["b", "c"], ["c", "a"]]
    assert best[0][0].index == 1 and best[0][0].score == pytest.approx(float(scores[0, 1]))
    assert len(runtime.top_classes(scores, ("a", "b", "c"), 10)[0]) == 3


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def samples(trained_run) -> list[Path]:
    """A few of the run's own images, every class."""
    folder = Path(trained_run.load_card().dataset["path"])
    return sorted(folder.rglob("*.png"))[::4]


@pytest.fixture(scope="module")
def plain_onnx(trained_run, tmp_path_factory) -> Path:
    """The run's model.onnx without its card, as a model from elsewhere would be."""
    model = onnx.load(str(trained_run.file("model.onnx")))
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    onnx.save(model, str(path))
    return path


def test_classifier_reads_the_card_and_matches_the_training_pipeline(trained_run, samples):
    """Scores from the runtime equal ONNX Runtime's on the torchvision-preprocessed batch (to what one uint8 level
    on ~1% of the input values moves them: measured up to 0.0025 with this small model)."""
    import onnxruntime as ort

    from edgetransfer.data import Sample, batches

    card = trained_run.load_card()
    classifier = runtime.Classifier(trained_run.file("model.onnx"))
    assert classifier.labels == card.labels and classifier.preprocessing == card.preprocessing
    assert classifier.card is not None and classifier.card.backbone == card.backbone
    (batch, _), *_ = batches(tuple(Sample(p, 0) for p in samples), card.preprocessing, batch_size=len(samples))
    session = ort.InferenceSession(str(trained_run.file("model.onnx")), providers=["CPUExecutionProvider"])
    expected = runtime.softmax(session.run(None, {"input": batch})[0])
    assert np.abs(classifier.scores(samples) - expected).max() < 5e-3
    best = classifier.predict(samples, top_k=2)
    assert all(len(row) == 2 and row[0].score >= row[1].score for row in best)
    assert [row[0].index for row in best] == expected.argmax(axis=1).tolist()


def test_one_image_gives_one_result_and_a_list_a_list(trained_run, samples):
    """Issue 20: predict("x.jpg") iterated the string's characters; a PIL image was a TypeError."""
    classifier = runtime.Classifier(trained_run.file("model.onnx"))
    listed = classifier.predict(samples[:2], top_k=2)
    pixels = np.asarray(Image.open(samples[0]).convert("RGB"))
    for one in (str(samples[0]), samples[0], Image.open(samples[0]), pixels):
        found = classifier.predict(one, top_k=2)
        assert [type(p) for p in found] == [runtime.Prediction] * 2, type(one)
        assert [p.index for p in found] == [p.index for p in listed[0]], type(one)
        assert classifier.scores(one).shape == (len(classifier.labels),)
    mixed = classifier.predict([str(samples[0]), Image.open(samples[1]), pixels], top_k=1)
    assert len(mixed) == 3 and all(len(row) == 1 for row in mixed)
    assert classifier.predict((samples[0],), top_k=1)[0][0].index == listed[0][0].index
    assert classifier.predict([]) == [] and classifier.scores(samples[:2]).shape == (2, len(classifier.labels))
    with pytest.raises(DataError, match="cannot classify a dict: pass a path, a PIL image, an HxWx3 uint8 array"):
        classifier.predict({"image": pixels})
    with pytest.raises(DataError, match="cannot classify a int"):
        classifier.predict([3])


def test_backends_and_variants_agree(trained_run, samples):
    reference = runtime.Classifier(trained_run.path).scores(samples)  # a run directory: its model.onnx
    for model, kwargs in [
        (trained_run.file("openvino/model.xml"), {"precision": "fp32"}),
        (trained_run.file("model.onnx"), {"backend": "openvino", "precision": "fp32"}),  # card from ONNX metadata
        (trained_run.path, {"backend": "openvino", "precision": "fp32"}),
    ]:
        classifier = runtime.Classifier(model, **kwargs)
        assert classifier.backend == "openvino" and classifier.labels == trained_run.load_card().labels
        assert np.abs(classifier.scores(samples) - reference).max() < 1e-4, model
    int8 = runtime.Classifier(trained_run.file("model.int8.onnx"), threads=1)
    assert np.abs(int8.scores(samples) - reference).max() < 0.1


def test_an_openvino_classifier_can_be_shared_by_threads(trained_run, samples):
    """A reviewer's finding: one infer request served every thread ('Infer Request is busy', and another thread's
    scores returned); onnxruntime's session is shared safely, and so is this now."""
    from concurrent.futures import ThreadPoolExecutor

    classifier = runtime.Classifier(trained_run.file("openvino/model.xml"), precision="fp32")
    expected = [classifier.scores(image) for image in samples]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: classifier.scores(samples[i % len(samples)]), range(200)))
    assert all(np.abs(g - expected[i % len(samples)]).max() < 1e-5 for i, g in enumerate(got))


def test_a_fixed_batch_size_is_fed_in_chunks(trained_run, samples):
    classifier = runtime.Classifier(trained_run.file("model.onnx"))
    expected = classifier.scores(samples[:3])
    classifier._model.input_shape[0] = 2  # as a model exported with batch 2 would say
    assert np.allclose(classifier.scores(samples[:3]), expected, atol=1e-6)


def test_a_model_without_a_card_needs_its_preprocessing(plain_onnx, trained_run, samples):
    with pytest.raises(UsageError, match="no edgetransfer model card.*pass mean, std \\(--mean, --std"):
        runtime.Classifier(plain_onnx)  # its input is 32x32, so the size is known
    with pytest.raises(UsageError, match=r"shape \(\?, 32, 32, 3\); only \(N, 3, H, W\)"):
        runtime._resolve_preprocessing(None, [None, 32, 32, 3], plain_onnx, mean=None, std=None, size=None, resize=None)
    with pytest.raises(UsageError, match="pass mean, std, size"):
        runtime._resolve_preprocessing(
            None, [None, 3, None, None], plain_onnx, mean=None, std=None, size=None, resize=None
        )
    with pytest.raises(UsageError, match="takes 32x32 images but the preprocessing crops 64x64"):
        runtime.Classifier(plain_onnx, mean=(0.5,) * 3, std=(0.5,) * 3, size=64)
    card = trained_run.load_card()
    pre = card.preprocessing
    plain = runtime.Classifier(plain_onnx, mean=pre.mean, std=pre.std, size=pre.crop)
    assert plain.card is None and plain.preprocessing == pre
    assert np.allclose(plain.scores(samples), runtime.Classifier(trained_run.file("model.onnx")).scores(samples))
    assert plain.predict(samples[:1])[0][0].label in {"0", "1", "2"}  # labels default to class indices
    named = runtime.Classifier(plain_onnx, mean=pre.mean, std=pre.std, size=pre.crop, labels=card.labels)
    assert named.predict(samples[:1])[0][0].label in card.labels
    with pytest.raises(UsageError, match="3 outputs but 2 labels"):
        runtime.Classifier(plain_onnx, mean=pre.mean, std=pre.std, size=32, labels=["a", "b"]).predict(samples[:1])
    with pytest.raises(UsageError, match=r"mean \(--mean\) is \[0.5\] \(expected 3 finite numbers"):
        runtime.Classifier(plain_onnx, mean=[0.5], std=pre.std, size=32)
    with pytest.raises(UsageError, match="std .* is .0.2, 0.0, 0.2. .expected 3 finite numbers above 0"):
        runtime.Classifier(plain_onnx, mean=pre.mean, std=[0.2, 0.0, 0.2], size=32)


def test_bad_model_files_are_one_line_errors(tmp_path, trained_run):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    for backend in ("ort", "openvino"):
        with pytest.raises(UsageError, match="corrupt.onnx (is not a readable ONNX model|with onnxruntime)") as info:
            runtime.Classifier(corrupt, backend=backend)
        assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="model file not found"):
        runtime.Classifier(tmp_path / "missing.onnx")
    images = tmp_path / "images"  # `predict DATA IMAGE`: an image folder where the model goes (a new user's)
    images.mkdir()
    with pytest.raises(UsageError, match=r"images is not a run folder \(no card.json, no model.onnx\): give a run"):
        runtime.Classifier(images)
    unexported = tmp_path / "unexported"  # a run directory whose model was never exported
    unexported.mkdir()
    (unexported / "card.json").write_text('{"complete": {}}')  # stopped before its training finished
    with pytest.raises(UsageError, match=f"training of {unexported} did not finish: .*finetune --resume --out"):
        runtime.Classifier(unexported)  # (it pointed to export, which refuses such a run)
    (unexported / "card.json").write_text("{}")  # no record either way: not said to be unfinished
    with pytest.raises(UsageError, match=f"; export the run first: edgetransfer export {unexported}$"):
        runtime.Classifier(unexported)
    (unexported / "card.json").write_text('{"complete": {"finetune": true}}')
    with pytest.raises(UsageError, match=f"; export the run first: edgetransfer export {unexported}$"):
        runtime.Classifier(unexported)
    (unexported / "model.onnx").write_bytes(b"")  # exported with --no-openvino
    with pytest.raises(UsageError, match="the run has no OpenVINO IR: use the ort backend"):
        runtime.Classifier(unexported, backend="openvino")
    with pytest.raises(UsageError, match="backend 'ort' reads .onnx files"):
        runtime.Classifier(trained_run.file("openvino/model.xml"), backend="ort")
    for backend in ("ort", "openvino"):  # the card or an IR's weights passed for the model
        with pytest.raises(UsageError, match="card.json is not a model file: pass a .onnx file, an OpenVINO IR"):
            runtime.Classifier(trained_run.file("card.json"), backend=backend)
        with pytest.raises(UsageError, match="model.bin holds an IR's weights: pass .*openvino/model.xml"):
            runtime.Classifier(trained_run.file("openvino/model.bin"), backend=backend)
    with pytest.raises(UsageError, match="unknown backend 'tflite'; known: ort, openvino"):
        runtime.Classifier(trained_run.file("model.onnx"), backend="tflite")


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The predict command on its own app (as edgetransfer.cli registers it), plus a second command so that
    Typer keeps the command name."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(predict)
    app.command("noop")(lambda: None)
    return app


def test_predict_prints_one_line_per_image(cli, trained_run, samples):
    folder = samples[0].parent
    result = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), str(folder), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(list(folder.glob("*.png")))
    path, first, second = lines[0].split("  ")
    assert Path(path).parent == folder and first.split()[0] in trained_run.load_card().labels
    assert float(first.split()[1]) >= float(second.split()[1])
    assert "note:" not in result.stderr  # a model file named: nothing to say
    # a run folder: its fp32 model.onnx is used; the int8 one (what a search measured) is named beside it
    run = CliRunner().invoke(cli, ["predict", str(trained_run.path), str(samples[0]), "--top-k", "2"])
    assert run.exit_code == 0 and run.stdout.splitlines()[0].split("  ")[1:] == [first, second], run.output
    assert run.stderr.strip() == (
        f"note: classifying with {trained_run.file('model.onnx')} (fp32); the int8 model is "
        f"{trained_run.file('model.int8.onnx')}"
    )


def test_predict_writes_a_name_with_a_newline_on_one_line(cli, trained_run, samples, tmp_path):
    """A file named "a\\nb.png" split predict's line in two: its scores read as another image's (a known item)."""
    odd = tmp_path / "a\nb\tc.png"
    odd.write_bytes(samples[0].read_bytes())
    done = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), str(odd), str(samples[1])])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path}/a\\nb\\tc.png  "), lines
    assert lines[1].startswith(f"{samples[1]}  ")


def test_predict_skip_bad_classifies_the_readable_images(cli, trained_run, samples, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for sample in samples[:3]:
        (folder / sample.name).write_bytes(sample.read_bytes())
    (folder / "broken.png").write_bytes(samples[0].read_bytes()[:60])  # a truncated PNG
    model = str(trained_run.file("model.onnx"))
    stopped = CliRunner().invoke(cli, ["predict", model, str(folder)])
    assert stopped.exit_code == 2 and "broken.png" in stopped.stderr, stopped.output
    assert "(--skip-bad classifies the other images)" in stopped.stderr and stopped.stderr.count("\n") == 1
    alone = CliRunner().invoke(cli, ["predict", model, str(folder / "broken.png")])  # no other image to classify
    assert alone.exit_code == 2 and "broken.png" in alone.stderr and "--skip-bad" not in alone.stderr, alone.output
    for json_ in ([], ["--json"]):  # --skip-bad that classified nothing exited 0 (a new user's finding)
        none = CliRunner().invoke(cli, ["predict", model, str(folder / "broken.png"), "--skip-bad", *json_])
        assert none.exit_code == 1 and "error: no image could be classified (1 unreadable, skipped)" in none.stderr
    assert json.loads(none.stdout)["results"] == [] and json.loads(none.stdout)["not_classified"] == []
    result = CliRunner().invoke(cli, ["predict", model, str(folder), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3 and "broken.png" not in result.stdout
    assert "skipped 1 unreadable image(s) (--skip-bad)" in result.stderr
    document = json.loads(CliRunner().invoke(cli, ["predict", model, str(folder), "--skip-bad", "--json"]).stdout)
    assert len(document["results"]) == 3 and [Path(s["image"]).name for s in document["skipped"]] == ["broken.png"]


def test_predict_runs_openvino_in_fp32_when_asked(cli, trained_run, samples):
    """predict ran an IR as OpenVINO chose (bf16 on CPUs with AVX-512 BF16: a top-1 changed on the digits against
    fp32), with no way to ask for fp32, while the Python example app forces it (a reviewer's finding)."""
    model, images = trained_run.file("openvino/model.xml"), [str(s) for s in samples[:4]]
    done = CliRunner().invoke(cli, ["predict", str(model), *images, "--precision", "fp32", "--json"])
    assert done.exit_code == 0, done.output
    expected = runtime.Classifier(model, precision="fp32").predict(images)
    got = [p["score"] for r in json.loads(done.stdout)["results"] for p in r["top_k"]]
    assert got == pytest.approx([p.score for top in expected for p in top], abs=1e-6)
    onnx_ = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), images[0], "--precision", "fp32"])
    assert onnx_.exit_code == 2 and "--precision: OpenVINO's (a .xml model, or --backend openvino)" in onnx_.stderr
    device = CliRunner().invoke(cli, ["predict", str(model), images[0], "--device", "XYZ"])  # OpenVINO's own words
    assert device.exit_code == 2 and device.stderr.strip().endswith(
        'Device with "XYZ" name is not registered in the OpenVINO Runtime'
    )


def test_a_model_the_engine_cannot_feed_is_one_line(cli, samples, tmp_path):
    """A reviewer's finding: a model taking fp16 input (or a fixed non-square one) ended predict in onnxruntime's
    40-line traceback."""
    import onnx
    from onnx import TensorProto, helper

    def model(name, dtype, shape):
        graph = helper.make_graph(
            [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
            "g",
            [helper.make_tensor_value_info("x", dtype, shape)],
            [helper.make_tensor_value_info("y", dtype, ["N", 3])],
        )
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return str(path)

    plain = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--size", "8"]
    half = CliRunner().invoke(
        cli, ["predict", model("half.onnx", TensorProto.FLOAT16, ["N", 3, 8, 8]), str(samples[0]), *plain]
    )
    assert half.exit_code == 2 and "Traceback" not in half.output, half.output
    said = half.stderr.strip()
    assert (
        said.count("\n") == 0
        and said.startswith("error: ")
        and "half.onnx cannot run on (1, 3, 8, 8) float32 input (ort): " in said
    )
    wide = CliRunner().invoke(
        cli, ["predict", model("wide.onnx", TensorProto.FLOAT, ["N", 3, 8, 12]), str(samples[0]), *plain]
    )
    assert wide.exit_code == 2 and "takes 12x8 (width x height) images; only square inputs are supported" in wide.stderr


def test_predict_json_and_options_for_a_plain_model(cli, plain_onnx, samples, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\ntwo\n")
    args = ["predict", str(plain_onnx), str(samples[0]), str(samples[-1]), "--json", "--labels", str(labels)]
    args += ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--size", "32", "--backend", "openvino"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["backend"] == "openvino" and len(document["results"]) == 2
    assert {p["label"] for p in document["results"][0]["top_k"]} == {"zero", "one", "two"}
    # a file name that is not UTF-8: its bytes come back from the JSON (as --help says), in a folder and named alone,
    # in JSON any parser reads (Python's \udcXX escapes were lone surrogates, which strict parsers refuse)
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    os.link(samples[0], raw)
    for where in (str(folder), os.fsdecode(raw)):
        result = CliRunner().invoke(cli, [*args[:2], where, *args[4:]])
        assert result.exit_code == 0, result.output
        (found,) = json.loads(result.stdout)["results"]
        assert bytes.fromhex(found["image_bytes"]) == raw and found["image"].endswith("/caf\\xe9.png")
        assert "\\udc" not in result.stdout and json.dumps(found, ensure_ascii=False).encode("utf-8")  # valid UTF-8
    # nor inside a skipped file's reason, which names it (a review found one left there)
    with open(os.fsencode(folder) + b"/bad\xe9.png", "wb") as handle:
        handle.write(b"not an image")
    result = CliRunner().invoke(cli, [*args[:2], str(folder), *args[4:], "--skip-bad"])
    assert result.exit_code == 0, result.output
    (skipped,) = json.loads(result.stdout)["skipped"]
    assert "\\udc" not in result.stdout and "bad\\xe9.png" in skipped["why"] and skipped["image_bytes"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["MISSING.png"], "image or folder not found"),
        (["--mean", "a,b,c"], "--mean takes comma-separated numbers"),
        (["--backend", "tflite"], "unknown backend"),
        (["--labels", "nofile.txt"], "--labels file not found: nofile.txt"),  # was "4 outputs but 1 labels given"
        (["--resize", "10"], "resize (--resize) 10 is smaller than the 32x32 crop"),  # was a zero-padded border
    ],
)
def test_predict_errors_are_one_line_with_exit_code_2(cli, trained_run, samples, extra, message):
    images = [] if extra[0] == "MISSING.png" else [str(samples[0])]
    result = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), *images, *extra])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1


def test_plain_model_without_options_is_a_clear_error(cli, plain_onnx, samples):
    result = CliRunner().invoke(cli, ["predict", str(plain_onnx), str(samples[0])])
    assert result.exit_code == 2 and "pass mean, std (--mean, --std on the command line)" in result.stderr


# --------------------------------------------------------------------------- no torch on this path

NO_TORCH_SCRIPT = textwrap.dedent(
    """
    import sys
    import typer
    import edgetransfer.cli
    assert "torch" not in sys.modules, "import edgetransfer.cli imported torch"
    from edgetransfer.cli.predict import predict
    app = edgetransfer.cli.app
    if "predict" not in [c.name or c.callback.__name__ for c in app.registered_commands]:
        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        app.command()(predict)
        app.command("noop")(lambda: None)
    try:
        app(sys.argv[1:], standalone_mode=False)
    finally:
        print("modules:", " ".join(m for m in ("torch", "torchvision") if m in sys.modules), file=sys.stderr)
    """
)


@pytest.fixture(scope="module")
def torch_blocked(tmp_path_factory) -> dict[str, str]:
    """An environment where ``import torch`` (and so torchvision) fails."""
    folder = tmp_path_factory.mktemp("no-torch")
    (folder / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_the_blocker_blocks(torch_blocked):
    done = subprocess.run([sys.executable, "-c", "import torch"], env=torch_blocked, capture_output=True, text=True)
    assert done.returncode != 0 and "torch is blocked" in done.stderr


@pytest.mark.parametrize("model", ["model.onnx", "openvino/model.xml"])
def test_predict_runs_without_torch(torch_blocked, trained_run, samples, model):
    command = [sys.executable, "-c", NO_TORCH_SCRIPT, "predict", str(trained_run.file(model)), str(samples[0])]
    done = subprocess.run(command, env=torch_blocked, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(samples[0])) and done.stderr.strip() == "modules:"


def test_the_camera_loop_example_runs_on_a_folder(trained_run, samples, capsys, tmp_path):
    import runpy
    import shutil

    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "python" / "camera_loop.py"))
    folder = samples[0].parent
    assert example["main"]([str(trained_run.file("model.onnx")), str(folder), "--repeat", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(list(folder.glob("*.png")))
    assert " ms   p99 " in lines[-1] and lines[-1].split()[-2] in trained_run.load_card().labels
    # one unreadable frame is said and passed over (the loop ended there, exit 2: a new user's finding)
    frames = tmp_path / "frames"
    shutil.copytree(folder, frames)
    (frames / "000-empty.png").write_bytes(b"")
    assert example["main"]([str(trained_run.file("model.onnx")), str(frames)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == len(list(folder.glob("*.png"))) and "skipped: " in err and "empty" in err
    assert example["main"]([str(trained_run.file("model.onnx")), str(samples[0]), "--repeat", "3"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [samples[0].name] * 3  # one image
    with pytest.raises(SystemExit, match=r"^error: no such folder, image, video file or camera: .*/typo$"):
        example["main"]([str(trained_run.file("model.onnx")), str(tmp_path / "typo")])  # said OpenCV was missing
    with pytest.raises(SystemExit) as exit_info:  # --window 0 was an IndexError at the first frame
        example["main"]([str(trained_run.file("model.onnx")), str(frames), "--window", "0"])
    assert (
        exit_info.value.code == 2
        and "--window: expected a whole number of at least 1, got 0" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_the_runtime_extra_pulls_no_torch(tmp_path):
    """Resolve `pip install ".[runtime]"` without installing: nothing of the training stack may come with it."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            f"{root}[runtime]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "edgetransfer" in names
    assert not names & {"torch", "torchvision", "openvino", "nncf", "onnx"}, names


def test_pixel_limit_check_is_thread_safe(tmp_path, monkeypatch):
    """A device app classifies from several threads: each image past Pillow's hard pixel limit is one error in every
    thread, one between its soft and hard limits is classified without a warning, and the process's warnings filters
    are as they were (the check once swapped the process-wide filters in each call: threads restored each other's
    and lost or leaked the filter)."""
    from concurrent.futures import ThreadPoolExecutor

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (60, 50), (200, 10, 10)).save(big)  # 3000 pixels: past twice the limit below (Pillow's error)
    Image.new("RGB", (30, 30), (10, 200, 10)).save(small)  # 900: past the limit, under twice it (Pillow's warning)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 800)
    pre = Preprocessing(resize=16, crop=16)
    filters_before = list(warnings.filters)

    def classify(i: int) -> str:
        path = big if i % 2 else small
        try:
            runtime.preprocess_image(path, pre)
        except DataError as exc:
            return "error" if "exceeds limit" in str(exc) else f"other: {exc}"
        return "ok"

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(classify, range(800)))
        leaked = list(warnings.filters)
    assert results == ["ok", "error"] * 400
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert leaked[0][2] is not Image.DecompressionBombWarning  # no filter of ours left behind
    assert warnings.filters == filters_before


def test_predict_names_what_it_does_not_classify_in_a_folder(cli, trained_run, tmp_path):
    """predict on a folder skipped .heic photos, other files and symlinked folders without a word; a .jfif JPEG was
    not read at all; Windows' Thumbs.db is system clutter like .DS_Store (never listed)."""
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(folder / "a" / "one.jpg")
    Image.new("RGB", (40, 40), (30, 200, 30)).save(folder / "a" / "two.jfif", format="JPEG")
    (folder / "a" / "three.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "a" / "Thumbs.db").write_bytes(b"\x00" * 16)
    (folder / "a" / ".DS_Store").write_bytes(b"\x00" * 16)
    other = tmp_path / "elsewhere"
    other.mkdir()
    Image.new("RGB", (40, 40)).save(other / "four.png")
    (folder / "linked").symlink_to(other, target_is_directory=True)
    (folder / "a" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")  # in no list, nothing said (a new user's)
    os.mkfifo(folder / "a" / "pipe.png")
    passed_over: list = []
    found = runtime.find_images([folder], passed_over=passed_over)
    assert [p.name for p in found] == ["one.jpg", "two.jfif"]
    assert sorted((p.name, why.split(",")[0].split(" (")[0]) for p, why in passed_over) == [
        ("dangling.jpg", "broken symlink"),
        ("linked", "symlinked folder"),
        ("pipe.png", "a FIFO"),
        ("three.heic", "a .heic photo"),
    ]
    result = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), str(folder), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.strip()]) == 2
    assert "note: 4 not classified" in result.stderr and "convert it to JPEG or PNG" in result.stderr
    assert "Thumbs.db" not in result.stderr and "DS_Store" not in result.stderr
    # --json lists them too: a script reading stdout alone saw only the classified images
    as_json = CliRunner().invoke(cli, ["predict", str(trained_run.file("model.onnx")), str(folder), "--json"])
    document = json.loads(as_json.stdout)
    said = sorted(Path(e["image"]).name for e in document["not_classified"])
    assert said == ["dangling.jpg", "linked", "pipe.png", "three.heic"]
    assert len(document["results"]) == 2


def test_a_model_that_ends_in_softmax_is_not_softmaxed_twice(plain_onnx, samples, tmp_path):
    """A model from another tool that outputs probabilities scored 0.9999 as 0.58 (softmax of probabilities)."""
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(plain_onnx))
    logits = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    model.graph.output[0].name = "probabilities"
    path = tmp_path / "with_softmax.onnx"
    onnx.save(model, str(path))
    options = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "size": 32}
    classifier = runtime.Classifier(path, **options)
    batch = runtime.preprocess(list(samples[:4]), classifier.preprocessing)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    assert np.allclose(classifier.scores(list(samples[:4])), expected, atol=1e-6)
    plain = runtime.Classifier(plain_onnx, **options).scores(list(samples[:4]))  # logits: softmax applied
    assert np.allclose(plain, expected, atol=1e-5)
    assert np.allclose(runtime.as_probabilities(np.array([[2.0, -1.0, 0.5]])).sum(), 1.0)


STANDALONE_APP = Path(__file__).resolve().parents[1] / "examples" / "python" / "standalone_app.py"


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory, parity_images) -> list[Path]:
    """Image files of every kind a device app meets: EXIF-rotated and large JPEGs, grey, palette, alpha, CMYK,
    16-bit grey, 32-bit integer and float TIFFs (0..255 and 0..1), very wide and very tall."""
    folder = tmp_path_factory.mktemp("odd")
    base = parity_images[-1]
    rotated, exif = folder / "rotated.jpg", Image.Exif()
    exif[0x0112] = 6
    base.save(rotated, exif=exif)
    files = [rotated]
    rng = np.random.default_rng(3)
    alpha = Image.fromarray(rng.integers(0, 256, base.size[::-1], dtype=np.uint8))
    for mode, suffix in [("L", ".png"), ("P", ".png"), ("RGBA", ".png"), ("LA", ".png"), ("CMYK", ".jpg")]:
        files.append(folder / f"{mode}{suffix}")
        image = base.convert(mode)
        if "A" in mode:  # a real alpha channel: dropped, not composited
            image.putalpha(alpha)
        image.save(files[-1])
    grey = rng.integers(0, 256, (50, 70))
    arrays = {
        "deep.png": (grey * 200 + 100).astype(np.uint16),
        "int32.tif": grey.astype(np.int32),
        "float255.tif": grey.astype(np.float32),
        "float01.tif": (grey / 255).astype(np.float32),
        "wide.png": rng.integers(0, 256, (17, 400, 3), dtype=np.uint8),
        "tall.png": rng.integers(0, 256, (403, 150, 3), dtype=np.uint8),
    }
    for name, array in arrays.items():
        files.append(folder / name)
        Image.fromarray(array).save(files[-1])
    files.append(folder / "big.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((1600, 1200)).save(files[-1])
    damaged = bytearray(exif.tobytes())  # a camera's damaged EXIF tag (Pillow warns), and a transparent palette
    damaged[14:16] = b"\xff\xff"
    files.append(folder / "damaged_exif.jpg")
    base.save(files[-1], exif=bytes(damaged))
    files.append(folder / "transparent.png")
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = bytes([0] + [255] * 15)
    palette.save(files[-1])
    return files


@pytest.mark.parametrize(("resize", "crop"), [(32, 32), (40, 32), (28, 32), (27, 32)])  # 27: uneven padding
def test_the_standalone_example_feeds_the_model_what_the_runtime_feeds_it(odd_files, resize, crop):
    """examples/python/standalone_app.py (onnxruntime, numpy and Pillow, nothing of the project) gives every kind of
    file the very tensor edgetransfer's runtime gives it (a helper's app written from the README alone differed on
    a 0..255 integer TIFF and by a level on tall images)."""
    import runpy

    app = runpy.run_path(str(STANDALONE_APP))
    pre = Preprocessing(resize=resize, crop=crop)
    for path in odd_files:
        got = app["preprocess"](app["open_image"](path, resize), dataclasses.asdict(pre))
        assert np.array_equal(got, runtime.preprocess_image(path, pre)), path.name


@pytest.mark.parametrize("model", ["model.onnx", "model.int8.onnx", "openvino/model.xml"])
def test_the_standalone_example_predicts_as_predict_does_without_the_project(
    trained_run, samples, odd_files, torch_blocked, model
):
    path = trained_run.file(model)
    check = (  # the app run as a script, then which of the project's modules (or torch) it imported
        "import runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "finally:\n"
        "    print('modules:', *sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'edgetransfer'}),"
        " file=sys.stderr)\n"
    )
    images = [*samples[:6], *odd_files]
    bad = odd_files[0].parent / "bad"  # a folder of what a device meets besides images: said or passed over
    bad.mkdir(exist_ok=True)
    (bad / "empty.png").write_bytes(b"")
    (bad / "._resource-fork.png").write_bytes(b"\0\5\26\7")  # macOS's, beside a copied photo
    (bad / "@eaDir").mkdir(exist_ok=True)  # a Synology NAS's thumbnails: not the user's images (a reviewer's finding)
    (bad / "@eaDir" / "SYNOFILE_THUMB_S.png").write_bytes(samples[0].read_bytes())
    Image.new("RGB", (1, 4000)).save(bad / "strip.png")  # resized, 96 x 384,000 px: refused, said
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 20000, 10000, 8, 0, 0, 0, 0)  # a header past Pillow's hard pixel limit
    (bad / "bomb.png").write_bytes(  # (the app stopped in a DecompressionBombError traceback)
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    )
    command = [sys.executable, "-c", check, str(STANDALONE_APP), str(path), *map(str, images), str(bad), "--top-k", "2"]
    done = subprocess.run(command, env=torch_blocked, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said = done.stderr.strip().splitlines()
    assert said[-1] == "modules:" and len(said) == 4, said
    assert [line.split(": skipped: ")[0] for line in said[:3]] == [
        str(bad / f) for f in ("bomb.png", "empty.png", "strip.png")
    ]
    expected = runtime.Classifier(path, precision="fp32").predict([str(p) for p in images], top_k=2)
    lines = done.stdout.splitlines()
    assert len(lines) == len(images)
    for line, image, top in zip(lines, images, expected, strict=True):
        fields = line.split("  ")
        assert fields[0] == str(image)
        assert [f.rsplit(" ", 1)[0] for f in fields[1:]] == [p.label for p in top], image.name
        assert [float(f.rsplit(" ", 1)[1]) for f in fields[1:]] == pytest.approx([p.score for p in top], abs=1e-4)


def test_the_standalone_example_stops_quietly_when_its_reader_leaves(trained_run, samples):
    """``standalone_app.py ... | head -1``: the pipe closes under it; a Unix tool stops without a traceback."""
    command = [sys.executable, str(STANDALONE_APP), str(trained_run.file("model.onnx")), *map(str, samples)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as app:
        app.stdout.close()  # before its first line: every write it makes meets a closed pipe
        said = app.communicate(timeout=120)[1].decode()
    assert app.returncode == 1 and said == "", said


def test_the_standalone_example_takes_a_run_folder_and_says_a_wrong_model_in_one_line(trained_run, samples):
    """A run folder (predict takes one) and a file that is no model were onnxruntime tracebacks (a reviewer's)."""
    image = str(samples[0])
    folder = subprocess.run([sys.executable, str(STANDALONE_APP), str(trained_run.path), image], capture_output=True)
    assert folder.returncode == 0 and folder.stdout.decode().startswith(f"{image}  "), folder.stderr
    for model, said in [(image, "is not a model ONNX Runtime can load: "), (image + ".none", "no model file ")]:
        wrong = subprocess.run([sys.executable, str(STANDALONE_APP), model, image], capture_output=True, text=True)
        assert wrong.returncode == 1 and said in wrong.stderr and wrong.stderr.count("\n") == 1, wrong.stderr


def test_a_strip_is_refused_in_one_line_not_resized_into_gigabytes(tmp_path):
    """The shorter side is resized to the model's size and the longer follows: a 1x40000 PNG became 96 x 3.8
    million pixels (1.1 GB) before the crop, and predict --skip-bad ended in a MemoryError traceback (a reviewer's
    finding). A file, a PIL image and an array are each refused; 50:1 is still classified."""
    from edgetransfer.images import open_image, preprocess_image

    pre = Preprocessing(resize=96, crop=96)
    Image.new("RGB", (1, 40000)).save(tmp_path / "strip.png")
    with pytest.raises(DataError, match=r"^image .*strip.png: 1x40000 px is a strip \(sides over 50:1\), not a"):
        open_image(tmp_path / "strip.png", resize=96)
    for image in (Image.new("RGB", (40000, 1)), np.zeros((40000, 1, 3), np.uint8)):
        with pytest.raises(DataError, match=r"is a strip"):
            preprocess_image(image, pre)
    assert preprocess_image(Image.new("RGB", (500, 10)), pre).shape == (3, 96, 96)

"""examples/cpp: the OpenVINO C++ device app builds against the openvino wheel and agrees with the Python runtime."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from edgetransfer import runtime

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cpp"


@pytest.fixture(scope="module")
def classify(tmp_path_factory) -> Path:
    """The example built in a temporary folder (a few seconds: one source file)."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"building examples/cpp needs {' and '.join(missing)}, not found on PATH")
    openvino = pytest.importorskip("openvino", reason="the example builds against the openvino wheel")
    if not (Path(openvino.__file__).parent / "cmake" / "OpenVINOConfig.cmake").is_file():
        pytest.skip("this openvino install has no CMake config (openvino/cmake/OpenVINOConfig.cmake)")
    build = tmp_path_factory.mktemp("cpp-build")
    done = subprocess.run(
        ["bash", str(EXAMPLE / "build.sh"), str(build)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build / "classify"


@pytest.fixture(scope="module")
def pnm_images(trained_run, tmp_path_factory) -> list[Path]:
    """The run's images as PPM, and generated ones of odd sizes (shrunk, enlarged, grey) as PPM/PGM."""
    folder = tmp_path_factory.mktemp("pnm")
    source = sorted(Path(trained_run.load_card().dataset["path"]).rglob("*.png"))[::5]
    paths = []
    for path in source:
        paths.append(folder / f"{path.parent.name}-{path.stem}.ppm")
        Image.open(path).convert("RGB").save(paths[-1])
    rng = np.random.default_rng(3)
    for name, shape in [("wide.ppm", (97, 131, 3)), ("tall.ppm", (70, 33, 3)), ("tiny.ppm", (12, 30, 3))]:
        paths.append(folder / name)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    paths.append(folder / "grey.pgm")
    Image.fromarray(rng.integers(0, 256, (45, 61), dtype=np.uint8)).save(paths[-1])
    return paths


def parse(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """``IMAGE  label score  label score`` lines -> {image: [(label, score), ...]}."""
    results = {}
    for line in stdout.splitlines():
        image, *best = line.split("  ")
        results[image] = [(part.rsplit(" ", 1)[0], float(part.rsplit(" ", 1)[1])) for part in best]
    return results


@pytest.mark.parametrize("model", ["openvino/model.xml", "model.onnx", "."])  # ".": the run folder (its model.onnx)
def test_cpp_top1_and_scores_match_the_python_runtime(classify, trained_run, pnm_images, model):
    args = [str(classify), str(trained_run.file(model)), *map(str, pnm_images), "--top-k", "3", "--precision", "f32"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cpp = parse(done.stdout)
    python = runtime.Classifier(trained_run.file("model.onnx")).predict(pnm_images, top_k=3)
    assert list(cpp) == [str(p) for p in pnm_images]
    for path, best in zip(pnm_images, python, strict=True):
        assert cpp[str(path)][0][0] == best[0].label, path.name
        assert [label for label, _ in cpp[str(path)]] == [p.label for p in best] or best[1].score - best[2].score < 1e-3
        assert np.allclose([s for _, s in cpp[str(path)]], [p.score for p in best], atol=2e-4), path.name


def test_cpp_errors_are_one_line(classify, trained_run, pnm_images, tmp_path):
    plain = onnx.load(str(trained_run.file("model.onnx")))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    not_an_image = tmp_path / "text.ppm"
    not_an_image.write_text("hello")
    strip = tmp_path / "strip.pgm"  # resized to the model's size, 96 x 384,000 px: refused
    strip.write_bytes(b"P5 1 4000 255\n" + bytes(4000))
    model = trained_run.file("model.onnx")
    for image, message in [
        (not_an_image, "not a binary PPM (P6) or PGM (P5) image"),
        (tmp_path / "missing.ppm", "cannot open image"),
        (strip, "1x4000 px is a strip (sides over 50:1)"),
    ]:  # an image it cannot read is passed over, said (it stopped the app, the images after it unclassified)
        done = subprocess.run(
            [str(classify), str(model), str(image), str(pnm_images[0])], capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.startswith(f"{pnm_images[0]}  ") and done.stdout.count("\n") == 1
        assert done.stderr.startswith("skipped: ") and message in done.stderr and done.stderr.count("\n") == 1
        alone = subprocess.run([str(classify), str(model), str(image)], capture_output=True, text=True)
        assert alone.returncode == 1 and not alone.stdout and alone.stderr.endswith("\nno image classified\n")
    for args, message in [
        ([tmp_path / "plain.onnx", pnm_images[0]], "no edgetransfer model card"),
        # OpenVINO's own errors: what went wrong, not where it was thrown ("Exception from src/.../core.cpp:84:")
        ([tmp_path / "missing.xml", pnm_images[0]], "Could not open the file"),
        ([trained_run.file("model.onnx"), pnm_images[0], "--device", "XYZ"], 'Device with "XYZ" name'),
    ]:
        done = subprocess.run([str(classify), *map(str, args)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stderr.startswith("error: ") and message in done.stderr
        assert done.stderr.count("\n") == 1
    for top_k in ("abc", "0", "-3", "2x"):  # a mistake on the command line: the usage, exit 2
        done = subprocess.run(
            [str(classify), str(trained_run.file("model.onnx")), str(pnm_images[0]), "--top-k", top_k],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "usage" in done.stderr.lower() and not done.stdout, top_k


def test_build_without_openvino_says_so_in_one_line(tmp_path):
    python = tmp_path / "python"  # an interpreter without the openvino package
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError' >&2\nexit 1\n")
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OpenVINO_DIR"}
    done = subprocess.run(
        ["bash", str(EXAMPLE / "build.sh"), str(tmp_path / "build")],
        env={**env, "PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "no openvino package" in done.stderr


def test_cpp_reads_escaped_unicode_labels(classify, trained_run, pnm_images, tmp_path):
    """Python writes the card with \\uXXXX escapes (surrogate pairs beyond the BMP); the C++ reader decodes them."""
    from edgetransfer.card import ONNX_METADATA_KEY, ModelCard, embed_in_onnx

    model = onnx.load(str(trained_run.file("model.onnx")))
    card = ModelCard.from_json(next(p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY))
    labels = ("chat noir", "crème brûlée", '🐱 "cat"')
    embed_in_onnx(model, dataclasses.replace(card, labels=labels))
    onnx.save(model, str(tmp_path / "unicode.onnx"))
    args = [str(classify), str(tmp_path / "unicode.onnx"), str(pnm_images[0]), "--top-k", "3"]
    done = subprocess.run(args, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert {label for label, _ in parse(done.stdout)[str(pnm_images[0])]} == set(labels)

"""The device runtime with the training stack gone: `edgetransfer predict` and `Classifier` answer on model.onnx,
model.int8.onnx and the OpenVINO IR with torch, torchvision and onnx unimportable (and openvino too, for the ONNX
models), as after `pip install edgetransfer` (or `"edgetransfer[openvino]"` for the IR) on a device."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TRAINING_STACK = ("torch", "torchvision", "onnx", "onnxslim", "nncf")


def blocked_env(folder, names):
    """An environment where importing any of ``names`` fails as it does where the package is not installed."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(
            f"raise ModuleNotFoundError('{name} is not installed here', name='{name}')\n"
        )
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


SCRIPT = textwrap.dedent(
    """
    import sys
    from edgetransfer.runtime import Classifier
    from edgetransfer.cli import app
    model, image, blocked = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    top = Classifier(model).predict([image], top_k=1)[0]
    print("classifier", top[0].label)
    try:
        app(["predict", model, image, "--top-k", "1"])
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
    loaded = [name for name in blocked if name in sys.modules and getattr(sys.modules[name], "__file__", None)]
    print("exit", code, "loaded", ",".join(loaded) or "-")
    """
)


@pytest.mark.parametrize("model", ["model.onnx", "model.int8.onnx", "openvino/model.xml"])
def test_predict_with_the_training_stack_unimportable(trained_run, tmp_path, model):
    names = TRAINING_STACK if model.endswith(".xml") else (*TRAINING_STACK, "openvino")
    env = blocked_env(tmp_path / "blocked", names)
    probe = subprocess.run([sys.executable, "-c", "import onnx"], env=env, capture_output=True, text=True)
    assert "onnx is not installed here" in probe.stderr, "the blocker must block"
    image = next(Path(trained_run.load_card().dataset["path"]).rglob("*.png"))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(trained_run.file(model)), str(image), ",".join(names)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    labels = trained_run.load_card().labels
    assert lines[0].split()[1] in labels, done.stdout
    assert lines[-1] == "exit 0 loaded -", done.stdout + done.stderr
    assert any(line.startswith(str(image)) for line in lines[1:-1]), done.stdout


def test_external_data_outside_the_folder_is_refused_without_onnx(tmp_path):
    """Without the onnx package the runtime relies on onnxruntime's own refusal of external-data paths that leave
    the model's folder (onnxruntime >= 1.25): still one line, exit 2."""
    import shutil

    from PIL import Image
    from test_safety import model_with_external_data

    folder = tmp_path / "model"
    folder.mkdir()
    path = model_with_external_data(folder, "../secret.bin")
    shutil.move(folder / "m.data", tmp_path / "secret.bin")  # the data exists, outside the model's folder
    env = blocked_env(tmp_path / "blocked", (*TRAINING_STACK, "openvino"))
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "edgetransfer", "predict", str(path), str(image), "--labels", "a,b,c,d", "--size", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "escapes model directory" in lines[0], done.stderr


def python310() -> str | None:
    """A CPython 3.10 interpreter that runs on this machine (on PATH, or one of pyenv's: its shim on PATH may
    refuse to run one that is not selected), or None."""
    import shutil

    candidates = [shutil.which("python3.10"), *map(str, sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3")))]
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 10)"]
        if subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_the_runtime_installs_and_answers_on_python_310(trained_run, tmp_path):
    """A device on Python 3.10 (Ubuntu 22.04, JetPack 6), where onnxruntime 1.23 is the last release: the runtime
    install (pip install edgetransfer, no extras) finds its requirements there (it asked for onnxruntime >= 1.25,
    which has no 3.10 wheels, and pip failed), predicts what this Python's install predicts, and still refuses a
    model whose external data leaves its folder (onnxruntime 1.23 loads it; the onnx package checks it there)."""
    interpreter = python310()
    if interpreter is None:
        pytest.skip("no Python 3.10 on this machine (python3.10 on PATH or ~/.pyenv/versions/3.10*)")
    venv = tmp_path / "py310"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    root = Path(__file__).resolve().parent.parent
    install = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    check = "import onnxruntime, sys; print(sys.version_info[:2] == (3, 10), onnxruntime.__version__)"
    versions = subprocess.run([str(venv / "bin/python"), "-c", check], capture_output=True, text=True, timeout=60)
    assert versions.stdout.split()[0] == "True" and versions.stdout.split()[1] < "1.25", versions.stdout
    images = sorted(Path(trained_run.load_card().dataset["path"]).rglob("*.png"))[:6]
    args = ["predict", str(trained_run.file("model.int8.onnx")), *map(str, images), "--top-k", "1"]
    env = {**os.environ, "EDGETRANSFER_OFFLINE": "1"}
    there = subprocess.run([str(venv / "bin/edgetransfer"), *args], capture_output=True, text=True, env=env)
    here = subprocess.run([sys.executable, "-m", "edgetransfer", *args], capture_output=True, text=True, env=env)
    assert there.returncode == 0 and here.returncode == 0, there.stderr + here.stderr
    rows_there, rows_here = (
        [line.split() for line in done.stdout.splitlines() if line.strip()] for done in (there, here)
    )
    assert len(rows_there) == len(images) == len(rows_here)
    for a, b in zip(rows_there, rows_here, strict=True):
        assert a[:2] == b[:2] and abs(float(a[2]) - float(b[2])) < 2e-3, (a, b)

    import onnx
    from test_safety import model_with_external_data

    folder = tmp_path / "model"
    folder.mkdir()
    path = model_with_external_data(folder, "../secret.bin")
    old = onnx.load(str(path), load_external_data=False)
    old.ir_version = 9  # what onnxruntime 1.23 reads (it refuses IR 14 before looking at the paths)
    onnx.save(old, str(path))
    (folder / "m.data").rename(tmp_path / "secret.bin")
    refused = subprocess.run(
        [str(venv / "bin/edgetransfer"), "predict", str(path), str(images[0]), "--labels", "a,b,c,d", "--size", "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode == 2 and "external data outside its folder" in refused.stderr, refused.stderr

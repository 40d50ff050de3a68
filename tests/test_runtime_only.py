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

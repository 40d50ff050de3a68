"""Killed mid-job: the run directory keeps its last complete state, and the next command carries on."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from edgetransfer.errors import RunDirError
from edgetransfer.rundir import RunDir, sha256_file


def start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "edgetransfer", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def run_cli(*args):
    result = subprocess.run(
        [sys.executable, "-m", "edgetransfer", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_sigkill_during_training_then_resume_and_export(image_folder, tmp_path):
    import torch

    out = tmp_path / "run"
    args = ["--data", image_folder, "--out", out, "--size", 32, "--batch-size", 4]
    process = start("finetune", *args, "--epochs", 40, "--patience", 40)
    wait_for(lambda: (out / "resume.pt").exists(), process)  # at least epoch 1 is done; kill it wherever it is
    # still training: said so (a new user was told to --resume it, and then that it was in use)
    with pytest.raises(RunDirError, match=r"is in use by 'edgetransfer finetune' \(pid "):
        RunDir.open(out)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with pytest.raises(RunDirError, match="did not finish.*--resume") as refused:
        RunDir.open(out)
    done = torch.load(out / "resume.pt", weights_only=True)["epoch"]
    hint = shlex.split(str(refused.value).split("continue it with: ")[1])
    assert hint[:2] == ["edgetransfer", "finetune"] and "--resume" in hint
    (out / ".model.safetensors.x1y2.tmp").write_bytes(b"half")  # a write the kill cut (there may be one)
    run_cli(*hint[1:], "--epochs", done + 1)  # the command export suggests, as given; --epochs may change
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "what the killed run was writing is removed"
    card = RunDir.open(out).load_card()
    assert [h["epoch"] for h in card.training["history"]] == list(range(1, done + 2))
    run_cli("export", out, "--calib-size", 8, "--no-openvino")
    card = RunDir.open(out).load_card()
    assert card.artifacts["model.onnx"]["sha256"] == sha256_file(out / "model.onnx")


@pytest.mark.slow
def test_sigkill_during_export_leaves_the_previous_state(trained_run, tmp_path):
    import shutil

    shutil.copytree(trained_run.path, tmp_path / "run")
    out = tmp_path / "run"
    card_before = (out / "card.json").read_text()
    onnx_before = sha256_file(out / "model.onnx")
    process = start("export", out, "--calib-size", 8)
    wait_for(lambda: any(out.glob(".export.*.partial/model.onnx")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "card.json").read_text() == card_before
    assert sha256_file(out / "model.onnx") == onnx_before
    run_cli("export", out, "--calib-size", 8, "--no-openvino")
    assert not list(out.glob(".export.*")), "the next export cleans what the killed one left"
    card = json.loads((out / "card.json").read_text())
    assert card["artifacts"]["model.onnx"]["sha256"] == sha256_file(out / "model.onnx")


@pytest.mark.slow
def test_sigterm_during_export_cleans_up_as_ctrl_c_does(trained_run, tmp_path):
    """A cancelled CI job (SIGTERM) left the export's 20 MB staging folder in the run, and bench's temporary
    files in /tmp: now SIGTERM goes through Ctrl-C's clean-up, and the exit code is 143 as for any SIGTERM."""
    import shutil

    out = shutil.copytree(trained_run.path, tmp_path / "run")
    card_before = (out / "card.json").read_text()
    process = start("export", out, "--calib-size", 8)
    wait_for(lambda: any(out.glob(".export.*.partial/model.onnx")), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err.decode()[-2000:]
    assert "interrupted; nothing half-written was kept" in err.decode()
    assert not list(out.glob(".export.*")), "the staging folder is removed"
    assert (out / "card.json").read_text() == card_before

"""The bad-input matrix: every command against every kind of bad input. Each case asserts the exit code, the
one-line message, and that nothing was written or changed."""

import json
import os
import pickle
import shutil

import pytest
from conftest import make_folder
from PIL import Image
from typer.testing import CliRunner

from edgetransfer.cli import app


def snapshot(folder):
    """Every file below ``folder`` with its size and mtime (hidden lock files beside runs included)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def run_bad(args, code, fragment, watch):
    before = snapshot(watch)
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output
    after = snapshot(watch)
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")
    }, "nothing written or changed"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/edgetransfer-pwned",))


def build_data(kind, root):
    """A data folder with one kind of badness."""
    if kind == "missing":
        return root / "nope"
    if kind == "empty":
        root.mkdir()
        return root
    if kind == "one-class":
        return make_folder(root, classes=1)
    make_folder(root, classes=2, per_class=4)
    target = root / "class0"
    if kind == "corrupt":
        (target / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    elif kind == "truncated":
        whole = (target / "000.png").read_bytes()
        (target / "cut.png").write_bytes(whole[:200])
    elif kind == "huge-dimension":
        with Image.open(target / "000.png") as img:
            img.save(target / "huge.png")
        raw = bytearray((target / "huge.png").read_bytes())
        raw[16:24] = (200_000).to_bytes(4, "big") * 2  # IHDR width and height: 200000 x 200000
        (target / "huge.png").write_bytes(bytes(raw))
    elif kind == "symlink-escape":
        outside = root.parent / "outside.png"
        Image.new("RGB", (8, 8)).save(outside)
        (target / "escape.png").symlink_to(outside)
    elif kind == "non-image":
        (target / "notes.txt").write_text("hello")
    elif kind == "non-utf8-name":
        with open(os.fsencode(target) + b"/\xff\xfebad.png", "wb") as fh:
            fh.write(b"garbage")
    return root


DATA_CASES = {
    "missing": "not found",
    "empty": "no class folders",
    "one-class": "only one class",
    "corrupt": "bad.jpg (unreadable",
    "truncated": "cut.png (unreadable",
    "huge-dimension": "huge.png",
    "symlink-escape": "symlink to outside",
    "non-image": "notes.txt (not an image file)",
    "non-utf8-name": "bad.png (unreadable",
}


@pytest.mark.parametrize("kind", DATA_CASES)
def test_finetune_with_bad_data(tmp_path, kind):
    data = build_data(kind, tmp_path / "data")
    run_bad(["finetune", "--data", data, "--out", tmp_path / "run", "--size", 32], 2, DATA_CASES[kind], tmp_path)
    assert not (tmp_path / "run").exists()


def test_tampered_offline_weights(tmp_path, monkeypatch, image_folder):
    from edgetransfer import backbones

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = backbones.get("mobilenet_v2")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / spec.file_name
    cached.parent.mkdir(parents=True)
    shutil.copyfile(spec.offline.locate(), cached)
    with open(cached, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00" * 16)
    run_bad(["finetune", "--data", image_folder, "--out", tmp_path / "run"], 2, "sha256", tmp_path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path, image_folder):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": Evil()}))
    if os.path.exists("/tmp/edgetransfer-pwned"):
        os.remove("/tmp/edgetransfer-pwned")
    run_bad(
        ["finetune", "--data", image_folder, "--out", tmp_path / "run", "--weights", evil],
        2,
        "weights_only=True",
        tmp_path,
    )
    assert not os.path.exists("/tmp/edgetransfer-pwned"), "the pickle's code ran"


@pytest.mark.parametrize("version", [0, 99])
def test_a_run_from_another_card_schema(trained_run, tmp_path, version):
    shutil.copytree(trained_run.path, tmp_path / "run")
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    (tmp_path / "run" / "card.json").write_text(json.dumps({**card, "schema_version": version}))
    for command in ("export", "bench"):
        run_bad([command, tmp_path / "run"], 2, f"schema_version {version}", tmp_path)


def test_an_unfinished_run_names_resume(trained_run, tmp_path):
    shutil.copytree(trained_run.path, tmp_path / "run")
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    (tmp_path / "run" / "card.json").write_text(json.dumps({**card, "complete": {"finetune": False}}))
    for command in ("export", "bench"):
        run_bad([command, tmp_path / "run"], 2, "--resume", tmp_path)


def test_export_without_a_checkpoint(trained_run, tmp_path):
    shutil.copytree(trained_run.path, tmp_path / "run")
    (tmp_path / "run" / "model.safetensors").unlink()
    run_bad(["export", tmp_path / "run"], 2, "no checkpoint", tmp_path)


def test_a_run_in_use_says_who_holds_it(trained_run, tmp_path):
    import subprocess
    import sys

    shutil.copytree(trained_run.path, tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from edgetransfer.rundir import RunDir\n"
            "with RunDir(sys.argv[1]).lock('finetune'):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        run_bad(["export", tmp_path / "run"], 2, "in use by 'edgetransfer finetune'", tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()

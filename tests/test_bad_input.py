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
    return lines[0]


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
    said = run_bad(["finetune", "--data", image_folder, "--out", tmp_path / "run", "--weights", evil], 2, "", tmp_path)
    assert "weights_only` set to `False`" not in said and "holds objects other than tensors" in said  # torch's advice
    notes = tmp_path / "notes.txt"  # not weights at all: said so, not torch's KeyError or unpickling text
    notes.write_text("hello")
    run_bad(["finetune", "--data", image_folder, "--out", tmp_path / "run", "--weights", notes], 2,
            f"{notes} is not a PyTorch weights file", tmp_path)  # fmt: skip
    from edgetransfer.backbones import _load_state_file

    named_pth = tmp_path / "weights.pth"  # safetensors under another name: read as what it is
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(named_pth))
    assert _load_state_file(named_pth)["w"].tolist() == [1.0, 1.0]


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
        # a second finetune on it, without --overwrite: in use too (it said "pass --overwrite", which then said "in
        # use"; a new user's trial)
        again = ["finetune", "--data", "digits", "--out", tmp_path / "run"]
        run_bad(again, 2, "in use by 'edgetransfer finetune'", tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- issue 19: never delete what is not
# ours, never a wrong number with exit 0, every option checked before the work


@pytest.mark.parametrize("where", ["data", "parent"])
def test_overwrite_never_deletes_the_data(tmp_path, where):
    parent = tmp_path / "project"
    data = make_folder(parent / "images")
    (parent / "notes.txt").write_text("unrelated")
    out = data if where == "data" else parent
    run_bad(
        ["finetune", "--data", data, "--out", out, "--overwrite", "--size", 32],
        2,
        "would replace its own input",
        tmp_path,
    )
    assert (parent / "notes.txt").read_text() == "unrelated" and len(list(data.rglob("*.png"))) == 36


def test_overwrite_replaces_only_a_run(tmp_path, image_folder):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("years of work")
    run_bad(["finetune", "--data", image_folder, "--out", other, "--overwrite"], 2, "only a run directory", tmp_path)
    assert (other / "chapter1.tex").read_text() == "years of work"


def test_out_inside_the_data_is_refused(tmp_path, image_folder):
    run_bad(["finetune", "--data", image_folder, "--out", image_folder / "run"], 2, "inside --data", tmp_path)


def test_out_at_the_filesystem_root_writes_nothing_there(tmp_path, image_folder):
    before = {p.name for p in __import__("pathlib").Path("/").iterdir()}
    run_bad(["finetune", "--data", image_folder, "--out", "/"], 2, "--out / is /", tmp_path)
    assert {p.name for p in __import__("pathlib").Path("/").iterdir()} == before


def test_out_that_is_a_file(tmp_path, image_folder):
    (tmp_path / "run").write_text("a file")
    run_bad(["finetune", "--data", image_folder, "--out", tmp_path / "run"], 2, "is a file", tmp_path)


BAD_OPTIONS = {
    ("--weight-decay", "nan"): "--weight-decay: expected a finite number, got nan",
    ("--lr", "inf"): "--lr: expected a finite number",
    ("--time-budget", "inf"): "--time-budget 'inf': expected a duration like 2h, 30m, 90s or 1h30m",
    ("--time-budget", "0s"): "--time-budget: expected > 0, got 0.0",
    ("--label-smoothing", "5"): "--label-smoothing: expected < 1, got 5.0",
    ("--warmup", "1.5"): "--warmup: expected < 1, got 1.5",
    ("--workers", "-1"): "--workers: expected >= 0, got -1",
    ("--size", "100000"): "--size: expected <= 1024, got 100000",
    ("--batch-size", "1"): "--batch-size: expected >= 2, got 1",
    ("--epochs", "0"): "--epochs: expected >= 1, got 0",
    ("--pseudo-rounds", "0"): "--pseudo-rounds: expected >= 1, got 0",
    ("--unfreeze", "1000", "--strategy", "partial"): "--unfreeze 1000: mobilenet_v2 has 19 blocks",
    ("--unfreeze", "0", "--strategy", "partial"): "--unfreeze 0 with --strategy partial trains no block",
}


@pytest.mark.parametrize("option", BAD_OPTIONS, ids=lambda o: f"{o[0]}={o[1]}")
def test_finetune_options_are_checked_before_the_work(tmp_path, image_folder, option):
    run_bad(["finetune", "--data", image_folder, "--out", tmp_path / "run", *option], 2, BAD_OPTIONS[option], tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_recipe_value_of_the_wrong_type(tmp_path, image_folder):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('epochs = "five"\n')
    run_bad(
        ["finetune", "--data", image_folder, "--out", tmp_path / "run", "--config", recipe],
        2,
        "recipe.toml: epochs: expected a whole number, got 'five'",
        tmp_path,
    )


def test_a_folder_layout_without_test_images(tmp_path):
    """train/ + val/ holds test images out of train (as it does validation images without val/); where train/ has
    too few to spare one per class, it is refused before the work."""
    data = tmp_path / "data"
    make_folder(data / "train", per_class=1, seed=0)
    make_folder(data / "val", per_class=4, seed=1)  # other images (copies of train in val/ are said)
    run_bad(["finetune", "--data", data, "--out", tmp_path / "run"], 2, "has no test images", tmp_path)


def test_one_adaptation_image_is_refused_before_training(tmp_path, image_folder):
    one = tmp_path / "target"
    one.mkdir()
    shutil.copy(image_folder / "class0" / "000.png", one)
    args = ["finetune", "--data", image_folder, "--out", tmp_path / "run", "--size", 32, "--adapt-bn", one]
    run_bad(args, 2, "has 1 image; BatchNorm statistics need at least 2", tmp_path)
    (tmp_path / "empty").mkdir()  # "error: .../empty has no images" named no option (a new user's finding)
    args = ["finetune", "--data", image_folder, "--out", tmp_path / "run", "--size", 32, "--unlabeled"]
    said = run_bad([*args, tmp_path / "empty"], 2, "error: --unlabeled: ", tmp_path)
    assert "empty" in said and "no images" in said


@pytest.mark.parametrize("count", [3, 5, 65])
def test_adabn_never_feeds_batchnorm_one_image(count):
    """An odd last batch (65 images in batches of 64, 3 in batches of 2) crashed BatchNorm in train mode."""
    import torch

    from edgetransfer.adapt import adapt_bn
    from edgetransfer.data import Sample, default_preprocessing

    seen = []
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.BatchNorm2d(4))
    model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    folder = make_folder(__import__("pathlib").Path(__import__("tempfile").mkdtemp()), per_class=count, classes=1)
    samples = tuple(Sample(p, -1) for p in sorted(folder.rglob("*.png")))
    adapt_bn(model, samples, default_preprocessing(32), "cpu", batch_size=64 if count == 65 else 2)
    assert sum(seen) == count and min(seen) >= 2, seen
    shutil.rmtree(folder)


def test_truncated_weights_file(tmp_path, image_folder, trained_run):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(trained_run.file("model.safetensors").read_bytes()[:3000])
    args = ["finetune", "--data", image_folder, "--out", tmp_path / "run", "--weights", cut]
    run_bad(args, 2, "truncated or not a safetensors file", tmp_path)


def _tampered_checkpoint(trained_run, tmp_path, how):
    """A copy of the shared run whose checkpoint is truncated, swapped, or NaN (truncated and NaN with the card's
    sha256 updated to match, as a run damaged before the card recorded it)."""
    from safetensors.torch import load_file, save_file

    from edgetransfer.rundir import sha256_file

    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    checkpoint = run / "model.safetensors"
    if how == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
    else:
        state = load_file(checkpoint)
        name = next(k for k in state if k.endswith("weight"))
        state[name] = state[name] * (float("nan") if how == "nan" else 2.0)
        save_file(state, str(checkpoint))
    if how != "swapped":
        card = json.loads((run / "card.json").read_text())
        card["artifacts"]["model.safetensors"]["sha256"] = sha256_file(checkpoint)
        (run / "card.json").write_text(json.dumps(card))
    return run


TAMPERED = {
    "truncated": "truncated or not a safetensors file",
    "swapped": "does not match the sha256 recorded",
    "nan": "holds NaN or infinite weights",
}


@pytest.mark.parametrize("how", TAMPERED)
def test_export_refuses_a_bad_checkpoint(trained_run, tmp_path, how):
    run = _tampered_checkpoint(trained_run, tmp_path, how)
    run_bad(["export", run], 2, TAMPERED[how], tmp_path)


def test_a_nan_parity_is_a_failure_not_zero():
    import numpy as np

    from edgetransfer.data import Sample, default_preprocessing
    from edgetransfer.errors import ExportError
    from edgetransfer.evaluation import parity

    class Fixed:
        def __init__(self, value):
            self.value = value

        def run(self, images):
            return np.full((len(images), 3), self.value, dtype=np.float32)

    folder = make_folder(__import__("pathlib").Path(__import__("tempfile").mkdtemp()), per_class=2, classes=1)
    samples = tuple(Sample(p, 0) for p in sorted(folder.rglob("*.png")))
    assert parity(Fixed(1.0), Fixed(1.0), samples, default_preprocessing(32))["max_abs_diff"] == 0.0
    with pytest.raises(ExportError, match="NaN or infinite"):
        parity(Fixed(1.0), Fixed(float("nan")), samples, default_preprocessing(32))
    shutil.rmtree(folder)


def test_weights_that_turn_nan_stop_training(tmp_path, image_folder, monkeypatch):
    """A BatchNorm statistic that turns NaN leaves the loss finite (train mode uses batch statistics); the check at
    the end of the epoch stops the run instead of saving a NaN model as 'best'."""
    import torch

    from edgetransfer.finetune import FinetuneConfig, TrainingDiverged, finetune

    step = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan")) if p.dim() == 1 and p.shape[0] == 3 else None  # the head's bias
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="NaN or infinite at epoch 1"):
        finetune(FinetuneConfig(data=str(image_folder), out=str(out), size=32, epochs=1, batch_size=16))
    assert not (out / "model.safetensors").exists(), "a NaN model is never saved as the best checkpoint"


def test_unwritable_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETRANSFER_DATA", "/dev/null/cache")
    run_bad(["finetune", "--data", "digits", "--out", tmp_path / "run"], 2, "cannot write /dev/null/cache", tmp_path)


def test_the_run_owns_its_split(trained_run, tmp_path):
    """Images added to the data folder after training change nothing (export and bench read the run's own files);
    a test image that was deleted or changed is exit 2 naming it."""
    from edgetransfer.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    data = tmp_path / "images"
    shutil.copytree(trained_run.load_card().dataset["path"], data)
    for i in range(5):
        shutil.copy(data / "class0" / "000.png", data / "class0" / f"new{i}.png")
    card = RunDir(run).load_card()
    splits = RunDir(run).load_splits(card, data)
    assert splits.sizes() == card.dataset["sizes"] and not any("new" in s.path.name for s in splits.train)
    victim = splits.test[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    run_bad(["export", run, "--data", data], 2, f"{victim} changed since the run was trained", tmp_path)
    victim.unlink()
    run_bad(["export", run, "--data", data], 2, f"{victim} is missing: the run's test split names it", tmp_path)


def test_a_changed_training_image_stops_export_not_bench(trained_run, tmp_path):
    """bench reads the run's test split only: a training image changed since does not stop it (export, which
    calibrates on training images, still refuses)."""
    from edgetransfer.errors import DataError
    from edgetransfer.rundir import RunDir

    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    data = tmp_path / "images"
    shutil.copytree(trained_run.load_card().dataset["path"], data)
    card = RunDir(run).load_card()
    splits = RunDir(run).load_splits(card, data)
    victim = splits.train[0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(DataError, match="changed since the run was trained \\(its train split\\)"):
        RunDir(run).load_splits(card, data)
    test_only = RunDir(run).load_splits(card, data, only=("test",))
    assert test_only.test == splits.test and not test_only.train and not test_only.val


@pytest.mark.parametrize(
    "option", [("--atol", "nan"), ("--atol", "0"), ("--max-drop", "nan"), ("--max-drop", "-1"), ("--calib-size", "0")]
)
def test_export_options_are_checked_before_the_work(trained_run, tmp_path, option):
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    run_bad(["export", run, *option], 2, f"{option[0]} must be", tmp_path)


@pytest.mark.parametrize(
    "out, fragment",
    [("", "--out is empty"), ("afile/run", "afile is a file, not a folder"), ("/proc/run", "cannot write /proc")],
)
def test_out_where_no_folder_can_be_made(tmp_path, image_folder, monkeypatch, out, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    run_bad(["finetune", "--data", image_folder, "--out", out, "--size", 32], 2, fragment, tmp_path)


def test_bench_checks_its_output_folder_and_relative_to_before_measuring(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    run_bad(["bench", run, "--out", "/proc/reports"], 2, "--out /proc/reports: cannot write in /proc", tmp_path)
    # the filesystem's root (writable as root): four report files at the top of it, said instead
    run_bad(
        ["bench", run, "--out", "/"], 2, "--out / is the filesystem's root; name a folder for the reports", tmp_path
    )
    run_bad(["bench", run, "--relative-to", "foo:fp32"], 2, "--relative-to foo:fp32 names no model", tmp_path)
    run_bad(["bench", run, "--backends", ""], 2, "--backends is empty", tmp_path)
    # another run as --out: its reports were replaced by this run's, without a word (a new user's trial)
    other = tmp_path / "other"
    shutil.copytree(trained_run.path, other)
    run_bad(["bench", run, "--out", other], 2, f"--out {other} is another run (it holds a card.json)", tmp_path)
    # a folder holding a user's own bench.md (no bench.json of bench's beside it): it was replaced unsaid
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "bench.md").write_text("# my bench notes\n")
    run_bad(["bench", run, "--out", notes], 2, f"--out {notes} holds bench.md that bench did not write", tmp_path)
    assert (notes / "bench.md").read_text() == "# my bench notes\n" and not (notes / "bench.json").exists()


def test_export_with_another_folder_and_a_file_for_calibration(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    other = make_folder(tmp_path / "other", classes=2)
    for name in ("class0", "class1"):  # another labelled folder: other class names
        (other / name).rename(other / f"cat-{name}")
    said = run_bad(["export", run, "--data", other], 2, "is not the folder the run was trained on", tmp_path)
    assert "'edgetransfer bench --data'" in said  # where to go instead
    same_names = make_folder(tmp_path / "same", classes=3, seed=9)  # the run's class names, other images
    said = run_bad(["export", run, "--data", same_names], 2, "is not the folder the run was trained on", tmp_path)
    assert "none of the run's" in said and "'edgetransfer bench --data'" in said  # not "X is missing: restore it"
    # a --data that does not exist is named as the user's, not as "the run's data folder ... is gone"
    run_bad(
        ["export", run, "--data", tmp_path / "nosuch"], 2, f"--data {tmp_path / 'nosuch'}: folder not found", tmp_path
    )
    (tmp_path / "afile").write_text("x")
    run_bad(["export", run, "--calib", tmp_path / "afile"], 2, "is a file; give a folder of images", tmp_path)


def test_a_calibration_folder_with_a_bad_file_is_refused_or_skipped_with_skip_bad(trained_run, tmp_path):
    """The folder finetune --skip-bad accepted was refused by export --calib with no way past it but to edit it."""
    import json

    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    calib = make_folder(tmp_path / "calib", per_class=3, seed=9)
    (calib / "class0" / "empty.png").write_bytes(b"")
    args = ["export", run, "--calib", calib, "--no-openvino", "--int8-method", "static", "--calib-size", 8]
    said = run_bad(args, 2, "1 bad file(s) in", tmp_path)
    assert "class0/empty.png (empty file)" in said and said.endswith("or pass --skip-bad to calibrate on the rest")
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--skip-bad"]])
    assert result.exit_code == 0, result.output
    assert "note: skipped 1 bad file(s) in" in " ".join(result.stderr.split())
    card = json.loads((run / "card.json").read_text())
    assert card["artifacts"]["model.int8.onnx"]["quantization"]["calibration_images"] == 8
    assert "class0/empty.png (empty file)" in " ".join(result.stderr.split())  # what was skipped, and why
    assert card["export"]["config"]["int8"]["skip_bad"] is True
    assert card["export"]["calibration_skipped_bad_files"] == ["class0/empty.png (empty file)"]  # recorded too
    nothing = tmp_path / "bad-only"
    nothing.mkdir()
    (nothing / "empty.png").write_bytes(b"")
    said = run_bad([*args[:3], nothing, *args[4:], "--skip-bad"], 2, "has no images that can be read", tmp_path)
    assert "(skipped: empty.png (empty file))" in said
    # without --calib it does nothing: said, and not recorded as if it had been used
    result = CliRunner().invoke(app, [str(a) for a in ["export", run, "--no-openvino", "--no-int8", "--skip-bad"]])
    assert result.exit_code == 0 and "--skip-bad not used" in result.stderr
    assert json.loads((run / "card.json").read_text())["export"]["config"]["int8"]["skip_bad"] is False
    assert "calibration_skipped_bad_files" not in json.loads((run / "card.json").read_text())["export"]


def test_predict_needs_at_least_one_class_and_image_per_call(trained_run, tmp_path):
    image = next(iter(sorted(__import__("pathlib").Path(trained_run.load_card().dataset["path"]).rglob("*.png"))))
    for option in ("--top-k", "--batch-size"):
        run_bad(["predict", trained_run.file("model.onnx"), image, option, 0], 2, "must be at least 1", tmp_path)


def test_a_file_or_a_runs_openvino_folder_where_a_run_or_model_is_expected(trained_run, tmp_path):
    """A new user's findings: explain on an image said 'run directory not found' (it exists: it is a file), and
    predict on a run's openvino/ folder looked for openvino/model.onnx without pointing to the IR there."""
    image = tmp_path / "image.png"
    image.write_bytes(b"x")
    run_bad(["explain", image], 2, f"{image} is a file, not a run directory", tmp_path)
    run_bad(["bench", image], 2, f"{image} is a file, not a run directory", tmp_path)
    model = trained_run.file("model.onnx")  # a run's model file: the run is its folder; predict takes the file
    said = f"{model} is a file, not a run directory: give the folder that holds it, {trained_run.path}; 'edgetransfer"
    run_bad(["bench", model], 2, said, tmp_path)
    run_bad(
        ["explain", trained_run.file("card.json")], 2, f"give the folder that holds it, {trained_run.path}", tmp_path
    )
    openvino = trained_run.path / "openvino"
    run_bad(["predict", openvino, image], 2, f"holds an OpenVINO IR: pass {openvino / 'model.xml'}", tmp_path)

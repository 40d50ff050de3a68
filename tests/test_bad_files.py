"""Issue 14: inputs that arrive in a file (a recipe, a profile, a baseline, a card in card.json or inside a model file,
an image or a labels file that is a FIFO or a device) through every command: one line, exit 2, nothing written.
And long read-only runs: predict on a folder goes batch by batch and Ctrl-C stops it with exit 130 and one line.

``FILE_CASES`` is shared with benchmarks/bad_input_matrix.py (the rows marked #14)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_bad_input import run_bad, snapshot
from test_hostile_bench import FAST, a_baseline, edit_json, tamper_onnx
from typer.testing import CliRunner

from edgetransfer.cli import app


def _copy(run: Path, tmp: Path) -> Path:
    """A fresh copy of the run to tamper with."""
    folder = tmp / f"run-{len(list(tmp.glob('run-*')))}"
    return Path(shutil.copytree(run, folder))


def _write(tmp: Path, name: str, text: str) -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _fifo(tmp: Path, name: str) -> Path:
    path = tmp / name
    os.mkfifo(path)
    return path


def _recipe(text):
    return lambda tmp, run, image, data: [
        "finetune", "--data", data, "--out", tmp / "x", "--config", _write(tmp, "recipe.toml", text)
    ]  # fmt: skip


def _profile(text):
    return lambda tmp, run, image, data: ["bench", _copy(run, tmp), *FAST, "--profile", _write(tmp, "mine.toml", text)]


def _baseline(change):
    return lambda tmp, run, image, data: ["bench", _copy(run, tmp), *FAST, "--baseline", a_baseline(tmp, change)]


def _latency(doc):
    return doc["results"][0]["latency"][0]


def _card(command, change):
    def build(tmp, run, image, data):
        copy = _copy(run, tmp)
        edit_json(copy / "card.json", change)
        return [command, copy, *(FAST if command == "bench" else [])]

    return build


def _onnx_card(change):
    def build(tmp, run, image, data):
        return ["predict", tamper_onnx(run / "model.onnx", change, tmp / "m.onnx"), image]

    return build


def _junk(card):
    card["training"]["junk"] = "x" * 1_100_000


def _targets(text):
    def build(tmp, run, image, data):
        targets = _write(tmp, "targets.toml", text) if text is not None else _fifo(tmp, "targets.toml")
        return ["bench", _copy(run, tmp), *FAST, "--on", "pi", "--targets", targets]

    return build


TARGET = '[[target]]\nname = "pi"\nhost = "192.168.1.5"\n'

# label -> (how to build the command line from (tmp, run, image, data), a fragment of the one error line)
FILE_CASES = {
    "recipe: unknown key": (_recipe("epochz = 3\n"), "recipe.toml: unknown key 'epochz'; did you mean 'epochs'?"),
    "recipe: NaN": (_recipe("lr = nan\n"), "recipe.toml: lr: expected a finite number, got nan"),
    "recipe: true for a number": (_recipe("lr = true\n"), "recipe.toml: lr: expected a number, got true"),
    "recipe: a million samples a batch": (_recipe("batch_size = 1000000\n"), "batch_size: expected <= 4096"),
    "recipe: unknown strategy": (_recipe('strategy = "partail"\n'), "strategy: expected 'auto', 'two-phase', 'full'"),
    "recipe: negative seed in [finetune]": (_recipe("[finetune]\nseed = -1\n"), "seed: expected >= 0, got -1"),
    "recipe: a FIFO": (
        lambda tmp, run, image, data: ["finetune", "--data", data, "--config", _fifo(tmp, "r.toml")],
        "r.toml is not a regular file",
    ),
    "recipe: /dev/zero": (
        lambda tmp, run, image, data: ["finetune", "--data", data, "--config", "/dev/zero"],
        "recipe /dev/zero is not a regular file",
    ),
    "recipe: 2 MB": (_recipe("#" * 2_000_000), "recipe.toml is 2,000,000 bytes (expected at most 1,000,000)"),
    "finetune --seed -1": (
        lambda tmp, run, image, data: ["finetune", "--data", data, "--out", tmp / "x", "--seed", "-1"],
        "--seed: expected >= 0, got -1",
    ),
    "pipeline --epochs 0": (
        lambda tmp, run, image, data: ["pipeline", "--data", data, "--out", tmp / "x", "--epochs", "0"],
        "--epochs: expected >= 1, got 0",
    ),
    "pipeline --size 8": (
        lambda tmp, run, image, data: ["pipeline", "--data", data, "--out", tmp / "x", "--size", "8"],
        "--size: expected >= 32, got 8",
    ),
    "card.json: misspelt key": (
        _card("export", lambda c: c.update(lables=c["labels"])),
        "card.json: unknown key 'lables'; did you mean 'labels'?",
    ),
    "card.json: labels a string": (
        _card("export", lambda c: c.update(labels="a,b,c")),
        "card.json: labels: expected a list, got 'a,b,c'",
    ),
    "card.json: resize 100000": (
        _card("export", lambda c: c["preprocessing"].update(resize=100000)),
        "card.json: preprocessing.resize: expected <= 4096, got 100000",
    ),
    "card.json: over 1 MB": (_card("export", _junk), "characters (expected a card of at most 1,000,000)"),
    "card.json: a label twice": (
        _card("bench", lambda c: c.update(labels=[c["labels"][0]] * len(c["labels"]))),
        "card.json: labels: expected distinct names",
    ),
    "card.json: NaN mean": (
        _card("bench", lambda c: c["preprocessing"].update(mean=[float("nan"), 0.4, 0.4])),
        "card.json: preprocessing.mean[0]: expected a finite number, got nan",
    ),
    "profile: misspelt budget": (
        _profile("[budget]\np99ms = 5\n"),
        "unknown key 'budget.p99ms'; did you mean 'p99_ms'?",
    ),
    "profile: a string for threads": (
        _profile('[settings]\nthreads = "4"\n'),
        "mine.toml: settings.threads: expected a whole number, got '4'",
    ),
    "profile: negative budget": (_profile("[budget]\np50_ms = -1\n"), "budget.p50_ms: expected >= 0, got -1"),
    "profile: NaN budget": (_profile("[budget]\np50_ms = nan\n"), "budget.p50_ms: expected a finite number, got nan"),
    "profile: 2 million rounds": (_profile("[settings]\nrounds = 2000000\n"), "settings.rounds: expected <= 1000"),
    "profile: a FIFO": (
        lambda tmp, run, image, data: ["bench", _copy(run, tmp), *FAST, "--profile", _fifo(tmp, "p.toml")],
        "p.toml is not a regular file",
    ),
    "baseline: misspelt latency key": (
        _baseline(lambda d: _latency(d).update(p50ms=1.0)),
        "unknown key 'results[0].latency[0].p50ms'; did you mean 'p50_ms'?",
    ),
    "baseline: a string for runs": (
        _baseline(lambda d: _latency(d).update(runs="many")),
        "results[0].latency[0].runs: expected a whole number, got 'many'",
    ),
    "baseline: negative model size": (
        _baseline(lambda d: d["results"][0].update(model_bytes=-1)),
        "results[0].model_bytes: expected >= 0, got -1",
    ),
    "baseline: a million batch sizes": (
        _baseline(lambda d: d["settings"].update(batches=list(range(1, 1_000_001)))),
        "settings.batches: expected at most 64 item(s), got a list of 1000000 items",
    ),
    "baseline: /dev/zero": (
        lambda tmp, run, image, data: ["bench", _copy(run, tmp), *FAST, "--baseline", "/dev/zero"],
        "baseline file /dev/zero is not a regular file",
    ),
    "image: a FIFO": (
        lambda tmp, run, image, data: ["predict", run / "model.onnx", _fifo(tmp, "frame.png")],
        "frame.png is a FIFO, device or socket, not a regular file",
    ),
    "image: /dev/zero": (
        lambda tmp, run, image, data: ["predict", run / "model.onnx", "/dev/zero"],
        "/dev/zero is a FIFO, device or socket, not a regular file",
    ),
    "--labels a FIFO": (
        lambda tmp, run, image, data: ["predict", run / "model.onnx", image, "--labels", _fifo(tmp, "labels.txt")],
        "--labels file",
    ),
    "ONNX card: misspelt key": (
        _onnx_card(lambda c: c["preprocessing"].update(colour="RGB")),
        "m.onnx: unknown key 'preprocessing.colour'; did you mean 'color'?",
    ),
    "ONNX card: a 300-character label": (
        _onnx_card(lambda c: c["labels"].__setitem__(0, "x" * 300)),
        "m.onnx: labels[0]: expected at most 200 characters",
    ),
    "ONNX card: over 1 MB": (_onnx_card(_junk), "characters (expected a card of at most 1,000,000)"),
    "ONNX card: a number for the backbone": (
        _onnx_card(lambda c: c.update(backbone=3)),
        "m.onnx: backbone: expected a string, got 3",
    ),
    "targets.toml: misspelt key": (_targets(TARGET + "prot = 2222\n"), "did you mean 'port'?"),
    "targets.toml: port 70000": (_targets(TARGET + "port = 70000\n"), "target[0].port: expected <= 65535, got 70000"),
    "targets.toml: a string for threads": (_targets(TARGET + 'threads = "4"\n'), "target[0].threads: expected a whole"),
    "targets.toml: a FIFO": (_targets(None), "targets.toml is not a regular file"),
}


@pytest.fixture(scope="module")
def image(tmp_path_factory, trained_run):
    return sorted(Path(trained_run.load_card().dataset["path"]).rglob("*.png"))[0]


@pytest.mark.parametrize("case", FILE_CASES)
def test_a_bad_file_is_one_line_and_exit_2(trained_run, tmp_path, image, case):
    build, fragment = FILE_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    data = Path(trained_run.load_card().dataset["path"])
    args = build(work, trained_run.path, image, data)
    run_bad(args, 2, fragment, tmp_path)
    assert not (work / "x").exists()


def test_predict_on_a_folder_goes_batch_by_batch(trained_run, tmp_path, image, monkeypatch):
    from edgetransfer.runtime import Classifier

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(37):
        shutil.copy(image, folder / f"{i:03d}.png")
    os.mkfifo(folder / "not-an-image.png")  # skipped: only regular files are images
    sizes = []
    original = Classifier.predict

    def counted(self, images, *, top_k=5):
        sizes.append(len(images))
        return original(self, images, top_k=top_k)

    monkeypatch.setattr(Classifier, "predict", counted)
    result = CliRunner().invoke(app, ["predict", str(trained_run.file("model.onnx")), str(folder), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert sizes == [8, 8, 8, 8, 5] and len(result.stdout.splitlines()) == 37


def test_a_top_k_above_the_class_count_is_said_and_the_default_is_not(trained_run, image):
    model = str(trained_run.file("model.onnx"))  # three classes
    asked = CliRunner().invoke(app, ["predict", model, str(image), "--top-k", "10", "--json"])
    assert asked.exit_code == 0, asked.output
    assert len(json.loads(asked.stdout)["results"][0]["top_k"]) == 3
    assert "note: --top-k 10: the model has 3 classes; each image lists all of them" in asked.stderr
    default = CliRunner().invoke(app, ["predict", model, str(image)])
    assert default.exit_code == 0 and "--top-k" not in default.stderr, default.output
    exact = CliRunner().invoke(app, ["predict", model, str(image), "--top-k", "3"])
    assert exact.exit_code == 0 and "--top-k" not in exact.stderr, exact.output


def test_ctrl_c_during_predict_is_exit_130_and_one_line(trained_run, tmp_path, image, monkeypatch):
    from edgetransfer.runtime import Classifier

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(20):
        shutil.copy(image, folder / f"{i:03d}.png")
    original, calls = Classifier.predict, []

    def interrupted(self, images, *, top_k=5):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, images, top_k=top_k)

    monkeypatch.setattr(Classifier, "predict", interrupted)
    before = snapshot(tmp_path)
    args = ["predict", str(trained_run.file("model.onnx")), str(folder), "--batch-size", "4", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "interrupted; nothing half-written was kept"
    ]
    assert result.stdout == "" and snapshot(tmp_path) == before  # --json prints the whole document or nothing


def test_the_labels_file_and_cards_still_give_way_to_the_options(trained_run, tmp_path, image):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    model = tamper_onnx(
        trained_run.file("model.onnx"), lambda c: c["labels"].__setitem__(0, "x" * 300), tmp_path / "m.onnx"
    )
    fixed = CliRunner().invoke(app, ["predict", str(model), str(image), "--labels", str(labels)])
    assert fixed.exit_code == 0 and fixed.stdout.split()[1] in {"a", "b", "c"}, fixed.output
    # Windows Notepad's file: a byte-order mark and CRLF (the mark stayed in the first label: '\ufeffa')
    labels.write_bytes(b"\xef\xbb\xbfa\r\nb\r\nc\r\n")
    from edgetransfer.cli.predict import _labels

    assert _labels(str(labels)) == ("a", "b", "c")
    card = json.loads(trained_run.file("card.json").read_text())
    assert len(card["labels"]) == 3

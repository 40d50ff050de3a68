"""Print the bad-input matrix (input x command -> exit code, the one-line message) as a Markdown table, by running
the CLI on each bad input that tests/test_bad_input.py builds (the tests assert the same; this shows it).

    .venv/bin/python benchmarks/bad_input_matrix.py > benchmarks/results/bad_input_matrix.md
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("EDGETRANSFER_OFFLINE", "1")

from conftest import make_folder  # noqa: E402
from test_bad_files import FILE_CASES  # noqa: E402
from test_bad_input import BAD_OPTIONS, DATA_CASES, TAMPERED, Evil, _tampered_checkpoint, build_data  # noqa: E402
from test_hostile_bench import (  # noqa: E402
    BAD_BASELINES,
    BAD_CARDS,
    FAST,
    a_baseline,
    edit_json,
    nan_model,
    record_sha256,
    tamper_onnx,
)
from typer.testing import CliRunner  # noqa: E402

from edgetransfer.cli import app  # noqa: E402


def row(label: str, args: list, new: str = "") -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else result.stdout.strip().splitlines()[-1]
    command = args[0]
    return f"| {label} | {command} | {result.exit_code} | {message.replace('|', '/')} | {new} |"


def hostile_rows(tmp: Path, good: Path, run) -> list[str]:
    """The cases of issue 19: never delete what is not ours, never a wrong number with exit 0."""
    new = "#19"
    rows = []
    project = tmp / "project"
    shutil.copytree(good, project / "images")
    (project / "notes.txt").write_text("unrelated")
    for label, out in (("--out is the data folder", project / "images"), ("--out is the data's parent", project)):
        rows.append(
            row(f"{label}, --overwrite", ["finetune", "--data", project / "images", "--out", out, "--overwrite"], new)
        )
    other = tmp / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("years of work")
    rows.append(
        row(
            "--overwrite on a folder that is not a run",
            ["finetune", "--data", good, "--out", other, "--overwrite"],
            new,
        )
    )
    rows.append(row("--out inside the data folder", ["finetune", "--data", good, "--out", good / "run"], new))
    rows.append(row("--out /", ["finetune", "--data", good, "--out", "/"], new))
    for option in BAD_OPTIONS:
        rows.append(row(" ".join(option), ["finetune", "--data", good, "--out", tmp / "x", *option], new))
    recipe = tmp / "recipe.toml"
    recipe.write_text('epochs = "five"\n')
    rows.append(
        row(
            "recipe: a string where a number belongs",
            ["finetune", "--data", good, "--out", tmp / "x", "--config", recipe],
            new,
        )
    )
    one = tmp / "one-target"
    one.mkdir()
    shutil.copy(good / "class0" / "000.png", one)
    rows.append(
        row("--adapt-bn folder of 1 image", ["finetune", "--data", good, "--out", tmp / "x", "--adapt-bn", one], new)
    )
    cut = tmp / "cut.safetensors"
    cut.write_bytes(run.file("model.safetensors").read_bytes()[:3000])
    rows.append(
        row("truncated --weights file", ["finetune", "--data", good, "--out", tmp / "x", "--weights", cut], new)
    )
    for how in TAMPERED:
        where = tmp / f"tampered-{how}"
        where.mkdir()
        rows.append(row(f"checkpoint {how}", ["export", _tampered_checkpoint(run, where, how)], new))
    for option, value in (("--atol", "nan"), ("--max-drop", "nan"), ("--calib-size", "0")):
        rows.append(row(f"export {option} {value}", ["export", run.path, option, value], new))
    changed = tmp / "changed"  # images added to the folder change nothing; the run's own files must be intact
    shutil.copytree(good, changed)
    victim = changed / run.load_splits(run.load_card()).test[0].path.relative_to(good)
    victim.write_bytes(victim.read_bytes() + b"\0")
    rows.append(row("a test image changed since training", ["export", run.path, "--data", changed], new))
    victim.unlink()
    rows.append(row("a test image deleted since training", ["export", run.path, "--data", changed], new))
    os.environ["EDGETRANSFER_DATA"], saved = "/dev/null/cache", os.environ.get("EDGETRANSFER_DATA")
    try:
        rows.append(row("unwritable EDGETRANSFER_DATA", ["finetune", "--data", "digits", "--out", tmp / "x"], new))
    finally:
        if saved is None:
            del os.environ["EDGETRANSFER_DATA"]
        else:
            os.environ["EDGETRANSFER_DATA"] = saved
    return rows


def hostile_bench_rows(tmp: Path, good: Path, run) -> list[str]:
    """The cases of issue 19 for bench, the gate and predict: one line, exit 2, nothing measured or written."""
    new = "#19"
    rows = []
    image = good / "class0" / "000.png"
    copies = iter(range(1000))

    def copy() -> Path:
        """A fresh copy of the run to tamper with."""
        return Path(shutil.copytree(run.path, tmp / f"bench-run-{next(copies)}"))

    for case in ("nan latency", "zero latency", "negative latency", "huge min_time"):
        folder = tmp / f"baseline-{case.replace(' ', '-')}"
        folder.mkdir()
        baseline = a_baseline(folder, BAD_BASELINES[case][0])
        rows.append(row(f"baseline: {case}", ["bench", run.path, *FAST, "--baseline", baseline], new))
    for spec in ("1..0", "0..4", "-1..4", "1000000000"):
        rows.append(row(f"bench --batch {spec}", ["bench", run.path, *FAST, f"--batch={spec}"], new))
    rows.append(row("bench --min-time 1e9", ["bench", run.path, *FAST, "--min-time", "1e9"], new))
    taken = tmp / "taken.txt"
    taken.write_text("mine")
    rows.append(row("bench --out an existing file", ["bench", run.path, *FAST, "--out", taken], new))
    folder = tmp / "a-folder"
    folder.mkdir()
    rows.append(row("--save-baseline a folder", ["bench", run.path, *FAST, "--save-baseline", folder], new))
    below = taken / "base.json"
    rows.append(row("--save-baseline below a file", ["bench", run.path, *FAST, "--save-baseline", below], new))
    other = copy()
    shutil.copyfile(other / "model.int8.onnx", other / "model.onnx")
    rows.append(row("model.onnx of another run", ["bench", other, *FAST, "--variants", "fp32"], new))
    rows.append(row("model.onnx of another run", ["predict", other / "model.onnx", image], new))
    extra = copy()
    edit_json(extra / "card.json", lambda c: c["labels"].append("extra"))
    rows.append(row("card.json with an extra label", ["bench", extra, *FAST, "--variants", "fp32"], new))
    std = copy()
    edit_json(std / "card.json", lambda c: BAD_CARDS["std 0"][0](c["preprocessing"]))
    rows.append(row("card.json with std 0", ["bench", std, *FAST], new))
    model = tamper_onnx(run.file("model.onnx"), lambda c: c["labels"].append("extra"), tmp / "extra-label.onnx")
    rows.append(row("ONNX card with an extra label", ["predict", model, image], new))
    model = tamper_onnx(run.file("model.onnx"), lambda c: BAD_CARDS["std 0"][0](c["preprocessing"]), tmp / "std-0.onnx")
    rows.append(row("ONNX card with std 0", ["predict", model, image], new))
    for option, value in (("--std", "nan,0.224,0.225"), ("--std", "0.229,0,0.225"), ("--size", "100000")):
        rows.append(row(f"predict {option} {value}", ["predict", run.file("model.onnx"), image, option, value], new))
    broken = copy()
    nan_model(broken / "model.onnx")
    record_sha256(broken, "model.onnx")
    rows.append(row("a NaN model", ["predict", broken / "model.onnx", image], new))
    rows.append(row("a NaN model", ["bench", broken, *FAST, "--variants", "fp32"], new))
    return rows


def file_rows(tmp: Path, good: Path, run) -> list[str]:
    """The cases of issue 14: inputs that arrive in a file (recipes, profiles, baselines, targets, cards in card.json
    and inside model files, FIFOs and devices), each checked by its schema where it is read."""
    rows = []
    image = good / "class0" / "000.png"
    for number, (label, (build, _)) in enumerate(FILE_CASES.items()):
        work = tmp / f"file-case-{number}"
        work.mkdir()
        rows.append(row(label, build(work, run.path, image, good), "#14"))
    return rows


def main() -> None:
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.finetune import FinetuneConfig, finetune
    from edgetransfer.quantize import Int8Config

    rows = ["| input | command | exit | message | new |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in DATA_CASES:
            data = build_data(kind, tmp / f"data-{kind}")
            rows.append(row(f"data folder: {kind}", ["finetune", "--data", data, "--out", tmp / "x", "--size", 32]))
        good = make_folder(tmp / "good")
        evil = tmp / "evil.pth"
        evil.write_bytes(pickle.dumps({"w": Evil()}))
        rows.append(
            row("weights: pickle that runs code", ["finetune", "--data", good, "--out", tmp / "x", "--weights", evil])
        )
        rows.append(row("unknown backbone", ["finetune", "--data", good, "--out", tmp / "x", "--backbone", "vgg99"]))
        run = finetune(FinetuneConfig(data=str(good), out=str(tmp / "run"), size=32, epochs=1, batch_size=8))
        export(run, ExportConfig(int8=Int8Config(calibration_size=8)))
        for version in (0, 99):
            copy = tmp / f"schema{version}"
            shutil.copytree(run.path, copy)
            card = json.loads((copy / "card.json").read_text())
            (copy / "card.json").write_text(json.dumps({**card, "schema_version": version}))
            for command in ("export", "bench"):
                rows.append(row(f"run with card schema {version}", [command, copy]))
        unfinished = tmp / "unfinished"
        shutil.copytree(run.path, unfinished)
        card = json.loads((unfinished / "card.json").read_text())
        (unfinished / "card.json").write_text(json.dumps({**card, "complete": {"finetune": False}}))
        rows.append(row("unfinished run", ["export", unfinished]))
        rows.append(row("missing run", ["bench", tmp / "nope"]))
        rows.append(row("unknown backend", ["bench", run.path, "--backends", "tpu"]))
        rows.append(row("opset too new", ["export", run.path, "--opset", 99]))
        rows.append(row("empty calibration folder", ["export", run.path, "--calib", tmp / "data-empty"]))
        (tmp / "corrupt.onnx").write_bytes(b"garbage")
        rows.append(row("corrupt model file", ["predict", tmp / "corrupt.onnx", good / "class0" / "000.png"]))
        rows.append(row("image that is not an image", ["predict", run.file("model.onnx"), evil]))
        baseline = tmp / "baseline.json"
        baseline.write_text(json.dumps({"schema_version": 1, "results": []}))
        rows.append(row("baseline of another schema", ["bench", run.path, "--baseline", baseline]))
        rows += hostile_rows(tmp, good, run)
        rows += hostile_bench_rows(tmp, good, run)
        rows += file_rows(tmp, good, run)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

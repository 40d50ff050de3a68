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
from test_bad_input import DATA_CASES, Evil, build_data  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgetransfer.cli import app  # noqa: E402


def row(label: str, args: list) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else result.stdout.strip().splitlines()[-1]
    command = args[0]
    return f"| {label} | {command} | {result.exit_code} | {message.replace('|', '/')} |"


def main() -> None:
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.finetune import FinetuneConfig, finetune
    from edgetransfer.quantize import Int8Config

    rows = ["| input | command | exit | message |", "|---|---|---|---|"]
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
    print("\n".join(rows))


if __name__ == "__main__":
    main()

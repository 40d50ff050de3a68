"""The commands as a user runs them, through Typer's CliRunner."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hardware import run_if
from typer.testing import CliRunner

from edgetransfer.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code, fragment):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_finetune_export_bench_end_to_end(image_folder, tmp_path):
    out = tmp_path / "models" / "demo"
    result = invoke("finetune", "--data", image_folder, "--out", out, "--size", 32, "--epochs", 2, "--batch-size", 8)
    assert result.exit_code == 0, result.output
    assert "val top-1" in result.stderr
    card = json.loads((out / "card.json").read_text())
    assert card["labels"] == ["class0", "class1", "class2"] and card["complete"] == {"finetune": True}
    assert len(card["dataset"]["fingerprint"]) == 64 and card["weights"]["sha256"].startswith("b0353104")
    assert card["versions"]["torch"] and (out / "model.safetensors").is_file()

    # 6 validation images: one image is 16.7 points, so the default 1-point budget would judge a single flip;
    # this test is about the flow (the budget itself is tested in test_quantize*.py)
    result = invoke("export", out, "--calib-size", 8, "--max-drop", 20)
    assert result.exit_code == 0, result.output
    for name in (
        "model.onnx",
        "model.int8.onnx",
        "openvino/model.xml",
        "openvino/model.bin",
        "openvino/model.int8.xml",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging leftovers"

    result = invoke("bench", out, "--min-runs", 3, "--min-time", 0, "--warmup", 1)
    assert result.exit_code == 0, result.output
    assert "p99" in result.stdout and "openvino-cpu" in result.stdout
    bench = json.loads((out / "bench.json").read_text())
    assert len(bench["results"]) == 5


def test_unknown_backbone_is_a_usage_error_and_writes_nothing(image_folder, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(
        invoke("finetune", "--data", image_folder, "--backbone", "vgg99", "--out", out), 2, "unknown backbone 'vgg99'"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == [image_folder]


@pytest.mark.parametrize("make", ["missing", "one-class", "corrupt"])
def test_bad_data_is_one_line_and_leaves_no_run(tmp_path, make):
    from conftest import make_folder

    data = tmp_path / "data"
    if make == "one-class":
        make_folder(data, classes=1)
    elif make == "corrupt":
        make_folder(data, classes=2, per_class=3)
        (data / "class0" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "run"
    result = invoke("finetune", "--data", data, "--out", out)
    assert_one_line_error(result, 2, {"missing": "not found", "one-class": "one class", "corrupt": "broken.jpg"}[make])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_existing_out_is_not_clobbered(image_folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(invoke("finetune", "--data", image_folder, "--out", out), 2, "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_export_and_bench_without_a_checkpoint(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "nothing"), 2, "not found")
    assert_one_line_error(invoke("bench", tmp_path), 2, "card.json")


def test_unknown_backend(trained_run):
    assert_one_line_error(invoke("bench", trained_run.path, "--backends", "ort-cpu,quantum"), 2, "quantum")


def test_models_lists_offline_weights():
    result = invoke("models")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if "mobilenet_v2" in line)
    assert "offline" in line
    assert "resnet18" in result.stdout


def test_every_option_has_help():
    import typer.main

    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        for param in sub.params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help"


@pytest.mark.parametrize(
    "command", ["pipeline", "finetune", "export", "bench", "explain", "predict", "models", "search"]
)
def test_help_is_not_cut_on_an_80_column_terminal(command):
    """A word longer than its column was cut with an ellipsis ('DIR/train|val|test/<cla…' in finetune --data)."""
    # COLUMNS only: typer reads TERMINAL_WIDTH once, at import, and would keep 80 for every later test
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0 and "--help" in result.output
    assert "…" not in result.output, [line for line in result.output.splitlines() if "…" in line]
    # an on/off flag takes no value: nothing beside it may read as if it did ('--int8 --no-int8 <bool>')
    assert "<bool>" not in result.output, [line for line in result.output.splitlines() if "<bool>" in line]


@pytest.mark.slow
def test_pipeline_prints_accuracies_and_the_latency_table(image_folder, tmp_path):
    out = tmp_path / "run"
    result = invoke("pipeline", "--data", image_folder, "--out", out, "--size", 32, "--epochs", 1)
    assert result.exit_code == 0, result.output
    for text in (
        "PyTorch (fine-tuned)",
        "ONNX fp32",
        "ONNX int8",
        "p50",
        "p90",
        "p99",
        "torch-cpu",
        "ort-cpu",
        "openvino-cpu",
        "total",
    ):
        assert text in result.stdout, text
    metrics = json.loads((out / "card.json").read_text())["metrics"]
    assert {"torch", "onnx_fp32", "onnx_int8", "openvino_fp32", "openvino_int8"} <= set(metrics)


@run_if(nvidia_gpu=False)
def test_cuda_asked_for_without_a_gpu(image_folder, tmp_path):
    result = invoke("finetune", "--data", image_folder, "--out", tmp_path / "run", "--device", "cuda")
    assert_one_line_error(result, 2, "CUDA")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--opset", "99"], "--opset 99"),
        (["--int8-method", "int4"], "unknown --int8-method"),
        (["--calib-method", "magic"], "calibration method"),
        (["--calib", "/nonexistent/calib"], "not found"),
    ],
)
def test_export_bad_options_are_one_line_and_change_nothing(trained_run, args, fragment):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.path.iterdir()}
    assert_one_line_error(invoke("export", trained_run.path, *args), 2, fragment)
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.path.iterdir()} == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["finetune", "--epochs", "1e3"], "Invalid value for '--epochs'"),
        (["finetune", "--bogus"], "No such option: --bogus"),
        (["export"], "Missing argument 'run'"),
        (["frob"], "No such command 'frob'"),
    ],
)
def test_command_line_mistakes_are_one_line(args, fragment):
    """What the argument parser refuses is one `error:` line and exit 2 from the real entry point, like every other
    user error (the parser's own boxed message is not printed)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edgetransfer", *args], capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], done.stderr


@pytest.mark.parametrize("args", [["finetune", "--lr", "abc"], ["export"], ["finetune", "-h"]])
def test_command_line_mistakes_are_one_line_with_click_installed_too(tmp_path, args):
    """Later typers raise the errors of their own copy of click; click itself is installed beside it by other
    packages (MLflow, the search's tracking extra): the entry point caught click's classes alone, and every mistake
    ended in a traceback, exit 1 (a new user's trial). A stand-in click package, first on the path, makes that
    case here whatever is installed."""
    import os
    import subprocess
    import sys

    import typer

    if not hasattr(typer, "TyperException"):
        pytest.skip("this typer runs on click itself: its errors are click's")
    fake = tmp_path / "click"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "exceptions.py").write_text(
        "class ClickException(Exception):\n    pass\n\n\nclass Abort(RuntimeError):\n    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "edgetransfer", *args], capture_output=True, text=True, timeout=60, env=env
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_printed_without_loading_torch(flag):
    """``edgetransfer --version`` said 'No such option: --version' (exit 2); it prints the installed version and
    exits 0, without importing torch (it must stay as fast as --help)."""
    import subprocess
    import sys
    from importlib.metadata import version

    code = (
        "import sys\nfrom edgetransfer.cli import main\ntry:\n    main()\n"
        "finally:\n    print(sorted({'torch', 'onnxruntime', 'openvino'} & set(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"edgetransfer {version('edgetransfer')}\n"
    assert done.stderr.strip() == "[]"


def test_a_progress_task_without_a_status_renders_on_a_terminal(monkeypatch):
    """Bars are drawn only on a terminal, so a task that lacks the status column's field crashed there alone
    (KeyError: 'status'); every task now has it."""
    import io

    from rich.console import Console

    from edgetransfer import console

    monkeypatch.setattr(console, "err", Console(file=io.StringIO(), force_terminal=True, width=100))
    with console.progress() as bar:
        task = bar.add_task("decoding", total=2)
        bar.update(task, advance=2)
        bar.refresh()
    assert "decoding" in console.err.file.getvalue()


def test_the_entry_point_collects_garbage_less_often_and_freezes_it_before_exit(monkeypatch):
    """The entry point's collector settings (about half a second per command here): the youngest generation is
    collected every GC_GEN0 allocations, and what survives is frozen before the interpreter's exit walks it; the
    command's exit status is unchanged."""
    import gc
    import sys

    from edgetransfer import cli

    before = gc.get_threshold()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "argv", ["edgetransfer", "models"])
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main()
        assert exited.value.code == 0
        assert gc.get_threshold()[0] == cli.GC_GEN0 > before[0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        for signum, handler in handlers.items():  # main() leaves the process to its exit: not this one's
            signal.signal(signum, handler)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("argv", [["models"], ["export", "no-such-run"]])
def test_ctrl_c_while_the_interpreter_exits_ends_it_quietly_with_the_commands_code(tmp_path, signum, argv):
    """A Ctrl-C (or SIGTERM) after the command's work, while the interpreter runs its exit handlers, printed a
    KeyboardInterrupt traceback from whichever handler it hit. Here an exit handler registered last (so run first)
    sends it to its own process: no traceback, the command's output all there, its exit code kept."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "from edgetransfer.cli import main\n"
        f"atexit.register(lambda: (os.kill(os.getpid(), signal.{signum}), time.sleep(2)))\n"
        f"sys.argv = ['edgetransfer', *{argv!r}]\n"
        "main()\n"
    )
    plain = subprocess.run([sys.executable, "-m", "edgetransfer", *argv], capture_output=True, text=True, timeout=300)
    late = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in late.stderr and "KeyboardInterrupt" not in late.stderr, late.stderr[-2000:]
    assert (late.returncode, late.stdout, late.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert plain.returncode == (0 if argv == ["models"] else 2)


def test_pipeline_has_the_flags_its_messages_suggest(tmp_path, monkeypatch):
    """pipeline's bad-file error says 'pass --skip-bad': it had no such option ('No such option: --skip-bad')."""
    from conftest import make_folder

    import edgetransfer.pipeline as pipeline_module

    folder = make_folder(tmp_path / "data", per_class=6, classes=2)
    (folder / "class0" / "notes.txt").write_text("not an image")
    result = invoke("pipeline", "--data", folder, "--out", tmp_path / "run", "--size", 32)
    assert_one_line_error(result, 2, "pass --skip-bad")
    seen = {}
    monkeypatch.setattr(pipeline_module, "run_pipeline", lambda config: seen.update(config=config) or ())
    monkeypatch.setattr(pipeline_module, "summary", lambda *args: None)
    result = invoke("pipeline", "--data", folder, "--out", tmp_path / "run", "--skip-bad", "--time-budget", "1m30s")
    assert result.exit_code == 0, result.output
    assert seen["config"].skip_bad is True and seen["config"].time_budget == 90  # a duration, as search's
    # 'no pretrained weights for resnet18 ...; pass --weights PATH': pipeline had no --weights
    weights = tmp_path / "mine.pth"
    result = invoke("pipeline", "--data", folder, "--out", tmp_path / "run2", "--weights", weights)
    assert result.exit_code == 0 and seen["config"].weights == str(weights), result.output


def test_a_misspelt_name_gets_the_known_one_it_was_likely_meant_as():
    """'--backbones mobilenetv2' listed eleven names and left the user to spot 'mobilenet_v2' (a new user's finding)."""
    from edgetransfer import backbones
    from edgetransfer.errors import UsageError

    for given, meant in (("mobilenetv2", "mobilenet_v2"), ("MobileNet-V2", "mobilenet_v2"),
                         ("efficentnet_lite0", "efficientnet_lite0")):  # fmt: skip
        with pytest.raises(UsageError) as caught:
            backbones.get(given)
        assert str(caught.value).startswith(f"unknown backbone {given!r} (did you mean {meant!r}?); known: ")
    with pytest.raises(UsageError) as caught:
        backbones.get("vgg99")
    assert str(caught.value).startswith("unknown backbone 'vgg99'; known: efficientnet_b0, ")
    # a backend given without its device: the CPU one of that name (difflib's nearest to 'openvino' was ort-openvino,
    # a new user's finding)
    import edgetransfer.backends  # noqa: F401 -- registers them
    from edgetransfer.backends.base import _BACKENDS

    assert [_BACKENDS.closest(given) for given in ("openvino", "ort", "torch")] == [
        "openvino-cpu",
        "ort-cpu",
        "torch-cpu",
    ]


def test_a_recipes_switch_is_turned_off_by_its_no_flag(tmp_path, monkeypatch):
    """'flags override the recipe': `skip_bad = true` in a recipe could not be turned off with --no-skip-bad (the
    switches were or-ed with the recipe); without the flag the recipe's value holds."""
    from conftest import make_folder

    import edgetransfer.finetune as finetune_module
    from edgetransfer.rundir import RunDir

    folder = make_folder(tmp_path / "data", per_class=6, classes=2)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("skip_bad = true\noverwrite = true\n")
    seen = []
    monkeypatch.setattr(finetune_module, "finetune", lambda config: seen.append(config) or RunDir(tmp_path))
    for flags, expected in (
        ([], (True, True)),
        (["--no-skip-bad"], (False, True)),
        (["--no-overwrite"], (True, False)),
    ):
        result = invoke("finetune", "--data", folder, "--out", tmp_path / "run", "--config", recipe, *flags)
        assert result.exit_code == 0, result.output
        assert (seen[-1].skip_bad, seen[-1].overwrite) == expected, flags
    result = invoke("finetune", "--data", folder, "--out", tmp_path / "run", "--skip-bad")  # no recipe: the flag
    assert result.exit_code == 0 and seen[-1].skip_bad is True and seen[-1].overwrite is False


def test_finetune_names_its_default_out_after_the_data_as_given_like_pipeline(tmp_path, monkeypatch):
    """`finetune --data digits` landed in models/digits-seed0-mobilenet_v2 (named after the cache folder the digits
    are written to), `pipeline --data digits` in models/digits-mobilenet_v2, as both helps say."""
    import edgetransfer.builtin_data as builtin_data
    import edgetransfer.finetune as finetune_module
    from edgetransfer.rundir import RunDir

    seen = []
    monkeypatch.setattr(builtin_data, "resolve_data", lambda data, seed: str(tmp_path / "cache" / f"{data}-seed{seed}"))
    monkeypatch.setattr(finetune_module, "finetune", lambda config: seen.append(config) or RunDir(tmp_path))
    assert invoke("finetune", "--data", "digits").exit_code == 0
    assert seen[-1].out == str(Path("models") / "digits-mobilenet_v2") and seen[-1].data.endswith("digits-seed0")
    # `--data .` from inside the data: the default out would land in it; said as the default, not as a given --out
    from conftest import make_folder

    folder = make_folder(tmp_path / "photos", per_class=2)
    monkeypatch.chdir(folder)
    assert_one_line_error(invoke("finetune", "--data", "."), 2, "the default --out, models/photos-mobilenet_v2 (")


def test_the_list_of_commands_has_each_summary_on_its_own_lines():
    """`edgetransfer --help` kept the line breaks of search's docstring: 'each' and 'trials' stood alone on lines."""
    import typer

    from edgetransfer.cli import app

    commands = typer.main.get_command(app).commands
    assert set(commands) >= {"pipeline", "finetune", "export", "bench", "explain", "predict", "models", "search"}
    for name, command in commands.items():
        assert command.short_help and "\n" not in command.short_help, name
    assert commands["search"].short_help.startswith("Find the most accurate model within the profile's latency budget")

"""Hostile input to bench, the gate, predict and the card (issue 19): every case is one line, exit 2, nothing
written, and never a wrong number with exit 0."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench_fakes import document, result, samples
from test_bad_input import run_bad, snapshot
from typer.testing import CliRunner

from edgetransfer.bench.config import BenchConfig, make_config, parse_batches
from edgetransfer.bench.gate import GateConfig, compare
from edgetransfer.card import ModelCard
from edgetransfer.cli import app
from edgetransfer.errors import RunDirError, UsageError
from edgetransfer.rundir import sha256_file

FAST = ["--backends", "ort-cpu", "--no-accuracy", "--min-time", "0.05", "--rounds", "2", "--min-runs", "5"]
FAST += ["--warmup", "1"]


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the shared run to tamper with."""
    return shutil.copytree(trained_run.path, tmp_path / "run")


@pytest.fixture
def image(tmp_path):
    """An RGB image of another size than the model's input."""
    from PIL import Image

    path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def no_measuring(monkeypatch):
    """Any measurement fails the test: the cases below must stop before one starts."""

    def measured(*args, **kwargs):
        raise AssertionError("a measurement started")

    monkeypatch.setattr("edgetransfer.bench.runner.ProcessMeasurer", measured)
    monkeypatch.setattr("edgetransfer.bench.runner.InProcessMeasurer", measured)


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def tamper_onnx(path, change, out=None):
    """Rewrite the card embedded in an ONNX file (``change`` edits its dict); ``out`` defaults to ``path``."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "edgetransfer.card":
            card = json.loads(prop.value)
            change(card)
            prop.value = json.dumps(card)
    onnx.save(model, str(out or path))
    return out or path


def record_sha256(run, rel):
    """Record a file's sha256 in the run's card, as an export that made it would."""
    edit_json(run / "card.json", lambda c: c["artifacts"][rel].update(sha256=sha256_file(run / rel)))


def nan_model(path):
    """The ONNX model with its first convolution's weights set to NaN."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    first = next(t for t in model.graph.initializer if len(t.dims) == 4)
    first.CopyFrom(numpy_helper.from_array(np.full(tuple(first.dims), np.nan, np.float32), first.name))
    onnx.save(model, str(path))


def a_baseline(tmp_path, change) -> str:
    """A schema-complete baseline of the shared run's model, damaged by ``change``, written as JSON (NaN allowed)."""
    doc = document([result("ort-cpu", "fp32", {1: samples(0.5)}, top1=None)])
    doc["model"].update(backbone="mobilenet_v2", input=["batch", 3, 32, 32], num_classes=3)
    change(doc)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    return str(path)


# --------------------------------------------------------------------------- 1. baselines and the gate


def _latency(doc):
    return doc["results"][0]["latency"][0]


BAD_BASELINES = {
    "nan latency": (
        lambda d: _latency(d).update(p50_ms=math.nan, samples_ms=[math.nan] * _latency(d)["runs"]),
        "results[0].latency[0].p50_ms: expected a finite number, got nan",
    ),
    "infinite sample": (
        lambda d: _latency(d)["samples_ms"].__setitem__(3, math.inf),
        "results[0].latency[0].samples_ms[3]: expected a finite number, got inf",
    ),
    "zero latency": (
        lambda d: _latency(d).update(min_ms=0.0),
        "results[0].latency[0].min_ms: expected > 0, got 0.0",
    ),
    "negative latency": (
        lambda d: _latency(d)["samples_ms"].__setitem__(0, -1.0),
        "results[0].latency[0].samples_ms[0]: expected > 0, got -1.0",
    ),
    "huge min_time": (
        lambda d: d["settings"].update(min_time=1e9),
        "settings.min_time: expected <= 600, got 1000000000.0",
    ),
    "no rounds": (lambda d: d["settings"].update(rounds=0), "settings.rounds: expected >= 1, got 0"),
    "huge min_runs": (lambda d: d["settings"].update(min_runs=10**12), "settings.min_runs: expected <= 100000"),
    "infinite warmup_time": (
        lambda d: d["settings"].update(warmup_time=math.inf),
        "settings.warmup_time: expected a finite number",
    ),
    "zero threads": (lambda d: d["settings"].update(threads_resolved=0), "settings.threads_resolved: expected >= 1"),
    "batch 0": (lambda d: d["settings"].update(batches=[0]), "settings.batches[0]: expected >= 1, got 0"),
    "a model card": (  # it said "has bench schema version 1" (the card's own version)
        lambda d: [d.pop("kind"), d.update(labels=["a"], preprocessing={})],
        "not an edgetransfer bench document (a run's model card); a baseline is what 'edgetransfer bench RUN "
        "--save-baseline FILE' saves",
    ),
    "another kind": (lambda d: d.update(kind="something.else"), "not an edgetransfer bench document (kind 'something"),
    "rounds that do not add up": (
        lambda d: _latency(d).update(rounds=[1, 1]),
        "results[0].latency[0]: rounds add up to 2 runs, but samples_ms holds 200",
    ),
    # the machine probe was not checked: an IndexError traceback, or "this machine is nanx faster"
    "a probe without runs": (
        lambda d: d.update(probe={"latency": [{**_latency(d), "samples_ms": [], "runs": 0, "rounds": [1]}]}),
        "probe.latency[0]: rounds add up to 1 runs, but samples_ms holds 0",
    ),
    "a probe without samples": (
        lambda d: d.update(probe={"latency": [{k: v for k, v in _latency(d).items() if k != "samples_ms"}]}),
        "probe.latency[0].samples_ms: missing",
    ),
    "a negative probe time": (
        lambda d: d.update(probe={"latency": [{**_latency(d), "samples_ms": [-1.0] * 200}]}),
        "probe.latency[0].samples_ms[0]: expected > 0, got -1.0",
    ),
}


@pytest.mark.parametrize("case", BAD_BASELINES)
def test_a_baseline_with_impossible_numbers_is_refused_before_measuring(run, tmp_path, no_measuring, case):
    change, fragment = BAD_BASELINES[case]
    baseline = a_baseline(tmp_path, change)
    run_bad(["bench", run, *FAST, "--baseline", baseline], 2, f"{baseline}: {fragment}", tmp_path)


def test_a_sane_baseline_still_reads(tmp_path):
    from edgetransfer.bench.schema import load_document

    assert load_document(a_baseline(tmp_path, lambda d: None))["settings"]["min_time"] == 1.0


def _measured(doc, change):
    """A copy of a (validated) document with its samples changed as a broken measurement would give them."""
    doc = json.loads(json.dumps(doc))
    change(_latency(doc))
    return doc


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_the_gate_fails_on_a_time_that_is_not_a_positive_number(bad):
    base = document([result("ort-cpu", "fp32", {1: samples(1.0)}), result("ort-cpu", "int8", {1: samples(0.7)})])
    now = _measured(base, lambda lat: lat.update(samples_ms=[bad] * lat["runs"]))
    for baseline, config in ((base, GateConfig()), (None, GateConfig(relative_to="ort-cpu:int8"))):
        outcome = compare(now, baseline, config)
        assert outcome.exit_code == 2 and ("ort-cpu", "fp32", 1) not in [r.key for r in outcome.rows], outcome
        assert "cannot compare ort-cpu fp32 batch 1: its times give a ratio of" in outcome.problems[-1]


def test_a_ratio_past_what_a_float_holds_is_not_an_overflow():
    base = document([result("ort-cpu", "fp32", {1: [1e-160] * 20})])
    now = document([result("ort-cpu", "fp32", {1: [1e150] * 20})])
    outcome = compare(now, base, GateConfig())
    assert outcome.exit_code == 2 and "ratio of inf" in outcome.problems[0]


# --------------------------------------------------------------------------- 2. options


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("1..0", "batch size 0 (expected a whole number from 1 to 1024)"),
        ("4..2", "the range 4..2 runs backwards"),
        ("0", "batch size 0"),
        ("-3", "batch size -3"),
        ("-1..4", "batch size -1"),  # used to double -1 forever
        ("0..4", "batch size 0"),  # used to double 0 forever
        ("1000000000", "batch size 1000000000"),
        ("1..2000", "batch size 2000"),
        ("1..x", "expected sizes like 1,8 or 1..8"),
        (",", "expected sizes like 1,8 or 1..8"),
    ],
)
def test_bad_batch_sizes_are_refused_before_any_work(run, tmp_path, no_measuring, spec, fragment):
    run_bad(["bench", run, *FAST, f"--batch={spec}"], 2, fragment, tmp_path)


def test_batch_ranges_still_read():
    assert parse_batches("1..8") == (1, 2, 4, 8) and parse_batches("1..3,16") == (1, 2, 3, 16)
    assert parse_batches("1024") == (1024,)


def test_batch_help_does_not_promise_powers_of_two():
    """--batch's help said '(powers of two)' while any size from 1 to 1024 is measured (3,5 works, and a range
    ends at its own HIGH): the help says what the option takes."""
    assert parse_batches("3,5") == (3, 5) and parse_batches("3..10") == (3, 6, 10)
    help_text = " ".join(CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "powers of two" not in help_text and "any from 1 to 1024" in help_text


def test_a_backend_or_variant_named_twice_is_measured_once():
    """--variants fp32,fp32 measured and reported ort-cpu fp32 twice (two identical rows, two results in
    bench.json), and --backends ort-cpu,ort-cpu was recorded twice in its settings: each is kept once, in order."""
    config = make_config({"backends": ("ort-cpu", "torch-cpu", "ort-cpu"), "variants": ("int8", "fp32", "int8")})
    assert config.backends == ("ort-cpu", "torch-cpu") and config.variants == ("int8", "fp32")
    assert config.settings()["variants"] == ["int8", "fp32"]


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--min-time", "1e9", "--min-time: expected <= 600, got 1000000000.0"),
        ("--min-time", "nan", "--min-time: expected a finite number, got nan"),
        ("--warmup-time", "inf", "--warmup-time: expected a finite number, got inf"),
        ("--async-time", "-1", "--async-time: expected >= 0, got -1.0"),
        ("--max-accuracy-drop", "nan", "--max-accuracy-drop: expected a finite number, got nan"),
        ("--min-runs", "0", "--min-runs: expected >= 1, got 0"),
        ("--rounds", "100000", "--rounds: expected <= 1000, got 100000"),
        ("--threads", "0", "--threads: expected >= 1, got 0"),
    ],
)
def test_bad_measurement_settings_are_refused_before_any_work(run, tmp_path, no_measuring, option, value, fragment):
    run_bad(["bench", run, *FAST, option, value], 2, fragment, tmp_path)


def test_batch_sizes_from_a_profile_or_python_are_bounded_too():
    with pytest.raises(UsageError, match=r"--batches\[1\]: expected <= 1024, got 5000"):
        BenchConfig(batches=(1, 5000)).validate()


# --------------------------------------------------------------------------- 3. where the reports go


def test_out_that_is_a_file(run, tmp_path, no_measuring):
    (tmp_path / "taken").write_text("mine")
    run_bad(["bench", run, *FAST, "--out", tmp_path / "taken"], 2, "taken is a file; give a folder", tmp_path)
    run_bad(["bench", run, *FAST, "--out", tmp_path / "taken" / "sub"], 2, "taken is a file, not a folder", tmp_path)


def test_save_baseline_that_is_a_folder_or_below_a_file(run, tmp_path, no_measuring):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("mine")
    run_bad(
        ["bench", run, *FAST, "--save-baseline", tmp_path / "folder"], 2, "folder is a folder; give a file", tmp_path
    )
    target = tmp_path / "file" / "base.json"
    run_bad(["bench", run, *FAST, "--save-baseline", target], 2, "file is a file, not a folder", tmp_path)
    # the --baseline file itself: it gated, then replaced it (a new user's finding: a creep never fails)
    same = a_baseline(tmp_path, lambda d: None)
    run_bad(["bench", run, "--baseline", same, "--save-baseline", same], 2, "is the --baseline file", tmp_path)


def test_save_baseline_never_replaces_a_file_that_is_no_baseline(run, tmp_path, no_measuring):
    """--save-baseline RUN/model.onnx replaced the model with JSON (predict then refused the run), and a card or a
    photo so too (a new user's trial). Only a baseline is replaced by a newer one; bench's own reports are not
    baselines' files."""
    for name in ("model.onnx", "card.json"):
        run_bad(["bench", run, *FAST, "--save-baseline", run / name], 2, "is not a bench baseline and would", tmp_path)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    run_bad(["bench", run, *FAST, "--save-baseline", tmp_path / "photo.png"], 2, "not a bench baseline", tmp_path)
    run_bad(["bench", run, *FAST, "--save-baseline", run / "bench.json"], 2, "is a run's own bench.json", tmp_path)
    other = tmp_path / "other-run"  # another run's bench.json, a valid bench document: bench writes it
    other.mkdir()
    shutil.copy(run / "card.json", other / "card.json")
    (other / "bench.json").write_text(Path(a_baseline(tmp_path, lambda d: None)).read_text())
    run_bad(["bench", run, *FAST, "--save-baseline", other / "bench.json"], 2, "is a run's own bench.json", tmp_path)
    reports = tmp_path / "reports"  # another bench's --out: its bench.json beside the reports made from it (it was
    reports.mkdir()  # replaced, the reports then told of another measurement; a read-only review of the docs)
    (reports / "bench.json").write_text(Path(a_baseline(tmp_path, lambda d: None)).read_text())
    (reports / "bench.md").write_text("# its report\n")
    said = "is a run's own bench.json or a bench's with its reports beside it"
    run_bad(["bench", run, *FAST, "--save-baseline", reports / "bench.json"], 2, said, tmp_path)
    from edgetransfer.bench.command import check_outputs
    from edgetransfer.rundir import RunDir

    check_outputs(RunDir.open(run), None, Path(a_baseline(tmp_path, lambda d: None)))  # a baseline: replaced
    # one of an older schema version too: its own error says to save it again (a reviewer's finding)
    check_outputs(RunDir.open(run), None, Path(a_baseline(tmp_path, lambda d: d.update(schema_version=0))))


def test_a_baseline_without_the_machine_probe_is_refused_before_measuring(run, tmp_path, no_measuring):
    """A bench.json (no probe: it was not saved with --save-baseline) as --baseline compared absolute times with a
    warning: a machine 30 % faster passed an int8 model 20 % slower, 30 % slower failed an unchanged one (a
    reviewer's finding; the brief: never an absolute time against a stored one). Refused; within one run it is
    --relative-to's to judge."""
    plain = a_baseline(tmp_path, lambda d: d.update(probe=None))
    run_bad(["bench", run, *FAST, "--baseline", plain], 2, "has no machine probe (a bench.json, or a", tmp_path)
    # a batch of the baseline this bench would not measure: found before measuring too (it was after)
    relative = [*FAST, "--batch", "8", "--baseline", plain, "--relative-to", "ort-cpu:fp32"]
    said = run_bad(["bench", run, *relative], 2, "was measured at batch 1", tmp_path)
    assert "which this bench would not measure (batches 8)" in said


def test_an_unwritable_out_folder(run, tmp_path, no_measuring, monkeypatch):
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr("edgetransfer.bench.command._can_write", lambda folder: False)  # as root, nothing is locked
    run_bad(["bench", run, *FAST, "--out", tmp_path / "locked"], 2, "cannot write in", tmp_path)
    run_bad(["bench", run, *FAST, "--save-baseline", tmp_path / "locked" / "b.json"], 2, "cannot write in", tmp_path)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys on this machine")
def test_a_folder_no_file_can_be_made_in_even_as_root(run, tmp_path, no_measuring):
    """--save-baseline /sys/x.json measured first and then failed (as root, os.access says /sys is writable): the
    folder is now tried before measuring."""
    run_bad(["bench", run, *FAST, "--save-baseline", "/sys/edgetransfer-b.json"], 2, "cannot write in /sys", tmp_path)


def test_a_folder_that_refuses_new_files_though_access_says_yes(tmp_path, monkeypatch):
    """The same without /sys (which a container may mount writable): os.access says yes, as it does to root, and
    making a file fails; the folder is not writable."""
    import tempfile

    from edgetransfer.bench import command

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(command.os, "access", lambda *args: True)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert command._can_write(tmp_path) is False
    with pytest.raises(UsageError, match="cannot write in"):
        command._writable_folder(tmp_path / "new", "--save-baseline")


def test_an_append_only_folder_is_not_writable_for_the_reports(tmp_path, monkeypatch):
    """A file can be made in an append-only folder (chattr +a) but not renamed or removed, and the reports are
    written by renaming a temporary file: such a folder was counted writable, and bench failed after measuring."""
    from edgetransfer.bench import command

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(command.os, "replace", refuse)
    assert command._can_write(tmp_path) is False
    monkeypatch.undo()
    assert command._can_write(tmp_path) is True
    assert list(tmp_path.iterdir()) == [], "the check leaves nothing behind where it can remove its file"


def test_a_report_name_taken_by_a_folder(run, tmp_path, no_measuring):
    (tmp_path / "out" / "bench.html").mkdir(parents=True)
    run_bad(["bench", run, *FAST, "--out", tmp_path / "out"], 2, "bench.html is a folder", tmp_path)


# --------------------------------------------------------------------------- 4. files that are not the card's


@pytest.mark.parametrize(
    "backend, rel, other",
    [
        ("ort-cpu", "model.onnx", "model.int8.onnx"),
        ("ort-cpu", "model.int8.onnx", "model.onnx"),
        ("openvino-cpu", "openvino/model.xml", "openvino/model.int8.xml"),
    ],
)
def test_bench_refuses_a_model_file_that_was_replaced(run, tmp_path, no_measuring, backend, rel, other):
    shutil.copyfile(run / other, run / rel)
    args = ["bench", run, *FAST, "--backends", backend]
    fragment = f"{rel} does not match the sha256 recorded in {run / 'card.json'}; re-run 'edgetransfer export {run}'"
    run_bad(args, 2, fragment, tmp_path)


def test_bench_refuses_a_model_file_the_card_records_no_sha256_for(run, tmp_path, no_measuring):
    edit_json(run / "card.json", lambda c: c["artifacts"]["model.onnx"].pop("sha256"))
    run_bad(["bench", run, *FAST, "--variants", "fp32"], 2, "model.onnx has no sha256 recorded in", tmp_path)


def test_a_reference_run_with_a_replaced_model(trained_run, tmp_path, no_measuring):
    other = shutil.copytree(trained_run.path, tmp_path / "other")
    shutil.copyfile(other / "model.int8.onnx", other / "model.onnx")
    args = ["bench", trained_run.path, *FAST, "--variants", "fp32", "--reference-run", other]
    run_bad(args, 2, f"{other / 'model.onnx'} does not match the sha256", tmp_path)


def test_predict_refuses_a_run_model_that_is_not_the_cards_and_reads_a_lone_file_by_its_own_card(run, tmp_path, image):
    """A file in a run must be the run's (the user asked for that run's model); a file alone carries its own card,
    whose labels are the ones its weights were trained with."""
    tamper_onnx(run / "model.int8.onnx", lambda c: c.update(labels=["zebra", "apple", "moon"]), tmp_path / "other.onnx")
    shutil.copyfile(tmp_path / "other.onnx", run / "model.onnx")
    for target in (run / "model.onnx", run):
        run_bad(["predict", target, image], 2, "model.onnx does not match the sha256 recorded in", tmp_path)
    lone = CliRunner().invoke(app, ["predict", str(tmp_path / "other.onnx"), str(image)])
    assert lone.exit_code == 0 and lone.stdout.split()[1] in {"zebra", "apple", "moon"}, lone.output


def test_predict_of_an_untouched_run_model(trained_run, image):
    for target in (trained_run.file("model.onnx"), trained_run.file("openvino/model.xml"), trained_run.path):
        outcome = CliRunner().invoke(app, ["predict", str(target), str(image)])
        assert outcome.exit_code == 0 and outcome.stdout.split()[1] in trained_run.load_card().labels, outcome.output


# --------------------------------------------------------------------------- 5. cards that are not the model's


@pytest.mark.parametrize("labels", [["class0", "class1", "class2", "extra"], ["class0", "class1"]])
@pytest.mark.parametrize("backend, rel", [("ort-cpu", "model.onnx"), ("torch-cpu", "model.safetensors")])
def test_bench_refuses_a_card_with_another_number_of_labels(run, tmp_path, labels, backend, rel):
    """torch-cpu alone used to show a FAILED row (the checkpoint did not load into the card's head)."""
    edit_json(run / "card.json", lambda c: c.update(labels=labels))
    fragment = f"{rel} gives 3 scores per image but {run / 'card.json'} lists {len(labels)} labels"
    run_bad(["bench", run, *FAST, "--variants", "fp32", "--backends", backend], 2, fragment, tmp_path)


BAD_CARDS = {
    "std 0": (
        lambda p: p.update(std=[0.0, 0.0, 0.0]),
        "preprocessing.std[0]: expected > 0, got 0.0 (and 2 more: preprocessing.std[1], preprocessing.std[2])",
    ),
    "nan mean": (
        lambda p: p.update(mean=[math.nan, 0.4, 0.4]),
        "preprocessing.mean[0]: expected a finite number, got nan",
    ),
    "infinite std": (
        lambda p: p.update(std=[0.2, math.inf, 0.2]),
        "preprocessing.std[1]: expected a finite number, got inf",
    ),
    "two channels": (lambda p: p.update(mean=[0.5, 0.5]), "preprocessing.mean: expected 3 items, got [0.5, 0.5]"),
    "crop 0": (
        lambda p: p.update(crop=0),
        "preprocessing.crop: expected >= 1, got 0",
    ),
    "resize huge": (lambda p: p.update(resize=100000), "preprocessing.resize: expected <= 4096, got 100000"),
    "crop not a number": (lambda p: p.update(crop="32"), "preprocessing.crop: expected a whole number, got '32'"),
    "scale 0": (lambda p: p.update(scale=0), "preprocessing.scale: expected > 0, got 0"),
}


@pytest.mark.parametrize("case", BAD_CARDS)
def test_a_card_no_model_can_be_fed_with_is_refused_when_read(run, tmp_path, case):
    change, fragment = BAD_CARDS[case]
    edit_json(run / "card.json", lambda c: change(c["preprocessing"]))
    run_bad(["bench", run, *FAST], 2, f"{run / 'card.json'}: {fragment}", tmp_path)
    with pytest.raises(RunDirError, match="preprocessing"):
        ModelCard.from_json((run / "card.json").read_text())


@pytest.mark.parametrize(
    "labels, fragment",
    [
        ([], "labels: expected at least 1 item(s), got []"),
        (["a", "", "c"], "labels[1]: expected at least 1 character, got ''"),
        (["a", "b", 3], "labels[2]: expected a string, got 3"),
        (["a", "b", "x" * 201], "labels[2]: expected at most 200 characters"),
        (["a", "b", "a"], "labels: expected distinct names; 'a' more than once"),
        ("abc", "labels: expected a list, got 'abc'"),
    ],
)
def test_a_card_with_bad_labels_is_refused_when_read(run, tmp_path, labels, fragment):
    edit_json(run / "card.json", lambda c: c.update(labels=labels))
    run_bad(["bench", run, *FAST], 2, fragment, tmp_path)


def test_predict_refuses_an_embedded_card_with_more_labels_unless_labels_are_given(trained_run, tmp_path, image):
    model = tamper_onnx(trained_run.file("model.onnx"), lambda c: c["labels"].append("extra"), tmp_path / "m.onnx")
    run_bad(["predict", model, image], 2, "m.onnx has 3 outputs but 4 labels in its card", tmp_path)
    run_bad(["predict", model, image, "--labels", "a,b"], 2, "has 3 outputs but 2 labels given", tmp_path)
    fixed = CliRunner().invoke(app, ["predict", str(model), str(image), "--labels", "a,b,c"])
    assert fixed.exit_code == 0 and fixed.stdout.split()[1] in {"a", "b", "c"}, fixed.output


def test_predict_refuses_an_openvino_card_with_fewer_labels(trained_run, tmp_path, image):
    import openvino as ov

    model = ov.Core().read_model(str(trained_run.file("openvino/model.xml")))
    card = json.loads(model.get_rt_info(["edgetransfer", "card"]).astype(str))
    model.set_rt_info(json.dumps({**card, "labels": card["labels"][:2]}), ["edgetransfer", "card"])
    ov.save_model(model, str(tmp_path / "m.xml"))
    run_bad(["predict", tmp_path / "m.xml", image], 2, "m.xml has 3 outputs but 2 labels in its card", tmp_path)


@pytest.mark.parametrize("case", ["std 0", "nan mean", "crop 0"])
def test_predict_refuses_an_embedded_card_no_model_can_be_fed_with_and_options_override_it(
    trained_run, tmp_path, image, case
):
    change, fragment = BAD_CARDS[case]
    model = tamper_onnx(trained_run.file("model.onnx"), lambda c: change(c["preprocessing"]), tmp_path / "m.onnx")
    run_bad(["predict", model, image], 2, f"the card in {model}: {fragment}", tmp_path)
    override = {"std 0": ["--std", "0.229,0.224,0.225"], "nan mean": ["--mean", "0.485,0.456,0.406"]}
    override = override.get(case, ["--size", str(trained_run.load_card().preprocessing.crop)])
    outcome = CliRunner().invoke(app, ["predict", str(model), str(image), *override])
    assert outcome.exit_code == 0 and outcome.stdout.split()[1] in trained_run.load_card().labels, outcome.output


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--std", "nan,0.224,0.225", "std (--std) is [nan, 0.224, 0.225] (expected 3 finite numbers above 0"),
        ("--std", "0.229,0,0.225", "std (--std) is [0.229, 0.0, 0.225]"),
        ("--std", "-1,1,1", "std (--std) is [-1.0, 1.0, 1.0]"),
        ("--mean", "inf,0.4,0.4", "mean (--mean) is [inf, 0.4, 0.4] (expected 3 finite numbers, R,G,B)"),
        ("--mean", "0.5", "mean (--mean) is [0.5]"),
        ("--size", "0", "size (--size) is 0 (expected a whole number of pixels from 1 to 4096)"),
        ("--size", "100000", "size (--size) is 100000"),
        ("--resize", "-5", "resize (--resize) is -5"),
        ("--threads", "-1", "--threads must be at least 1"),
    ],
)
def test_predict_options_out_of_range(trained_run, tmp_path, image, option, value, fragment):
    run_bad(["predict", trained_run.file("model.onnx"), image, option, value], 2, fragment, tmp_path)


# --------------------------------------------------------------------------- 6. every number printed is finite


def test_a_nan_model_is_an_error_in_predict_and_bench(run, tmp_path, image):
    nan_model(run / "model.onnx")
    record_sha256(run, "model.onnx")
    fragment = "model.onnx gives NaN or infinite scores: the model is broken"
    run_bad(["predict", run / "model.onnx", image], 2, fragment, tmp_path)
    run_bad(["bench", run, *FAST, "--variants", "fp32"], 2, fragment, tmp_path)
    run_bad(["bench", run, *FAST, "--variants", "fp32", "--in-process"], 2, fragment, tmp_path)


QUICK = dict(backends=("ort-cpu",), variants=("int8",), isolate=False, warmup=1, warmup_time=0, min_runs=3)
QUICK |= dict(min_time=0, rounds=1)


def test_a_nan_in_a_measured_document_is_never_reported(trained_run, monkeypatch):
    from edgetransfer.bench import runner
    from edgetransfer.errors import EdgeTransferError

    stats = runner.latency_stats
    monkeypatch.setattr(runner, "latency_stats", lambda times, batch: {**stats(times, batch), "p50_ms": math.nan})
    before = snapshot(trained_run.path)
    with pytest.raises(
        EdgeTransferError, match=r"cannot be right: .*p50_ms: expected a finite number, got nan"
    ) as info:
        runner.bench(trained_run, BenchConfig(accuracy=False, **QUICK))
    assert info.value.exit_code == 2  # a failed measurement, not the gate's 1 ("slower", a regression to CI)
    assert snapshot(trained_run.path) == before


def test_accuracy_on_no_images_is_a_dash(trained_run, tmp_path, image):
    from rich.console import Console

    from edgetransfer.bench import bench, table
    from edgetransfer.bench.report import to_csv, to_markdown

    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    for name in ("class0", "class1"):
        (data / "train" / name).mkdir(parents=True)
        for i in range(2):
            shutil.copyfile(image, data / "train" / name / f"{i}.png")
    doc = bench(trained_run, BenchConfig(data=str(data), **QUICK), write=False)
    assert doc["results"][0]["accuracy"] is None and doc["accuracy_data"]["images"] == 0
    console = Console(width=200, record=True)
    console.print(table(doc))
    shown = console.export_text() + to_csv(doc) + to_markdown(doc)
    assert "nan" not in shown.lower() and "ort-cpu" in shown


def test_a_card_top1_that_is_nan_is_not_a_reference(run, tmp_path):
    from edgetransfer.bench import runner

    edit_json(run / "card.json", lambda c: c["metrics"].setdefault("torch", {}).update(test_top1=math.nan))
    card = ModelCard.from_json((run / "card.json").read_text())
    assert runner._reference([], card, own_split=True) is None


def test_bench_refuses_an_openvino_ir_whose_weights_were_replaced(run, tmp_path, no_measuring):
    """The .xml is unchanged, only its .bin is another model's: the card's bin_sha256 notices."""
    shutil.copyfile(run / "openvino" / "model.int8.bin", run / "openvino" / "model.bin")
    args = ["bench", run, *FAST, "--backends", "openvino-cpu", "--variants", "fp32"]
    run_bad(args, 2, f"{run / 'openvino' / 'model.bin'} does not match the sha256 recorded in", tmp_path)


def test_an_openvino_ir_without_its_weights_is_one_line_naming_the_bin(run, tmp_path, no_measuring, image):
    """An .xml whose .bin is gone: bench, predict and explain crashed with a FileNotFoundError traceback (the
    sha256 check of the .bin), and predict of a lone .xml gave OpenVINO's own message, cut off after
    'Exception from src/inference/src/cpp/core.cpp:84:'. They name the missing .bin and what to do."""
    from edgetransfer.explain import _profiled
    from edgetransfer.rundir import RunDir

    (run / "openvino" / "model.bin").unlink()
    missing = f"{run / 'openvino' / 'model.bin'} is missing: the OpenVINO IR model.xml needs its weights (.bin)"
    fix = f"re-run 'edgetransfer export {run}'"
    args = ["bench", run, *FAST, "--backends", "openvino-cpu", "--variants", "fp32"]
    run_bad(args, 2, f"{missing} beside it; {fix}", tmp_path)
    for target in (run / "openvino" / "model.xml", run):
        run_bad(["predict", target, image, "--backend", "openvino"], 2, f"{missing} beside it; {fix}", tmp_path)
    lone = shutil.copy(run / "openvino" / "model.xml", tmp_path / "model.xml")
    run_bad(["predict", lone, image], 2, f"{tmp_path / 'model.bin'} is missing: the OpenVINO IR model.xml", tmp_path)
    found = RunDir.open(run)
    profiled = _profiled(found, found.load_card(), "openvino/model.xml", lambda path: {})
    assert profiled["error"].startswith(missing)  # explain reports it as that model's error, and the rest


def test_a_max_regression_without_a_gate_is_said(run, tmp_path):
    """--max-regression 5% with nothing to gate against was silently ignored (exit 0, no word)."""
    result = CliRunner().invoke(app, ["bench", str(run), *FAST, "--variants", "int8", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0 and "--max-regression" not in result.stderr, result.output
    assert "--max-accuracy-drop" not in result.stderr
    result = CliRunner().invoke(
        app,
        ["bench", str(run), *FAST, "--variants", "int8", "--out", str(tmp_path / "r"), "--max-regression", "5%"]
        + ["--max-accuracy-drop", "50"],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "note: --max-regression 5% is not used: no gate runs without --baseline" in said
    # --max-accuracy-drop is --recommend's budget: without it, it was ignored unsaid (a read-only review of the docs)
    assert "note: --max-accuracy-drop 50 is not used: it is --recommend's budget" in said


def test_the_accuracy_reference_is_fp32_math_not_a_bf16_ir(run):
    # with --backends openvino-cpu alone, int8's delta was taken against the fp32 IR, which ran in bf16 on this CPU
    from edgetransfer.bench import runner

    card = ModelCard.from_json((run / "card.json").read_text())
    acc = {"top1": 0.5, "top5": None, "k": None}
    bf16 = {"backend": "openvino-cpu", "variant": "fp32", "precision": "bf16", "accuracy": acc}
    fp32 = {"backend": "ort-cpu", "variant": "fp32", "precision": "fp32", "accuracy": {**acc, "top1": 0.6}}
    assert runner._reference([bf16, fp32], card, own_split=True)["source"] == "ort-cpu fp32"
    assert runner._reference([bf16], card, own_split=True)["source"] == "card: PyTorch test top-1"
    assert runner._reference([bf16], card, own_split=False)["source"] == "openvino-cpu fp32 (runs in bf16)"

"""bench(): what is measured, for which models, and the bench.json schema."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_folder
from hardware import run_if

from edgetransfer.bench import BENCH_SCHEMA_VERSION, BenchConfig, bench, latency_stats, load_document
from edgetransfer.bench.schema import validate_document
from edgetransfer.errors import BackendUnavailableError, DataError, RunDirError, UsageError
from edgetransfer.rundir import RunDir

FAST = dict(warmup=1, warmup_time=0, min_runs=3, min_time=0, rounds=2, async_time=0.02, isolate=False)
ALL_FIVE = {
    ("torch-cpu", "fp32"),
    ("ort-cpu", "fp32"),
    ("ort-cpu", "int8"),
    ("openvino-cpu", "fp32"),
    ("openvino-cpu", "int8"),
}


@pytest.fixture(scope="module")
def document(trained_run):
    """One in-process measurement of every model of the run at batch sizes 1 and 2, shared by this module."""
    return bench(trained_run, BenchConfig(batches=(1, 2), recommend=True, **FAST))


def test_latency_stats_are_the_percentiles_of_the_times():
    times = [float(t) for t in range(1, 101)]  # 1..100 ms
    stats = latency_stats(times, batch=2)
    assert stats["p50_ms"] == pytest.approx(np.percentile(times, 50))
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5) and stats["min_ms"] == 1
    assert stats["cv_percent"] == pytest.approx(100 * np.std(times, ddof=1) / 50.5)
    assert stats["throughput_ips"] == pytest.approx(2000 / 50.5)
    assert stats["runs"] == 100


def test_every_variant_at_every_batch_size_with_accuracy(trained_run, document):
    saved = json.loads(trained_run.file("bench.json").read_text())
    assert saved["schema_version"] == BENCH_SCHEMA_VERSION == document["schema_version"]
    assert {(r["backend"], r["variant"]) for r in saved["results"]} == ALL_FIVE
    for r in saved["results"]:
        assert [lat["batch"] for lat in r["latency"]] == [1, 2]
        for lat in r["latency"]:
            assert lat["runs"] >= 3 and len(lat["samples_ms"]) == lat["runs"] and len(lat["rounds"]) == 2
            assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        acc = r["accuracy"]
        assert 0 <= acc["top1"] <= acc["top5"] <= 1 and acc["k"] == 3 and acc["images"] > 0
        assert acc["top1_delta_points"] == pytest.approx(100 * (acc["top1"] - saved["accuracy_reference"]["top1"]))
        assert r["model_bytes"] > 0 and r["load_s"] > 0 and r["threads"] == saved["settings"]["threads_resolved"]
        assert r["peak_rss_mb"] is None  # in-process: not one model's figure
        assert bool(r["async"]) == (r["backend"] == "openvino-cpu")
    assert saved["accuracy_reference"]["source"] == "torch-cpu fp32"
    assert {"cpu", "cores", "flags"} <= set(saved["machine"]) and saved["versions"]["onnxruntime"]
    assert saved["recommendation"]["backend"] and not saved["failed"]


def test_openvino_async_throughput_uses_several_requests(document):
    ov = next(r for r in document["results"] if r["backend"] == "openvino-cpu")
    assert [a["batch"] for a in ov["async"]] == [1, 2]
    assert all(a["images_per_s"] > 0 and a["requests"] >= 1 for a in ov["async"])


def test_a_fresh_process_per_model_gives_its_own_peak_memory(trained_run):
    config = BenchConfig(backends=("ort-cpu",), variants=("int8",), **{**FAST, "isolate": True, "accuracy": False})
    (result,) = bench(trained_run, config, write=False)["results"]
    assert 0 < result["rss_start_mb"] < result["peak_rss_mb"] < 2000 and result["load_s"] > 0


def test_rounds_can_be_shared_among_fresh_processes(trained_run):
    config = BenchConfig(backends=("ort-cpu",), variants=("int8",), **{**FAST, "isolate": True, "accuracy": False})
    one = bench(trained_run, config, write=False)["results"][0]
    config = replace(config, rounds=4, processes=2, batches=(1, 2))
    two = bench(trained_run, config, write=False)["results"][0]
    # two per batch size: the count of distinct processes read 3 (the second carries on into batch 2: a review)
    assert (one["processes"], two["processes"]) == (1, 2) and len(two["latency"][0]["rounds"]) == 4
    # rounds that do not divide evenly: 4 rounds among 3 processes are 2 each, in 2 processes (3 was recorded)
    from edgetransfer.bench.config import processes_per_batch

    assert [processes_per_batch(r, p) for r, p in ((4, 3), (5, 4), (6, 4), (4, 2), (10, 1))] == [2, 3, 3, 2, 1]
    uneven = bench(trained_run, replace(config, rounds=4, processes=3, batches=(1,)), write=False)["results"][0]
    assert uneven["processes"] == 2
    with pytest.raises(UsageError, match="--processes"):
        replace(config, processes=5).validate()


def test_threads_are_honoured_by_every_backend(trained_run):
    doc = bench(trained_run, BenchConfig(threads=1, accuracy=False, **FAST), write=False)
    assert {(r["backend"], r["threads"]) for r in doc["results"]} == {(b, 1) for b, _ in ALL_FIVE}
    assert doc["settings"]["threads_resolved"] == 1


def test_precision_fp32_makes_openvino_run_fp32(trained_run):
    config = BenchConfig(backends=("openvino-cpu",), variants=("fp32",), precision="fp32", accuracy=False, **FAST)
    assert bench(trained_run, config, write=False)["results"][0]["precision"] == "fp32"


@run_if(nvidia_gpu=False)
def test_unknown_or_missing_backends_are_named(trained_run):
    with pytest.raises(UsageError, match="unknown backend 'tpu'"):
        bench(trained_run, BenchConfig(backends=("tpu",)))
    with pytest.raises(BackendUnavailableError, match="torch-cuda is not available here: .*GPU"):
        bench(trained_run, BenchConfig(backends=("torch-cuda",)))


def test_all_means_every_available_backend_and_names_the_others(trained_run):
    config = BenchConfig(backends=("all",), only=("ort-cpu:int8",), accuracy=False, **FAST)
    doc = bench(trained_run, config, write=False)
    assert [(r["backend"], r["variant"]) for r in doc["results"]] == [("ort-cpu", "int8")]
    missing = {u["backend"]: u for u in doc["unavailable"]}
    if "ort-cuda" in missing:
        assert missing["ort-cuda"]["needs_gpu"] and "onnxruntime-gpu" in missing["ort-cuda"]["install"]


def test_absent_variant_files_are_skipped_with_a_note_only_when_asked_for(trained_run, document):
    assert document["skipped"] == []  # fp16 was not exported, and not asked for
    config = BenchConfig(backends=("ort-cpu",), variants=("fp16", "int8"), accuracy=False, **FAST)
    doc = bench(trained_run, config, write=False)
    assert doc["skipped"] == [
        {
            "backend": "ort-cpu",
            "variant": "fp16",
            "reason": "model.fp16.onnx is not in the run (run 'edgetransfer export' --fp16)",
        }
    ]


def test_a_backend_named_with_none_of_its_models_in_the_run_is_said(trained_run, tmp_path):
    """bench --backends ort-cpu,openvino-cpu on a run exported with --no-openvino measured ort-cpu alone, silently."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run.path, copy, ignore=shutil.ignore_patterns("openvino", "bench.*"))
    forget_missing(copy)
    config = BenchConfig(backends=("ort-cpu", "openvino-cpu"), accuracy=False, **FAST)
    doc = bench(RunDir.open(copy), config, write=False)
    assert {r["backend"] for r in doc["results"]} == {"ort-cpu"}
    assert [(s["backend"], s["reason"]) for s in doc["skipped"]] == [
        (
            "openvino-cpu",
            "openvino/model.xml is not in the run (exported with --no-openvino?): none of openvino-cpu's models is",
        )
    ]


def forget_missing(run) -> None:
    """Drop from the run's card.json the artifacts whose files are not there: the card of an export that did not
    make them (--no-int8, --no-openvino, no export yet), not of files deleted since (which bench names)."""
    card_file = Path(run) / "card.json"
    card = json.loads(card_file.read_text())
    card["artifacts"] = {k: v for k, v in card["artifacts"].items() if (Path(run) / k).is_file()}
    card_file.write_text(json.dumps(card))


def test_a_run_without_exported_models(trained_run, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("card.json", "model.safetensors"):
        shutil.copy(trained_run.file(name), bare / name)
    forget_missing(bare)
    with pytest.raises(RunDirError, match="no exported model there; run 'edgetransfer export"):
        bench(RunDir.open(bare), BenchConfig(backends=("ort-cpu", "openvino-cpu"), **FAST))
    # the default backends measure its PyTorch model, and say why the others measured nothing (it was silent)
    doc = bench(RunDir.open(bare), BenchConfig(accuracy=False, **FAST), write=False)
    assert {r["backend"] for r in doc["results"]} == {"torch-cpu"}
    assert f"note: {bare} is not exported: only its PyTorch model is measured" in capsys.readouterr().err
    bench(RunDir.open(bare), BenchConfig(backends=("torch-cpu",), accuracy=False, **FAST), write=False)
    assert "is not exported" not in capsys.readouterr().err  # asked for PyTorch alone: nothing to say


def test_accuracy_on_a_labelled_folder(trained_run, tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path / "extra", per_class=2, seed=7)  # seed 0 would share images with the run's
    config = BenchConfig(backends=("ort-cpu",), variants=("fp32",), data=str(folder), **FAST)
    doc = bench(trained_run, config, write=False)
    assert doc["results"][0]["accuracy"]["images"] == 6 and doc["accuracy_data"]["source"].endswith("(every image)")
    (folder / "class9").mkdir()
    with pytest.raises(DataError, match="one folder per class"):
        bench(trained_run, config)
    with pytest.raises(DataError, match=r"--data .*notes.txt is a file; give a folder of labelled images"):
        (tmp_path / "notes.txt").write_text("x")  # it said 'data folder not found' of a file that is there
        bench(trained_run, replace(config, data=str(tmp_path / "notes.txt")))
    # DIR/train|test/<class>/ with some of the model's classes: each image labelled by its class's name, not by
    # its place among the folder's own classes (class1/ and class2/ alone were scored as class0 and class1)
    import shutil

    from edgetransfer.bench.runner import _labelled

    for split in ("train", "test"):
        made = make_folder(tmp_path / "split" / split, per_class=4, seed=len(split))
        shutil.rmtree(made / "class0")
    some = BenchConfig(data=str(tmp_path / "split"))
    samples, source = _labelled(trained_run, trained_run.load_card(), some)
    labels = trained_run.load_card().labels
    assert samples and source.endswith("(test split)")
    # a class the folder lacks is said: its top-1 is the other classes' (it went unsaid: a new user's trial)
    assert "has no images of 1 of the model's 3 classes (class0): top-1 is measured on the others" in " ".join(
        capsys.readouterr().err.split()
    )
    assert all(labels[s.label] == s.path.parent.name for s in samples), [(s.path, s.label) for s in samples]
    shutil.copytree(tmp_path / "split" / "train" / "class1", tmp_path / "split" / "train" / "class0")
    _labelled(trained_run, trained_run.load_card(), some)  # class0 trains there, yet has no test image: said
    assert "has no images of 1 of the model's 3 classes (class0)" in " ".join(capsys.readouterr().err.split())
    shutil.rmtree(tmp_path / "split" / "train" / "class0")
    shutil.copytree(tmp_path / "split" / "train" / "class1", tmp_path / "split" / "train" / "class7")  # not the model's
    with pytest.raises(DataError, match="classes must be classes of the model"):
        _labelled(trained_run, trained_run.load_card(), some)
    monkeypatch.setenv("HOME", str(tmp_path))  # --data '~/split' (quoted: no shell expands it) is found and read
    with pytest.raises(DataError, match="class7 besides"):
        _labelled(trained_run, trained_run.load_card(), BenchConfig(data="~/split"))
    only_test = make_folder(
        tmp_path / "only" / "Test", per_class=2, seed=7
    ).parent  # DIR/Test/<class>/ alone (any case)
    config = BenchConfig(backends=("ort-cpu",), variants=("fp32",), data=str(only_test), **FAST)
    doc = bench(trained_run, config, write=False)
    assert doc["results"][0]["accuracy"]["images"] == 6 and "Test (every image)" in doc["accuracy_data"]["source"]
    # the run's own data folder, moved: its test split, not every image (training images included: a new user's
    # 100 %)
    card = trained_run.load_card()
    moved = tmp_path / "moved"
    shutil.copytree(card.dataset["path"], moved)
    samples, source = _labelled(trained_run, card, BenchConfig(data=str(moved)))
    test = trained_run.load_splits(card, only=("test",)).test
    assert source.endswith("(the run's own data folder: its test split)")
    assert [(s.path.relative_to(moved), s.label) for s in samples] == [
        (s.path.relative_to(card.dataset["path"]), s.label) for s in test
    ]
    assert "in none of the run's splits" not in capsys.readouterr().err
    # images added to it since are in none of its splits: not scored, said (they went unsaid: a new user's trial)
    first = sorted(p for p in moved.rglob("*.png"))[0]
    for i in range(2):
        shutil.copy(first, first.with_name(f"new{i}.png"))
    again, _ = _labelled(trained_run, card, BenchConfig(data=str(moved)))
    said = " ".join(capsys.readouterr().err.split())
    assert len(again) == len(samples) and "note: 2 image(s) in" in said and "are in none of the run's splits" in said
    # a file its training skipped as bad, and one beside the class folders, are not "added" (review)
    shutil.copy(first, moved / "stray.png")
    import dataclasses

    skipped = dataclasses.replace(
        card, dataset={**card.dataset, "skipped_bad_files": [first.with_name("new1.png").relative_to(moved).as_posix()]}
    )
    _labelled(trained_run, skipped, BenchConfig(data=str(moved)))
    said = " ".join(capsys.readouterr().err.split())
    assert "note: 1 image(s) in" in said and "new0.png" in said, said


# --------------------------------------------------------------------------- schema


def test_the_runs_own_images_under_other_names_are_said_not_held_out(trained_run, tmp_path, capsys):
    """--data with copies of the run's training and validation images, renamed (a "held-out" folder made from the
    same photos): counted by content and said, not scored silently as a held-out figure."""
    import shutil

    from edgetransfer.bench.runner import _labelled

    card = trained_run.load_card()
    splits = trained_run.load_splits(card)
    other = make_folder(tmp_path / "other", per_class=2, seed=7)  # images the run never saw
    for number, sample in enumerate((*splits.train[:3], *splits.val[:2])):
        shutil.copyfile(sample.path, other / card.labels[sample.label] / f"copy_{number}{sample.path.suffix}")
    capsys.readouterr()
    samples, source = _labelled(trained_run, card, BenchConfig(data=str(other)))
    said = capsys.readouterr().err
    assert len(samples) == 11 and "5 of them the run's own: 3 trained on, 2 validated on" in source
    assert "5 of its 11 images are the run's own" in " ".join(said.split()), said
    shutil.rmtree(other)
    fresh = make_folder(tmp_path / "other", per_class=2, seed=7)
    samples, source = _labelled(trained_run, card, BenchConfig(data=str(fresh)))
    assert source == f"{fresh} (every image)" and "the run's own" not in capsys.readouterr().err


def test_the_schema_holds_every_field_and_round_trips(trained_run, document, tmp_path):
    assert validate_document(document) is document
    path = tmp_path / "b.json"
    path.write_text(json.dumps(document))
    assert load_document(path) == json.loads(json.dumps(document))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.pop("machine"), "machine: missing"),
        (lambda d: d["results"][0].pop("model_sha256"), "results[0].model_sha256: missing"),
        (lambda d: d["results"][0]["latency"][0].pop("samples_ms"), "latency[0].samples_ms: missing"),
        (lambda d: d["results"][0]["latency"][0].update(runs="many"), "runs: expected a whole number"),
    ],
)
def test_an_incomplete_document_is_rejected_naming_the_field(document, damage, message):
    broken = json.loads(json.dumps(document))
    damage(broken)
    with pytest.raises(UsageError, match="b.json: .*" + message.replace("[", r"\[")):
        validate_document(broken, "b.json")


def test_an_old_schema_is_rejected_with_what_to_do(document):
    old = {**document, "schema_version": 1}
    with pytest.raises(UsageError, match="schema version 1; this edgetransfer reads version 2: measure it again"):
        validate_document(old, "old.json")
    text = {**document, "schema_version": "2"}  # edited by hand: the right version as text
    with pytest.raises(UsageError, match="text.json: schema_version is the text '2'; it should be the number 2"):
        validate_document(text, "text.json")
    with pytest.raises(UsageError, match="not an edgetransfer bench document"):
        validate_document({"results": []}, "x.json")


def test_tied_scores_rank_by_class_index_as_argmax_does():
    """An int8 model's scores tie often: bench must count the class export's and predict's argmax chose (the lower
    index), or it reports another top-1 for the same model and images."""
    from edgetransfer.bench.measure import top_hits

    tied = np.zeros((1, 60), np.float32)
    tied[0, [46, 51]] = 0.3658
    assert top_hits(tied, np.array([46]), 5) == (1, 1) and top_hits(tied, np.array([51]), 5) == (0, 1)
    scores = np.random.default_rng(0).integers(0, 4, (200, 60)).astype(np.float32)  # many ties
    truth = scores.argmax(1)
    assert top_hits(scores, truth, 5)[0] == 200


def test_what_a_run_lacks_is_named_and_a_failed_bench_leaves_no_folder(trained_run, tmp_path):
    """A run exported without int8 asked for int8 says so (not "no exported model"); a bench that fails before
    measuring leaves no empty --out folder behind; a baseline without results is refused as such."""
    from edgetransfer.bench.command import run_command
    from edgetransfer.bench.config import make_config
    from edgetransfer.bench.profiles import budget_line

    no_int8 = tmp_path / "no_int8"
    shutil.copytree(trained_run.path, no_int8)
    for name in ("model.int8.onnx", "openvino/model.int8.xml", "openvino/model.int8.bin"):
        (no_int8 / name).unlink(missing_ok=True)
    forget_missing(no_int8)
    with pytest.raises(RunDirError, match="has no int8 model for them .* choose --variants from what it has"):
        bench(RunDir.open(no_int8), BenchConfig(backends=("ort-cpu",), variants=("int8",), **FAST))
    # the export option that makes the variant asked for (it said "e.g. with --no-int8" for --variants fp16)
    with pytest.raises(RunDirError, match=r"has no fp16 model for them \(its export made other variants\); export it "):
        bench(RunDir.open(no_int8), BenchConfig(backends=("ort-cpu",), variants=("fp16",), **FAST))
    with pytest.raises(RunDirError, match="export it again with --fp16, or choose --variants"):
        bench(RunDir.open(no_int8), BenchConfig(backends=("ort-cpu",), variants=("fp16",), **FAST))
    no_openvino = tmp_path / "no_openvino"
    shutil.copytree(trained_run.path, no_openvino)
    shutil.rmtree(no_openvino / "openvino")
    forget_missing(no_openvino)
    with pytest.raises(RunDirError, match=r"the run has no OpenVINO IR \(exported with --no-openvino\?\)"):
        bench(RunDir.open(no_openvino), BenchConfig(backends=("openvino-cpu",), variants=("int8",), **FAST))
    out = tmp_path / "reports"
    with pytest.raises(UsageError, match="unknown backend 'tensorflow'"):
        run_command(trained_run, BenchConfig(backends=("ort-cpu", "tensorflow"), **FAST), out_dir=out / "a" / "b")
    assert not out.exists()  # nor the folders above --out (a new user found them left)
    with pytest.raises(UsageError, match="the baseline holds no measured model"):
        make_config({}, baseline={"results": [], "settings": {}})
    check = {"budget": "p99_ms", "passed": False, "value": 55.53, "unit": "ms", "limit": 50, "where": "batch 1"}
    check |= {"backend": "ort-cpu", "variant": "fp32", "what": "p99"}
    assert budget_line(check).startswith("FAIL ort-cpu fp32: p99 55.53 ms > 50 ms")  # the inequality that holds
    assert budget_line({**check, "passed": True, "value": 3.2}).startswith("PASS ort-cpu fp32: p99 3.2 ms <= 50 ms")


def test_more_threads_than_cores_is_said(trained_run, capsys):
    from edgetransfer.machine import usable_cores

    cores = usable_cores()
    bench(trained_run, BenchConfig(backends=("ort-cpu",), variants=("int8",), threads=cores + 2, **FAST), write=False)
    said = " ".join(capsys.readouterr().err.split())
    assert f"note: {cores + 2} threads on the {cores} cores this process may use" in said
    assert "a profile of your own with threads = N under [settings])" in said  # rich had eaten "[settings]"


def test_a_model_file_the_card_records_but_that_is_gone_is_said(trained_run, tmp_path):
    """A deleted model.int8.onnx was skipped silently (skipped: []), and with --variants int8 the error blamed the
    export ('e.g. with --no-int8') though the card records the file and its sha256."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run.path, copy, ignore=shutil.ignore_patterns("bench.*"))
    (copy / "model.int8.onnx").unlink()
    doc = bench(RunDir.open(copy), BenchConfig(backends=("ort-cpu",), accuracy=False, **FAST), write=False)
    assert {(r["backend"], r["variant"]) for r in doc["results"]} == {("ort-cpu", "fp32")}
    assert doc["skipped"] == [
        {
            "backend": "ort-cpu",
            "variant": "int8",
            "reason": "model.int8.onnx is recorded in card.json but missing from the run: restore it, or re-run "
            f"'edgetransfer export {copy}'",
        }
    ]
    with pytest.raises(RunDirError, match="model.int8.onnx is recorded in card.json but missing from the run"):
        bench(RunDir.open(copy), BenchConfig(backends=("ort-cpu",), variants=("int8",), accuracy=False, **FAST))


def test_a_device_bench_stopped_by_a_dropped_connection_leaves_no_temporary_files(tmp_path):
    """On the device, a dropped connection ends the bench with os._exit (remote_worker._stop_group), past the
    with-blocks that remove its temporary folder (the images for accuracy, the measuring processes' files): each
    dropped bench left one behind in the device's /tmp."""
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    script = (
        "import tempfile, pathlib\n"
        "from edgetransfer.bench import remote_worker as w\n"
        "w._own_tmp()\n"
        "folder = tempfile.mkdtemp(prefix='edgetransfer-bench-')\n"  # as runner.bench makes its own
        "pathlib.Path(folder, 'accuracy.npz').write_bytes(b'x')\n"
        "print(folder, flush=True)\n"
        "w._stop_group()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(device_tmp)}
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(device_tmp)  # it wrote where the device's temporary files go
    assert list(device_tmp.iterdir()) == []


def test_a_device_bench_ends_its_processes_without_a_killed_line_from_the_shell(tmp_path):
    """The device's worker ends its process group with SIGKILL, itself included, and the device's sh (dash, as
    Debian's /bin/sh; busybox's ash alike) printed 'Killed' after every successful bench (a new user's trial). The
    command is exec'd now, so no shell waits on it; what it started goes with it, and nothing else is said."""
    import time
    from types import SimpleNamespace

    from edgetransfer.bench.remote import DeviceBench

    wheel = tmp_path / "edgetransfer-0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    device = SimpleNamespace(target=SimpleNamespace(python=sys.executable), python_given=True, label="cam1")
    session = DeviceBench(device, SimpleNamespace(), wheel=wheel, wheelhouse=None, remote_dir=None)
    session.root = str(tmp_path)
    command = session._worker_command("bench")
    assert " && exec env PYTHONPATH=" in command and command.endswith("-m edgetransfer.bench.remote_worker bench")
    (tmp_path / "worker.py").write_text(
        "import os, subprocess\n"
        "try:\n"
        "    os.setpgrp()\n"  # as remote_worker's main: its own group (a session leader leads one already)
        "except OSError:\n"
        "    pass\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "print(child.pid, flush=True)\n"
        "from edgetransfer.bench import remote_worker as w\n"
        "w._stop_group()\n"
    )
    # as sshd runs it: the login shell with -c, in a session (and group) of its own; the worker as the command's
    shell = command.replace("-m edgetransfer.bench.remote_worker bench", "worker.py")
    shell = shell.replace(
        f"PYTHONPATH={tmp_path}/lib/{session.wheel_sha[:16]}", f"PYTHONPATH={os.pathsep.join(sys.path)}"
    )
    done = subprocess.run(["setsid", "sh", "-c", shell], capture_output=True, text=True, timeout=60)
    assert "Killed" not in done.stderr, done.stderr
    child = int(done.stdout.split()[0])
    for _ in range(50):  # gone with the group
        stat = Path(f"/proc/{child}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the worker's child {child} still runs")


def test_a_device_bench_removes_the_folders_of_earlier_benches_that_were_killed(tmp_path):
    """A bench killed outright (SIGKILL, out of memory, power lost) cannot remove its temporary folder: the next
    bench on the device removes those whose process is gone, and no folder of a live process."""
    device_tmp = tmp_path / "device-tmp"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    dead = device_tmp / f"edgetransfer-device-{gone.pid}-abc"
    live = device_tmp / f"edgetransfer-device-{os.getpid()}-def"  # this test's process: alive
    other = device_tmp / "edgetransfer-device-notapid-x"  # not a name of ours
    for folder in (dead, live, other):
        (folder / "sub").mkdir(parents=True)
    script = "from edgetransfer.bench import remote_worker as w\nw._own_tmp()\nprint(w._TMP)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "TMPDIR": str(device_tmp)}
    )
    assert done.returncode == 0, done.stderr
    mine = Path(done.stdout.strip())
    assert not dead.exists() and live.exists() and other.exists()
    assert mine.is_dir() and mine.parent == device_tmp and mine.name.startswith("edgetransfer-device-")


SPAWNED = """
import multiprocessing, signal
from edgetransfer.bench.measure import _sigint_blocked

def report(conn):
    conn.send(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    seen = []
    for _ in range(2):  # the first child of a process too (the resource tracker's start unblocked SIGINT)
        mine, theirs = context.Pipe()  # a pipe, as bench's: a Queue would start the tracker before
        with _sigint_blocked():
            child = context.Process(target=report, args=(theirs,))
            child.start()
        seen.append(mine.recv())
        child.join()
    print(seen, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""


def test_a_measuring_process_starts_with_ctrl_c_blocked_until_its_output_is_its_log(tmp_path):
    """Ctrl-C reaches every process of the terminal: a measuring child still importing printed its KeyboardInterrupt
    traceback over the bench's output. Children spawned as bench spawns them start with SIGINT blocked (_worker
    unblocks it once its output goes to its log), the first one too; the parent's mask is as it was."""
    import subprocess
    import sys

    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[True, True] False", done.stdout + done.stderr


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="Linux's /proc")
def test_memory_is_in_mb_as_the_model_sizes_beside_it():
    """Peak RSS was MiB under the label "MB" (model sizes and the profiles' budgets are 10^6 bytes): 4.9 % off."""
    import os

    from edgetransfer.bench.measure import _rss_mb

    pages = int(Path("/proc/self/statm").read_text().split()[1])  # resident pages
    assert _rss_mb(peak=False) == pytest.approx(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, rel=0.01)


def test_processes_above_rounds_says_both_numbers():
    """'--processes must be at least 1 and at most --rounds' gave neither number (a new user's trial)."""
    with pytest.raises(UsageError, match=r"at most --rounds \(5\), not 20$"):
        BenchConfig(processes=20, rounds=5).validate()


def test_a_profiles_batches_are_measured_once_each_in_order():
    """A profile's batches = [8, 1, 8] measured batch 8 twice (duplicate rows in every report, rounds 4 of 2) where
    --batch 8,1,8 measured it once (a review); a profile's processes past its rounds said '--processes', a flag the
    user never gave, without naming the profile."""
    from edgetransfer.bench.config import make_config
    from edgetransfer.bench.profiles import parse_profile

    profile = parse_profile("[settings]\nbatches = [8, 1, 8]\n", "mine.toml")
    assert make_config({}, profile=profile).batches == (1, 8)
    profile = parse_profile("[settings]\nrounds = 2\nprocesses = 20\n", "mine.toml")
    with pytest.raises(UsageError, match=r"at most --rounds \(2\), not 20 \(profile mine sets processes and rounds\)$"):
        make_config({}, profile=profile).validate()


def test_a_static_batch_backend_keeps_one_compiled_model_at_a_time():
    """OpenVINO compiles one model per batch size; all were kept until the end, so the peak RSS of --batch 1..64
    (308 MB) was about twice that of batch 64 alone (162 MB): it grew with the sizes measured (a review)."""
    import weakref

    from edgetransfer.backends.base import LoadOptions
    from edgetransfer.bench.measure import Job, LocalMeasurer

    class Compiled:
        def __init__(self, batch):
            self.batch, self.precision = batch, "fp32"

        def run(self, images):
            return np.zeros((len(images), 3), np.float32)

    class Static:
        static_batch, supports_async = True, False

        def load(self, path, card, options):
            return Compiled(options.batch)

    measurer = LocalMeasurer(Job(Static(), "fp32", "model.xml", None, LoadOptions(), np.zeros((1, 3, 8, 8))))
    first = weakref.ref(measurer._session(1))
    measurer.time(8, 2, 0.0)
    assert first() is None and [s.batch for s in measurer.sessions.values()] == [8]


def test_load_time_is_the_models_not_the_librarys_import():
    """load_s (docs: 'the library already imported') was mostly `import torch` for torch-cpu (3.9 s of a first
    load, 0.2 s of a second): the backend's libraries are imported before the timer starts (a review)."""
    import time

    from edgetransfer.backends.base import LoadOptions
    from edgetransfer.backends.ort import OrtCpuBackend
    from edgetransfer.bench.measure import Job, LocalMeasurer

    class Session:
        precision = "fp32"

        def run(self, images):
            return np.zeros((len(images), 3), np.float32)

    class SlowImport(OrtCpuBackend):
        imported = False

        def _import(self):  # a library's import: slow the first time in a process only
            if not self.imported:
                time.sleep(0.5)
                self.imported = True

        def preload(self):
            self._import()

        def load(self, path, card, options):
            self._import()
            return Session()

    assert OrtCpuBackend.libraries == ("onnxruntime",)
    started = LocalMeasurer(Job(SlowImport(), "fp32", "m.onnx", None, LoadOptions(), np.zeros((1, 3, 8, 8)))).start(1)
    assert started["load_s"] < 0.25, started


def test_processes_with_in_process_is_refused():
    """`bench --in-process --processes 2` measured in one process, said nothing and recorded processes 2 (a new
    user's trial)."""
    with pytest.raises(UsageError, match=r"--processes 2 measures each model in 2 fresh processes, and --in-process"):
        BenchConfig(processes=2, rounds=4, isolate=False).validate()
    BenchConfig(processes=2, rounds=4).validate()
    BenchConfig(processes=1, rounds=4, isolate=False).validate()
    # a baseline's processes with --in-process, or an older in-process baseline that recorded processes 8: measured
    # in one process, as it does, not refused for a --processes the user never typed (a review's finding)
    from edgetransfer.bench.config import make_config

    baseline = {"results": [{"variant": "fp32"}], "settings": {"processes": 8, "rounds": 24}}
    config = make_config({"isolate": False}, baseline=baseline)
    config.validate()
    assert config.processes == 1 and config.isolate is False
    old = {"results": [{"variant": "fp32"}], "settings": {"processes": 8, "rounds": 24, "isolated": False}}
    assert make_config({}, baseline=old).processes == 1
    assert make_config({}, baseline=baseline).processes == 8
    with pytest.raises(UsageError, match="--processes 2 measures"):
        make_config({"isolate": False, "processes": 2}, baseline=baseline).validate()

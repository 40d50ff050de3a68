"""The pipeline: finetune -> export -> bench, with the reports ``edgetransfer bench`` writes."""

import shutil

from edgetransfer import pipeline
from edgetransfer.bench import BenchConfig
from edgetransfer.rundir import BENCH_REPORTS, RunDir


def test_the_pipeline_writes_every_bench_report(trained_run, tmp_path, monkeypatch, capsys):
    """Issue 20: the demo wrote bench.json only, while models/README.md lists bench.csv, .md and .html."""
    run = RunDir.open(shutil.copytree(trained_run.path, tmp_path / "run"))
    monkeypatch.setattr(pipeline, "finetune", lambda config: run)  # the stages before bench: done already
    monkeypatch.setattr(pipeline, "export", lambda run, config: None)
    config = BenchConfig(backends=("ort-cpu",), isolate=False, warmup=1, warmup_time=0, min_runs=3, min_time=0)
    done, document, timings = pipeline.run_pipeline(
        pipeline.FinetuneConfig(data=str(tmp_path), out=str(run.path)), bench_config=config
    )
    assert done is run and {r["backend"] for r in document["results"]} == {"ort-cpu"}
    assert all(run.file(name).is_file() for name in BENCH_REPORTS), BENCH_REPORTS
    pipeline.summary(done, document, timings)
    assert f"bench reports: {run.file('bench.json')}" in capsys.readouterr().out


def test_ctrl_c_in_the_pipelines_first_epoch_leaves_the_previous_run_as_it_was(trained_run, tmp_path, monkeypatch):
    """--overwrite moves the previous run aside, and puts it back when fine-tuning stops before its first epoch."""
    from typer.testing import CliRunner

    from edgetransfer import finetune as module
    from edgetransfer.cli import app

    out = shutil.copytree(trained_run.path, tmp_path / "run")
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "augment", interrupt)  # Ctrl-C in the first training step
    data = trained_run.load_card().dataset["path"]
    args = ["pipeline", "--data", data, "--out", str(out), "--size", "32", "--epochs", "1", "--overwrite"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    assert f"interrupted; nothing was kept: {out} is as it was" in result.stderr
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_in_the_pipelines_export_names_the_commands_that_go_on(trained_run, tmp_path, monkeypatch):
    """Stopped in its export, the pipeline said only "nothing half-written was kept": run again it refused the
    folder, and --overwrite trained again (a new user's trial). It names the commands that go on from the run."""
    import shlex

    from typer.testing import CliRunner

    from edgetransfer import pipeline as module
    from edgetransfer.cli import app

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "export", interrupt)
    out = tmp_path / "my run"
    data = trained_run.load_card().dataset["path"]
    result = CliRunner().invoke(app, ["pipeline", "--data", data, "--out", str(out), "--size", "32", "--epochs", "1"])
    assert result.exit_code == 130, result.output
    run = shlex.quote(str(out))
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted; {out} keeps the fine-tuned run: 'edgetransfer export {run}', then 'edgetransfer bench {run}', "
        "go on"
    )


def test_the_summary_of_a_run_without_test_images(trained_run, tmp_path, monkeypatch, capsys):
    """A dataset too small to hold out test images (2 per class) has null test top-1s in its card: the summary says
    they were not measured (it multiplied None: a TypeError traceback after every stage had run)."""
    import json

    run = RunDir.open(shutil.copytree(trained_run.path, tmp_path / "run"))
    card = json.loads(run.file("card.json").read_text())
    for metrics in card["metrics"].values():
        metrics["test_top1"] = None
    run.file("card.json").write_text(json.dumps(card))
    monkeypatch.setattr(pipeline, "finetune", lambda config: run)
    monkeypatch.setattr(pipeline, "export", lambda run, config: None)
    config = BenchConfig(
        backends=("ort-cpu",), variants=("fp32",), isolate=False, warmup=1, warmup_time=0, min_runs=3, min_time=0
    )
    done, document, timings = pipeline.run_pipeline(
        pipeline.FinetuneConfig(data=str(tmp_path), out=str(run.path)), bench_config=config
    )
    pipeline.summary(done, document, timings)
    out = capsys.readouterr().out
    assert "PyTorch (fine-tuned)   not measured (no test images)" in out and "nan" not in out.lower(), out
    assert "ONNX int8              not measured (no test images)" in out, out

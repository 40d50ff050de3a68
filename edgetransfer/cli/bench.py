"""edgetransfer bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import KNOWN_HOSTS_HELP, TARGETS_HELP, WHEELHOUSE_HELP, friendly_errors, split_list

GATE = "Regression gate"
MEASURE = "Measurement"
DEVICES = "On devices (SSH)"


@friendly_errors
def bench(
    run: Annotated[Path, typer.Argument(help="Run directory with exported models.")],
    backends: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: torch-cpu, torch-cuda, ort-cpu, ort-cuda, ort-trt, ort-openvino, openvino-cpu, "
            "openvino-gpu; or 'all' (every one available here).",
            show_default="torch-cpu, ort-cpu, openvino-cpu",
        ),
    ] = None,
    variants: Annotated[
        str | None, typer.Option(help="Comma-separated: fp32, fp16, int8.", show_default="every one the run has")
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            help="Batch sizes, any from 1 to 1024: 1,3,8 or 1..8 (a range doubles: 1,2,4,8).",
            show_default="1",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for every backend.", show_default="all usable cores")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto (backend default; OpenVINO may run fp32 in bf16) or fp32 (force fp32 math).", show_default="auto"
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Deployment profile: camera, vehicle, server, or a .toml file (settings + budgets)."),
    ] = None,
    recommend: Annotated[bool, typer.Option(help="Name the fastest variant within the accuracy budget.")] = False,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            help="--recommend's accuracy budget: top-1 points below fp32 (0..100). A profile's own top-1 budget, "
            "judged PASS/FAIL, is its file's max_top1_drop_points.",
            show_default="1.0 or the profile's",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for bench.json/.csv/.md/.html.", show_default="the run directory")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help="Untimed runs first, at least.", show_default="10", rich_help_panel=MEASURE)
    ] = None,
    warmup_time: Annotated[
        float | None, typer.Option(help="Untimed seconds first, at least.", show_default="0.2", rich_help_panel=MEASURE)
    ] = None,
    min_runs: Annotated[
        int | None, typer.Option(help="Timed runs, at least.", show_default="50", rich_help_panel=MEASURE)
    ] = None,
    min_time: Annotated[
        float | None, typer.Option(help="Timed seconds, at least.", show_default="1.0", rich_help_panel=MEASURE)
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Interleaved rounds the timed runs are split into.", show_default="10", rich_help_panel=MEASURE
        ),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="Fresh processes per model that share the rounds: a process's luck (where its memory landed) "
            "averages out. More than 1 costs a process start per model each time.",
            show_default="1",
            rich_help_panel=MEASURE,
        ),
    ] = None,
    async_time: Annotated[
        float | None,
        typer.Option(
            help="Seconds of multi-stream throughput (OpenVINO); 0: off.", show_default="0.5", rich_help_panel=MEASURE
        ),
    ] = None,
    accuracy: Annotated[
        bool | None, typer.Option(help="Measure top-1/top-5.", show_default="yes", rich_help_panel=MEASURE)
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled image folder for accuracy: DIR/<class>/ (every image), or DIR/train|val|test/<class>/ (its "
            "test split); the run's own training or validation images in it, by content, are counted and said.",
            show_default="the run's test split",
            rich_help_panel=MEASURE,
        ),
    ] = None,
    isolate: Annotated[
        bool | None,
        typer.Option(
            "--isolate/--in-process",
            help="Each model in a fresh process (own peak RSS; a crash stays there).",
            show_default="isolate",
            rich_help_panel=MEASURE,
        ),
    ] = None,
    save_baseline: Annotated[
        Path | None,
        typer.Option(
            help="Also save this run's document as a baseline file, with the machine probe measured beside the "
            "models (a plain bench.json has none); its folder is made.",
            rich_help_panel=GATE,
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="Compare with this baseline: exit 1 if slower, 2 if it cannot compare.", rich_help_panel=GATE
        ),
    ] = None,
    max_regression: Annotated[
        str,
        typer.Option(help="Slowdown tolerated before the gate fails, a percentage: 10% (or 10).", rich_help_panel=GATE),
    ] = "10%",
    relative_to: Annotated[
        str | None,
        typer.Option(
            help="BACKEND[:variant]: compare ratios to it within one run (with --baseline: against the baseline's). "
            "The reference itself is not judged, and a slowdown common to it and the models cancels.",
            rich_help_panel=GATE,
        ),
    ] = None,
    reference_run: Annotated[
        Path | None,
        typer.Option(
            help="Another run of the same model (e.g. the main branch's build): its models are measured side by "
            "side with this run's, in the same rounds, and the gate fails (exit 1) if this run's are slower. No "
            "stored times, so it holds on any machine, loaded or not.",
            rich_help_panel=GATE,
        ),
    ] = None,
    confirm: Annotated[
        bool,
        typer.Option(
            help="Measure again what looks (possibly) slower and judge it on both measurements before failing.",
            rich_help_panel=GATE,
        ),
    ] = True,
    on: Annotated[
        str | None,
        typer.Option(
            help="Also measure on these devices, over SSH: ssh://user@host[:port] or names from the targets file, "
            "comma-separated. Models, images and a runtime-only wheel are copied (checked by sha256); torch-free "
            "backends only. See docs/remote.md.",
            rich_help_panel=DEVICES,
        ),
    ] = None,
    targets: Annotated[
        Path | None,
        typer.Option(help=TARGETS_HELP, show_default="./targets.toml", rich_help_panel=DEVICES),
    ] = None,
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            help=WHEELHOUSE_HELP,
            rich_help_panel=DEVICES,
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="The device's Python, used as it is (it must have the runtime's packages).",
            show_default="a venv made with python3",
            rich_help_panel=DEVICES,
        ),
    ] = None,
    remote_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder on the device.", show_default="~/.cache/edgetransfer/remote", rich_help_panel=DEVICES
        ),
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(
            help=KNOWN_HOSTS_HELP,
            show_default="first seen keys recorded in RUN/known_hosts",
            rich_help_panel=DEVICES,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the bench document (bench.json) on stdout, and nothing else; the table on stderr."
        ),
    ] = False,
) -> None:
    """Measure latency, throughput, memory and accuracy per backend and variant; write bench.json, CSV, Markdown
    and HTML; check profile budgets; gate against a baseline (exit 1: slower, or no model passes the profile's
    budgets; 2: cannot compare).

    A measurement is flagged noisy (a warning, in the reports too) when its CV is above 50%.
    It is flagged so too when the 95% confidence interval of its median is wider than ±5%."""
    from rich.console import Console
    from rich.markup import escape

    from edgetransfer import console
    from edgetransfer.adapt import say_not_adapted
    from edgetransfer.bench.command import run_command
    from edgetransfer.bench.config import make_config, parse_batches, parse_fraction
    from edgetransfer.bench.gate import GateConfig
    from edgetransfer.bench.gate_text import gate_lines
    from edgetransfer.bench.profiles import budget_line, load_profile, recommendation_line
    from edgetransfer.bench.report import (
        device_gates,
        device_lines,
        device_problems,
        noisy,
        overflow_lines,
        profile_notes,
        table,
    )
    from edgetransfer.bench.schema import load_document
    from edgetransfer.errors import UsageError
    from edgetransfer.rundir import RunDir

    if baseline and save_baseline and Path(baseline).expanduser().resolve() == save_baseline.expanduser().resolve():
        raise UsageError(  # it gated, then overwrote the baseline: moved forward every run, a creep never fails
            f"--save-baseline {save_baseline} is the --baseline file: each run would replace the baseline it was "
            "judged by, so a slow creep never fails; save to another file and promote it deliberately"
        )
    target = RunDir.open(run)
    say_not_adapted(target)
    base = load_document(baseline) if baseline else None
    gate = None
    if reference_run and (baseline or relative_to):
        raise UsageError(
            "--reference-run measures two runs side by side: it does not combine with --baseline or --relative-to"
        )
    threshold = parse_fraction(max_regression)  # a bad value is said even where no gate runs
    # the gate's intervals and every report's noise check: a runtime-only install is told before measuring (it
    # measured every model, then said so)
    import scipy.stats  # noqa: F401

    if baseline or relative_to or reference_run:
        gate = GateConfig(max_regression=threshold, relative_to=relative_to, confirm=confirm)
    elif max_regression != "10%":  # given, and nothing to gate: said, not silently ignored
        console.err.print(
            f"[yellow]note: --max-regression {max_regression} is not used: no gate runs without --baseline, "
            "--relative-to or --reference-run[/]"
        )
    explicit = {
        "backends": split_list(backends) if backends is not None else None,
        "variants": split_list(variants) if variants is not None else None,
        "batches": parse_batches(batch) if batch else None,
        "threads": threads,
        "precision": precision,
        "warmup": warmup,
        "warmup_time": warmup_time,
        "min_runs": min_runs,
        "min_time": min_time,
        "rounds": rounds,
        "processes": processes,
        "async_time": async_time,
        "accuracy": accuracy,
        "data": str(data) if data else None,
        "isolate": isolate,
        "max_accuracy_drop": max_accuracy_drop,
        "recommend": recommend or None,
        "reference_run": str(reference_run) if reference_run else None,
        "probe": True if baseline or save_baseline else None,  # the machine probe: a stored baseline's yardstick
    }
    loaded = load_profile(profile) if profile else None
    config = make_config(explicit, profile=loaded, baseline=base)
    if max_accuracy_drop is not None and not recommend:  # (it read as a budget bench judged; only --recommend does;
        # said once the value is checked: a NaN read "nan is not used" above its one-line error)
        config.validate()
        console.err.print(
            f"[yellow]note: --max-accuracy-drop {max_accuracy_drop:g} is not used: it is --recommend's budget (a "
            "profile's top-1 budget is its file's max_top1_drop_points)[/]"
        )
    if loaded and base and threads is None and "threads" not in loaded.settings and config.threads is not None:
        console.err.print(  # its budgets read as the profile's description says ('all cores'), measured otherwise
            f"[yellow]note: {config.threads} thread(s), as the baseline was measured (the gate compares like with "
            f"like): the profile {escape(loaded.name)}'s budgets are judged at that, not as its description says "
            f"({escape(loaded.description)})[/]"
        )
    devices = before_measuring = None
    if on is not None:
        from edgetransfer.bench.remote import bench_devices, plan_devices, preflight

        found = plan_devices(on, target, targets=targets, python=python, known_hosts=known_hosts, wheelhouse=wheelhouse)
        early: dict[str, str] = {}

        def before_measuring() -> None:  # after the local checks, before minutes of local measuring
            early.update(preflight(found, base, str(baseline) if baseline else None))

        def devices():
            return bench_devices(
                target, config, found, known_errors=early, gate=gate, baseline=base,
                baseline_name=str(baseline) if baseline else None, wheelhouse=wheelhouse, remote_dir=remote_dir,
            )  # fmt: skip

    outcome = run_command(
        target,
        config,
        gate=gate,
        baseline=base,
        baseline_name=str(baseline) if baseline is not None else None,
        save_baseline=save_baseline,
        out_dir=out,
        devices=devices,
        preflight=before_measuring,
    )
    document = outcome.document
    shown = console.err if as_json else console.out  # with --json, stdout holds the document alone
    if shown.is_terminal:
        shown.print(table(document))
    else:  # a log or a pipe: the whole table, not squeezed into 80 columns
        Console(width=160, highlight=False, soft_wrap=True, stderr=as_json).print(table(document))
    for item in document["unavailable"]:
        console.err.print(f"[dim]unavailable {item['backend']}: {item['reason']}; {item['install']}[/]")
    for line in device_problems(document):  # each names its device ("on cam1: ...")
        console.err.print(f"[{'red' if line.startswith('FAILED') else 'dim'}]{escape(line)}[/]")
    for line in noisy(document):
        console.err.print(f"[yellow]{escape(line)}[/]")
    if document.get("profile"):
        described = document["profile"].get("description")
        shown.print(f"profile {document['profile']['name']}" + (f": {described}" if described else ""))
        for note in profile_notes(document):
            shown.print(f"  [yellow]{escape(note)}[/]", markup=True)
        for check in document["budget_checks"]:
            shown.print(f"  [{'green' if check['passed'] else 'red'}]{budget_line(check)}[/]", markup=True)
    if recommend:
        shown.print(recommendation_line(document["recommendation"]))
    if outcome.gate is not None:
        shown.print("\n".join(gate_lines(outcome.gate)), markup=False)
    for line in device_lines(document):
        shown.print(line, markup=False)
    if document.get("devices"):
        int8_record = target.load_card().artifacts.get("model.int8.onnx", {}).get("quantization", {})
        for line in overflow_lines(document, int8_record.get("weight_bits")):
            console.err.print(f"[yellow]{escape(line)}[/]")
    for name, result in device_gates(document):
        shown.print(f"on {name}:\n" + "\n".join(gate_lines(result)), markup=False)
    shown.print("wrote " + ", ".join(str(p) for p in outcome.written), markup=False)
    for device in outcome.devices:
        if device.error:
            where = device.device.label
            where += "" if where == device.device.address else f" ({device.device.address})"
            print(f"error: {where}: {device.error}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(document, indent=1) + "\n")
        sys.stdout.flush()
    if outcome.gate is not None and outcome.exit_code != outcome.gate.exit_code:  # "gate: pass (exit 0)", then 2
        why_text = "; ".join(outcome.reasons()) or "see above"
        print(f"exit {outcome.exit_code}, not the gate's {outcome.gate.exit_code}: {why_text}", file=sys.stderr)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)

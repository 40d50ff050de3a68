"""edgetransfer search."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import KNOWN_HOSTS_HELP, TARGETS_HELP, WHEELHOUSE_HELP, friendly_errors, split_list
from edgetransfer.cli.finetune import DATA_HELP

CANDIDATES = "Candidates"


def _default(name: str):
    """An option's default: SearchConfig's own, never a copy."""
    from edgetransfer.search.config import SearchConfig

    return next(f.default for f in dataclasses.fields(SearchConfig) if f.name == name)


STUDY = "Study and workers"
DEVICES = "Measure on devices (--on)"


def _ints(text: str | None, option: str) -> tuple[int, ...] | None:
    from edgetransfer.errors import UsageError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))  # an empty item ("64,,96") is refused, not skipped
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected whole numbers like 96,128,160") from None


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    """A comma-separated list; given empty, an error as --sizes' is (it meant the defaults, unsaid)."""
    from edgetransfer.errors import UsageError

    if text is None:
        return None
    names = split_list(text)
    if not names:
        raise UsageError(f"{option} is empty; name at least one, or leave the option out for the defaults")
    return names


@friendly_errors
def search(
    out: Annotated[str, typer.Option(help="Folder of the search: its study, one run per trial, the reports.")],
    data: Annotated[str | None, typer.Option(help=DATA_HELP, show_default="the study's (--worker, --resume)")] = None,
    profile: Annotated[
        str, typer.Option(help="Deployment profile with the latency budget: camera, vehicle, server or a .toml file.")
    ] = _default("profile"),
    time_budget: Annotated[
        str | None,
        typer.Option(
            help="Stop starting trials after this long: 2h, 30m, 90s (a --worker without one keeps its lead's).",
            show_default="none",
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(help="Trials in all, every worker together.", show_default="until every candidate was tried"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (postgresql://user@host/db for workers on many machines).",
            show_default="sqlite in --out",
            rich_help_panel=STUDY,
        ),
    ] = None,
    worker: Annotated[
        bool, typer.Option(help="Join the search in --storage (or --out) and run trials for it.", rich_help_panel=STUDY)
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the search in --out; trials of dead workers are marked failed.", rich_help_panel=STUDY
        ),
    ] = False,
    mlflow: Annotated[
        str | None,
        typer.Option(
            help="Log every trial to MLflow: a tracking URI, or a folder (a SQLite store FOLDER/mlflow.db, its "
            "artifacts/ beside it).",
            rich_help_panel=STUDY,
        ),
    ] = None,
    heartbeat: Annotated[
        int,
        typer.Option(
            help="Seconds between a worker's heartbeats; a trial silent for 6 of them is failed.", rich_help_panel=STUDY
        ),
    ] = _default("heartbeat"),
    backbones: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated backbones.",
            show_default="every one with offline weights here",
            rich_help_panel=CANDIDATES,
        ),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Input sizes (multiples of 32).",
            show_default="from 96 (64 for images of 96 px or less), step 32, to the largest not above each backbone's "
            "own size (224 for Lite1's 240)",
            rich_help_panel=CANDIDATES,
        ),
    ] = None,
    int8_methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: static, qat, dynamic (slow for CNNs in ONNX Runtime), auto (export's own: static, "
            "or qat where static loses accuracy; the search tries both itself), none (fp32).",
            show_default="static, qat",
            rich_help_panel=CANDIDATES,
        ),
    ] = None,
    int8_weights: Annotated[
        str,
        typer.Option(
            help="Bits of every trial's int8 weights, as export's --int8-weights: 7bit, 8bit or auto (7 where the "
            "machine that starts the search is x86 without VNNI, else 8; recorded for every worker). Measuring on an "
            "x86 device without VNNI (--on): pass 7bit.",
            rich_help_panel=CANDIDATES,
        ),
    ] = "auto",
    epochs: Annotated[
        int | None,
        typer.Option(help="Fine-tuning epochs per trial.", show_default="finetune's", rich_help_panel=CANDIDATES),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Training batch size.", show_default="finetune's", rich_help_panel=CANDIDATES)
    ] = None,
    pruner: Annotated[
        str, typer.Option(help="Stop hopeless trials early: median, halving or none.", rich_help_panel=CANDIDATES)
    ] = _default("pruner"),
    backend: Annotated[
        str, typer.Option(help="Where latency is measured: ort-cpu or openvino-cpu.", rich_help_panel=CANDIDATES)
    ] = _default("backend"),
    min_time: Annotated[
        float | None,
        typer.Option(help="Bench seconds per model.", show_default="the profile's or 1.0", rich_help_panel=CANDIDATES),
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(
            help="Measure each trial's latency on these devices (ssh://user@host[:port] or targets.toml names, "
            "comma-separated), as 'bench --on' does; the slowest one holds the budget.",
            show_default="here",
            rich_help_panel=DEVICES,
        ),
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(help=TARGETS_HELP, show_default="./targets.toml", rich_help_panel=DEVICES),
    ] = None,
    wheelhouse: Annotated[
        str | None,
        typer.Option(
            help=WHEELHOUSE_HELP,
            rich_help_panel=DEVICES,
        ),
    ] = None,
    known_hosts: Annotated[
        str | None,
        typer.Option(
            help=KNOWN_HOSTS_HELP,
            show_default="first seen keys recorded in OUT/known_hosts",
            rich_help_panel=DEVICES,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the training and the sampler.")] = _default("seed"),
    device: Annotated[str, typer.Option(help="Training device: auto, cpu or cuda.")] = _default("device"),
    skip_bad: Annotated[
        bool,
        typer.Option(help="Train every trial on the readable images of a folder with bad files (listed in each card)."),
    ] = False,
) -> None:
    """Find the most accurate model within the profile's latency budget: backbone x input size x int8 method, each
    trial an ordinary run (finetune -> export -> bench); the Pareto front, the pick and every trial (exit 1: trials
    were measured and none meets the budget, the closest named; or no trial finished).

    Each trial is ranked by its exported model's validation top-1; the test split is read for the final report only.
    docs/search.md has the details (workers, --resume, storage, the report files)."""
    from edgetransfer import console
    from edgetransfer.errors import UsageError
    from edgetransfer.search import SearchConfig, parse_duration, search
    from edgetransfer.search import report as rep

    if data is None and not (worker or resume):
        raise UsageError("--data is needed to start a search (--worker and --resume take the study's)")
    config = SearchConfig(
        data=data or "",
        out=out,
        profile=profile,
        time_budget=parse_duration(time_budget) if time_budget is not None else None,
        trials=trials,
        storage=storage,
        worker=worker,
        resume=resume,
        mlflow=mlflow,
        backbones=_names(backbones, "--backbones"),
        sizes=_ints(sizes, "--sizes"),
        int8_methods=_names(int8_methods, "--int8-methods"),
        int8_weights=int8_weights,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        skip_bad=skip_bad,
        pruner=pruner,
        backend=backend,
        min_time=min_time,
        heartbeat=heartbeat,
        on=on,
        targets=targets,
        wheelhouse=wheelhouse,
        known_hosts=known_hosts,
    )
    try:
        result = search(config)
    except KeyboardInterrupt:
        if (Path(out).expanduser() / "study.db").is_file() or config.storage:
            how = "--worker" if worker else "--resume"
            print(
                f"interrupted; any trial that finished is kept in the study: 'edgetransfer search {how} --out {out}"
                f"{' --storage URL' if config.storage else ''}' continues (the interrupted trial is tried again)",
                file=sys.stderr,
            )
            raise typer.Exit(130) from None
        raise
    if worker:
        mine = [r for r in result.rows if r["number"] in result.mine]
        if not mine:
            console.out.print(f"this worker ran no trial (the search stopped: {result.stopped})", markup=False)
            return
        console.out.print(
            rep.trials_table(
                mine, result.budget, title=f"this worker's trials ({result.stopped})", width=console.out.width
            )
        )
        _exit_if_none_finished(mine, "none of this worker's trials finished")
        return
    console.out.print(rep.pareto_table(result.rows, result.budget))
    for line in rep.verdict(result.rows, result.budget):
        console.out.print(line, markup=False)
    console.out.print(
        rep.trials_table(
            result.rows, result.budget, title=f"every trial (stopped: {result.stopped})", width=console.out.width
        )
    )
    console.out.print("reports: " + ", ".join(str(p) for p in result.written), markup=False)
    if result.document.get("recommended") is None and result.document.get("closest") is not None:
        raise typer.Exit(1)  # trials were measured and none meets the budget: a script can tell (as bench's exit 1)
    if result.document.get("closest") is None:
        _exit_if_none_finished(result.rows, "no trial finished")


def _exit_if_none_finished(rows: list[dict], what: str) -> None:
    """Exit 1 with one line when trials failed and none of ``rows`` finished (done or pruned): the search, or this
    worker's part of it, produced nothing a script should take for a result."""
    failed = [r for r in rows if r["state"] == "failed"]
    if failed and not any(r["state"] in ("done", "pruned") for r in rows):
        last = failed[-1]
        print(f"error: {what}, {len(failed)} failed (trial {last['number']}: {last['note']})", file=sys.stderr)
        raise typer.Exit(1)

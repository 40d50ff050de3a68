"""edgetransfer finetune."""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from edgetransfer.cli._common import friendly_errors
from edgetransfer.errors import WriteError
from edgetransfer.finetune_config import RESUME_STATE, FinetuneConfig
from edgetransfer.rundir import CARD


def config_default(name: str) -> str:
    """What ``--help`` shows as an option's default: the library's own (FinetuneConfig), never a copy."""
    return str(next(f.default for f in dataclasses.fields(FinetuneConfig) if f.name == name))


OUT_HELP = "Run directory to create (default: a folder in models/ named <data>-<backbone>)."
DATA_HELP = (
    "Image folder: DIR/<class>/*.png|jpg (split 70/15/15 with --seed), or DIR/train/<class>/... with DIR/val and "
    "DIR/test beside it (in any case; valid/, training/, testing/ too; without a val or a test folder 15 % of train "
    "is held out for each); 'digits' for the built-in handwritten digits."
)


def default_out(data: str, backbone: str) -> str:
    """models/<data folder's name>-<backbone> (`--data .`, `..` or `~` named after the folder they are); where that
    lands inside the data folder (run from inside it), a :class:`UsageError` that says it is the default --out."""
    from edgetransfer.errors import UsageError

    folder = Path(data).expanduser().resolve()
    out = str(Path("models") / f"{folder.name or 'data'}-{backbone}")
    if data != "digits" and Path(out).resolve().is_relative_to(folder):
        raise UsageError(
            f"the default --out, {out} (models/ in the current folder), is inside --data {data}: run from outside "
            "the data folder, or give --out"
        )
    return out


@friendly_errors
def finetune(
    data: Annotated[
        str | None, typer.Option("--data", help=DATA_HELP + " Required, here or in the --config recipe.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "--recipe", help="A TOML recipe holding any of these options; flags override it."),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(help="Backbone name (see 'edgetransfer models').", show_default=config_default("backbone")),
    ] = None,
    out: Annotated[str | None, typer.Option(help=OUT_HELP, show_default=False)] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Start from this weights file (.pth or .safetensors) instead of ImageNet's: the backbone's own, or "
            "a run's model.safetensors (its body; the head is new)."
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Input resolution in pixels (32..1024).",
            show_default="from the images: median shorter side rounded up to 32, within 96..the backbone's own size "
            "(224; EfficientNet-Lite1 240, Lite2 260)",
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="auto (full from 300 training images, else two-phase), two-phase (head, then the whole network "
            "at lr x --body-lr-scale), full (the whole network from the first step), partial (--unfreeze N), "
            "linear-probe.",
            show_default=config_default("strategy"),
        ),
    ] = None,
    head_epochs: Annotated[
        int | None, typer.Option(help="two-phase: head-only epochs.", show_default=config_default("head_epochs"))
    ] = None,
    unfreeze: Annotated[
        int | None, typer.Option(help="partial: last body blocks that learn.", show_default=config_default("unfreeze"))
    ] = None,
    freeze_early: Annotated[
        bool | None,
        typer.Option(
            help="Keep the early, high-resolution blocks (output stride 4 or less: generic edge and texture "
            "filters) fixed while the rest of the body learns; their BatchNorm statistics still follow your data "
            "(self-training with --unlabeled still adapts every block). "
            "About 1.3-1.9x the whole-network images/s on a CPU.",
            show_default="freeze-early where --strategy auto chose full, else no-freeze-early",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the training split, at most.", show_default=config_default("epochs"))
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Images per training step (2..4096); with --nproc-per-node, in each process.",
            show_default="32; below 320 training images about 10 steps per epoch, at least 8 images each; several "
            "processes share it (at least 4 each)",
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate of the head (AdamW).", show_default=config_default("lr"))
    ] = None,
    body_lr_scale: Annotated[
        float | None,
        typer.Option(help="The body's learning rate is lr times this.", show_default=config_default("body_lr_scale")),
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="AdamW weight decay.", show_default=config_default("weight_decay"))
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            help="Fraction of steps warming the lr up (then cosine).", show_default="0.3 with full, else 0.05"
        ),
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option(help="Label smoothing.", show_default=config_default("label_smoothing"))
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="none, light (crop + colour jitter), trivial, randaugment.", show_default=config_default("augment")
        ),
    ] = None,
    hflip: Annotated[
        bool | None,
        typer.Option(
            help="Random horizontal flips: they scored better on the sets the defaults were chosen on, the digits "
            "among them; --no-hflip where a mirrored image is another class (text, arrows).",
            show_default="hflip" if FinetuneConfig.__dataclass_fields__["hflip"].default else "no-hflip",
        ),
    ] = None,
    balanced: Annotated[
        str | None,
        typer.Option(
            help="Class-balanced sampling: auto (skew >= 3:1), on, off.", show_default=config_default("balanced")
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many epochs without a better val top-1 (ties: lower val loss), counted from "
            "the middle of the planned epochs on (two-phase: not the body's first either).",
            show_default=config_default("patience"),
        ),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            help="Training time: 90s, 30m, 2h or plain seconds. After each epoch the epochs left are re-planned to "
            "fit, each costed by the ones before it (an estimate: an epoch slower than those can overrun it, said). "
            "The fine-tune's epochs only: domain adaptation after them (--adapt-bn, --unlabeled) is not counted."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed for the split, the head, the batch order, augmentation and dropout.",
            show_default=config_default("seed"),
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto (a GPU when present), cpu or cuda.", show_default=config_default("device"))
    ] = None,
    amp: Annotated[
        str | None,
        typer.Option(
            help="Mixed precision: auto (bf16 on a GPU that has it, else fp16; on a CPU with AVX-512 BF16 or AMX, "
            "bf16 while only the head learns, float32 when the body does (faster there) and for validation (the "
            "exported model's precision); float32 elsewhere), bf16 (throughout), fp16 (GPU), off.",
            show_default=config_default("amp"),
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Threads decoding the images (0: the training thread).",
            show_default="one per core, at most 4",
        ),
    ] = None,
    adapt_bn: Annotated[
        Path | None, typer.Option(help="Unlabelled target-domain images: re-estimate BatchNorm statistics (AdaBN).")
    ] = None,
    unlabeled: Annotated[
        Path | None,
        typer.Option(
            help="Unlabelled target images for pseudo-label self-training, after AdaBN (on --adapt-bn's images, or "
            "these when --adapt-bn is not given)."
        ),
    ] = None,
    target_val: Annotated[
        Path | None,
        typer.Option(
            help="Labelled target images (DIR/<class>/...), none of them in --adapt-bn or --unlabeled: measure and "
            "guard adaptation (what to keep is chosen by them: a selection's figure, not a held-out one)."
        ),
    ] = None,
    pseudo_threshold: Annotated[
        float | None, typer.Option(help="Pseudo-label confidence.", show_default=config_default("pseudo_threshold"))
    ] = None,
    pseudo_rounds: Annotated[
        int | None, typer.Option(help="Self-training rounds.", show_default=config_default("pseudo_rounds"))
    ] = None,
    pseudo_lambda: Annotated[
        float | None, typer.Option(help="Loss = λ·source + (1−λ)·target.", show_default=config_default("pseudo_lambda"))
    ] = None,
    pseudo_lr: Annotated[
        float | None,
        typer.Option(help="Self-training's learning rate (AdamW).", show_default=config_default("pseudo_lr")),
    ] = None,
    skip_bad: Annotated[
        bool | None,
        typer.Option(
            help="Train on the readable images of a folder with bad files (listed in the card); the --adapt-bn, "
            "--unlabeled and --target-val folders' bad files are passed over too, and named.",
            show_default="off",
        ),
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            help="Continue the interrupted run in --out from its last epoch, with the options it started with (a "
            "finished run whose domain adaptation was interrupted or failed: adapt it again, not fine-tune).",
            show_default="off",
        ),
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option(
            help="Replace --out if it is a run made by edgetransfer (never any other folder).", show_default="off"
        ),
    ] = None,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            "--nproc-per-node",
            help="Train in N processes on this machine (1..10; one per GPU; on the CPU they share its cores), as "
            "torchrun --standalone --nproc_per_node N; several machines: torchrun itself. Not a recipe key.",
        ),
    ] = 1,
    ctx: typer.Context = None,  # (typer passes it: the options as given, for the processes --nproc-per-node starts)
) -> None:
    """Fine-tune an ImageNet backbone on your labelled images; keep the best checkpoint (by val accuracy)."""
    from edgetransfer.builtin_data import resolve_data
    from edgetransfer.durations import parse_duration
    from edgetransfer.errors import UsageError
    from edgetransfer.finetune import finetune as run_finetune
    from edgetransfer.finetune_config import load_recipe, resume_options

    given = {k: v for k, v in locals().items() if k in {f.name for f in dataclasses.fields(FinetuneConfig)}}
    if time_budget is not None:
        given["time_budget"] = parse_duration(time_budget)
    options = load_recipe(config) if config else {}
    from_recipe = set(options)
    switches = ("resume", "overwrite", "skip_bad")  # on/off: the flag given here (--no-X too), else the recipe's

    def switch(name: str) -> bool:
        return bool(options.get(name, False)) if given[name] is None else given[name]

    if switch("resume"):  # the run's own options first; the recipe and flags given now override them
        if not (out or options.get("out")):
            raise UsageError("--resume needs --out RUN (the run to continue)")
        options = {**resume_options(out or options["out"]), **options, "resume": True}
    options.update({k: switch(k) for k in switches})
    options.update(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in given.items() if v is not None and k not in switches}
    )
    if not options.get("data"):
        raise UsageError("--data is required (a folder, or 'digits')")
    for key in ("data", "adapt_bn", "unlabeled", "target_val"):  # a recipe's folder that is not there: said as
        value = options.get(key)  # the recipe's (it read "data folder not found: src", naming no recipe)
        if given.get(key) is None and key in from_recipe and value != "digits":
            if not Path(str(value)).expanduser().exists():
                raise UsageError(
                    f"{config}: {key} = {str(value)!r} not found (a path in a recipe is read from the folder the "
                    f"command runs in, {Path.cwd()})"
                )
    if options.get("out") is None:  # named as pipeline names it ('' given is refused as an empty --out, later)
        options["out"] = default_out(options["data"], options.get("backbone", "mobilenet_v2"))
    options["data"] = resolve_data(options["data"], options.get("seed", 0))
    if not 1 <= nproc_per_node <= MAX_NPROC:  # (torchrun's per-process log redirection names one digit)
        raise UsageError(
            f"--nproc-per-node must be 1 to {MAX_NPROC}, not {nproc_per_node}"
            + ("; more processes on one machine: torchrun itself" if nproc_per_node > MAX_NPROC else "")
        )
    if nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:  # this process starts them (they see LOCAL_RANK)
        from edgetransfer.launch import launch

        checked = FinetuneConfig(**options)
        checked.validate()  # a mistake is said once, here, before any process starts
        raise typer.Exit(launch(nproc_per_node, command_line(ctx), device=checked.device))
    started = time.time()
    try:
        run = run_finetune(FinetuneConfig(**options))
    except KeyboardInterrupt:
        say_interrupted(options["out"], started, resume=options["resume"])
        raise typer.Exit(130) from None
    except WriteError as exc:
        again = "the same command with --resume"
        raise kept_after_write_error(exc, options["out"], started, resume=options["resume"], again=again) from None
    typer.echo(str(run.path))


MAX_NPROC = 10  # processes --nproc-per-node starts on one machine


def command_line(ctx: typer.Context) -> list[str]:
    """The command and the options given on its command line, as a command line again."""
    argv = [ctx.info_name]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            argv.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        else:
            argv += [max(param.opts, key=len), str(value)]
    return argv


def say_interrupted(out: str, started: float, *, resume: bool, again: str = "the same command with --resume") -> None:
    """What a Ctrl-C in fine-tuning leaves, said truly (:func:`what_is_kept`). A process of a --nproc-per-node job
    stopped by SIGTERM was stopped by the job's launcher (another process failed, or the job was told to stop; a
    Ctrl-C reaches it as SIGINT): not "interrupted" by the user, who pressed nothing; the launcher says why."""
    from edgetransfer.cli import TERMINATED
    from edgetransfer.launch import SAID

    word = "stopped with the job" if TERMINATED and os.environ.get(SAID) else "interrupted"
    print(f"{word}; {what_is_kept(out, started, resume=resume, again=again)[0]}", file=sys.stderr)


def what_is_kept(out: str, started: float, *, resume: bool, again: str) -> tuple[str, bool]:
    """What a fine-tune stopped by a Ctrl-C or a failure leaves, and whether ``again`` goes on from it: the finished
    epochs (of this command, or of the run it resumed), the finished run (a later stage was stopped), or ``out`` as
    it was (no epoch finished: the previous run put back, a new folder removed)."""
    state, card = Path(out) / RESUME_STATE, Path(out) / CARD
    finished = _finished_card(card)
    if finished is not None and (resume or card.stat().st_mtime >= started):  # training had finished
        from edgetransfer.adapt import not_adapted

        if not_adapted(finished):
            return (
                f"training had finished, adaptation had not: {out} keeps the fine-tuned model, not adapted (its card "
                f"says so); {again} adapts it",
                True,
            )
        return "nothing half-written was kept", False
    if state.is_file() and (resume or state.stat().st_mtime >= started):
        return f"the finished epochs are kept in {out}: {again} continues", True
    if card.is_file() and card.stat().st_mtime >= started:  # training finished; what came after is atomic
        return "nothing half-written was kept", False
    if not Path(out).exists():  # a new folder, removed ("is as it was" of a folder that never was: a new user's)
        return f"nothing was kept: the new folder {out} is removed", False
    return f"nothing was kept: {out} is as it was", False


def kept_after_write_error(exc: WriteError, out: str, started: float, *, resume: bool, again: str) -> WriteError:
    """``exc`` (a file of the run could not be written) with what the stopped fine-tune leaves: it said only that
    the file was unchanged, over a run --resume continues (a new user's full disk)."""
    kept, goes_on = what_is_kept(out, started, resume=resume, again=again)
    if not goes_on:  # nothing to go on from: 'what was there before is unchanged' says it all
        return exc
    when = "once there is room" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "once it can be written"
    return WriteError(f"{exc}; {kept} {when}", errno=exc.errno)


def _finished_card(path: Path):
    """The run's card when it says training finished, else None (no card, unreadable, unfinished)."""
    from edgetransfer.errors import EdgeTransferError
    from edgetransfer.rundir import RunDir

    try:
        card = RunDir(path.parent).load_card() if path.is_file() else None
    except EdgeTransferError:
        return None
    return card if card is not None and card.complete.get("finetune") else None

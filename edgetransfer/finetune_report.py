"""What a fine-tuning run says and records, apart from the loop itself: the start message and its notes, the
card written before the first epoch and the one written at the end, and the closing notes."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from edgetransfer import console
from edgetransfer.card import ModelCard
from edgetransfer.checkpoint import confusion
from edgetransfer.data import narrow_note, shallow_note
from edgetransfer.finetune_config import class_counts, per_process
from edgetransfer.rundir import CHECKPOINT, sha256_file
from edgetransfer.training import balanced_reason
from edgetransfer.versions import package_versions

if TYPE_CHECKING:
    from edgetransfer.data import Splits

SMALL_VAL = 50  # fewer validation images than this: the checkpoint choice is coarse, and said so


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "") if dtype is not None else "float32"


def precision(trainer) -> str:
    """How the run computes, naming only the phases it will have: on a CPU with native bf16, --amp auto uses bf16
    while only the head learns and float32 when body blocks learn."""
    from edgetransfer.training import amp_dtype, trainable_blocks

    c = trainer.config
    body_can_learn = bool(trainable_blocks(c.strategy, "body", [None], c.unfreeze))
    head_only = (c.strategy == "two-phase" and c.head_epochs > 0) or not body_can_learn
    body = body_can_learn and not (c.strategy == "two-phase" and c.head_epochs >= c.epochs)
    frozen = amp_dtype(c.amp, trainer.device)  # while only the head learns
    learning = amp_dtype(c.amp, trainer.device, body_learns=True)
    if head_only and body and frozen != learning:
        when = f"{dtype_name(frozen)} while only the head learns, {dtype_name(learning)} when the body does"
        return f", mixed precision {when}"
    dtype = learning if body else frozen
    return f", mixed precision {dtype_name(dtype)}" if dtype is not None else ", float32"


def said_stop(stopped_because: str, history: list[dict]) -> str:
    """Why training ended, for the closing line: the card's "epochs done" as how many ran."""
    if stopped_because == "epochs done":
        return f"all {len(history)} epoch{'s' * (len(history) != 1)} ran" if history else "no epoch left to run"
    return stopped_because


def say_start(trainer, threads: int, caches: dict[str, Any]) -> None:
    """The run's opening lines on stderr: data, size and why, device and precision, and the notes that apply."""
    splits, c, pre = trainer.splits, trainer.config, trainer.pre
    sizes = splits.sizes()
    cached = ", ".join(f"{name} {d.nbytes / 2**20:.0f} MB" for name, d in caches.items() if d.cached)
    balanced = balanced_reason(splits.train, c)  # (in several processes too: training.sampler_for_epoch)
    plural = "s" * (threads != 1)
    console.err.print(
        f"fine-tuning {trainer.backbone.name} on {splits.root} ({len(splits.labels)} classes: "
        f"{class_counts(splits)}; train {sizes['train']}, val {sizes['val']}, test {sizes['test']}) at "
        f"{pre.crop}px on {trainer.device}{f' x{trainer.dist.world}' if trainer.dist.enabled else ''}"
        f"{f' ({threads} thread{plural})' if trainer.device == 'cpu' else ''}; strategy {c.strategy}"
        + precision(trainer)
        + (f"; the first {trainer.fixed} body blocks (stride <= 4) stay fixed" if trainer.fixed else "")
        + f"; batch {batch_said(c.batch_size, sizes['train'], trainer.dist.world, given=not trainer.batch_reason)}"
        + f", at most {c.epochs} epoch{'s' * (c.epochs != 1)}"
        + (
            f", stopping after {c.patience} without a better validation score"
            + " from the middle of the epochs on"
            + (" (the body's first epoch not counted)" if c.strategy == "two-phase" else "")
            + (
                f" (never before the last with {c.epochs})"
                if c.epochs // 2 + c.patience >= c.epochs and not c.time_budget  # a budget may cut the plan
                else ""
            )
            if c.patience and sizes["val"]
            else ""
        )
        + (f"; resuming after epoch {trainer.state['epoch']}" if c.resume else "")
        + (f"\ninput size {pre.crop} px {trainer.size_reason}" if trainer.size_reason != "--size" else "")
        + (f"\nstrategy {c.strategy}: {trainer.strategy_reason}" if trainer.strategy_reason else "")
        + (f"\nbatch size {c.batch_size}: {trainer.batch_reason}" if trainer.batch_reason else "")
        + (f"\nsampling class-balanced: {balanced}" if balanced else "")
        + (f"\nimages decoded once and kept in memory ({cached})" if cached else "")
    )
    if c.freeze_early and not trainer.fixed:
        console.err.print(
            f"[yellow]note: --freeze-early changes nothing with --strategy {c.strategy}"
            f"{f' --unfreeze {c.unfreeze}' if c.strategy == 'partial' else ''}: the early blocks do not learn anyway[/]"
        )
    unused = _unused_options(c)
    if unused:
        chosen = " (chosen by --strategy auto)" if trainer.strategy_reason else ""
        console.err.print(f"[yellow]note: with --strategy {c.strategy}{chosen}, {'; '.join(unused)}[/]")
    if c.strategy == "two-phase" and c.head_epochs >= c.epochs:
        chosen = "chosen by --strategy auto; " if trainer.strategy_reason else ""
        console.err.print(
            f"[yellow]note: --epochs {c.epochs} ends within the head-only epochs of the two-phase recipe ({chosen}"
            f"--head-epochs {c.head_epochs}): the body never learns; --epochs {c.head_epochs + 1} or more "
            "fine-tunes it, or --strategy full[/]"
        )
    if trainer.dist.main:
        every = splits.train + splits.val + splits.test
        for note in (narrow_note(every, seed=c.seed), shallow_note(every, seed=c.seed)):
            if note:
                console.err.print(f"[yellow]{escape(note)}[/]")
    if 0 < sizes["val"] < SMALL_VAL:
        console.err.print(
            f"[yellow]note: the validation split has {sizes['val']} images (one image is "
            f"{100 / sizes['val']:.1f} points): the best epoch is a coarse choice; ties go to the lower "
            "validation loss[/]"
        )


def card_config(config) -> dict:
    """The run's config as its card records it: every path absolute, --out too (it was the path as given, relative
    to a folder the card does not name, where the README says the card keeps the full paths)."""
    return {**dataclasses.asdict(config), "out": os.path.abspath(os.path.expanduser(config.out))}


def batch_said(batch: int, train: int, world: int, *, given: bool) -> str:
    """The batch as it trains, per process and in all: ``--batch-size 500`` over 42 training images is one step of
    42 (the line said 500). ``given``: the batch is the user's (else chosen from the split, whose reason is said)."""
    share = per_process(train, world)
    each = min(batch, share) if share > 0 else batch
    text = str(each)
    if each < batch:
        whose = "each process's share of the training images" if world > 1 else "all the training images"
        text += f" ({whose}{f'; --batch-size {batch}' if given else ''})"
    if world > 1:
        text += f" per process ({min(batch * world, train) if train else batch * world} a step in all)"
    return text


def _unused_options(c) -> list[str]:
    """Options set away from their defaults that the (resolved) strategy does not use: said, not silently kept in
    the card as if they had acted."""
    default = {f.name: f.default for f in dataclasses.fields(c)}
    unused = []
    if c.strategy != "partial" and c.unfreeze != default["unfreeze"]:
        unused.append(f"--unfreeze {c.unfreeze} changes nothing (it is for --strategy partial)")
    if c.strategy != "two-phase" and c.head_epochs != default["head_epochs"]:
        unused.append(f"--head-epochs {c.head_epochs} changes nothing (it is for --strategy two-phase)")
    if c.strategy == "linear-probe" and c.body_lr_scale != default["body_lr_scale"]:
        unused.append(f"--body-lr-scale {c.body_lr_scale:g} changes nothing (the body does not learn)")
    return unused


def no_validation_note(splits: Splits, epochs: int) -> str:
    trains = "its one epoch" if epochs == 1 else f"all {epochs} epochs"
    return (
        f"note: {splits.root} has {sum(splits.sizes().values())} images in {len(splits.labels)} classes "
        f"({class_counts(splits)}): too few to hold any out (a class needs 4 images for one validation and one test "
        f"image), so this run cannot validate: it trains {trains} on every image, keeps the last epoch "
        "and measures no accuracy. Add images, or give DIR/train, DIR/val and DIR/test"
    )


def new_card(trainer, fingerprint: str, threads: int) -> ModelCard:
    """The card written before the first epoch: data, preprocessing, config; ``complete.finetune`` false."""
    splits = trainer.splits
    return ModelCard(
        labels=splits.labels,
        preprocessing=trainer.pre,
        backbone=trainer.backbone.name,
        weights=trainer.weights_info,
        dataset={
            "path": str(splits.root.resolve()),
            "layout": splits.layout,
            "seed": splits.seed,
            "sizes": splits.sizes(),
            "fingerprint": fingerprint,
            "skipped_bad_files": list(splits.extra.get("skipped", ())),
            # the splits a layout of split folders lacked, held out of train with the seed (said on the console)
            "held_out_of_train": [name for name in ("val", "test") if splits.extra.get(f"{name}_from_train")],
            # validation/test images that look like copies of training images (data.near_copies: how many, the
            # pairs, the look-alikes of other classes; None: not compared, more pairs than data.NEAR_COPY_PAIRS)
            "near_copies": splits.extra.get("near_copies"),
        },
        training={
            "config": card_config(trainer.config),
            "device": trainer.device,
            "world_size": trainer.dist.world,
            # config's batch_size is each process's: the images one optimizer step sees, the recipe's batch, are
            # this (a torchrun run and a one-process run of one seed train different recipes); at most the training
            # images (a batch of 8 over 6 images is one step of 6: the card said 8)
            "batch_per_step": min(trainer.config.batch_size * trainer.dist.world, len(trainer.splits.train))
            or trainer.config.batch_size * trainer.dist.world,
            "threads": threads,
            "input_size": {"pixels": trainer.pre.crop, "chosen": trainer.size_reason},
            "fixed_blocks": trainer.fixed,  # --freeze-early: the body's first blocks that never learn
        },
        artifacts={CHECKPOINT: {"file": CHECKPOINT}},
        versions=package_versions(),
        complete={"finetune": False},
    )


def finished_card(trainer, stopped_because: str, test: tuple, seconds: float, val: float | None = None) -> ModelCard:
    """The card at the end: history, best epoch, why it stopped, the test metrics, the checkpoint's sha256.
    ``val``: the best checkpoint's validation top-1 scored again in float32 (the epoch's score, which chose it, is
    in the history; in bf16 epochs the two can differ by an image)."""
    test_acc, predictions, _ = test
    state, splits, card = trainer.state, trainer.splits, trainer.card
    history = state["history"]
    measured = splits.test and not math.isnan(test_acc)
    if val is None or math.isnan(val):
        val = state["best_acc"] if state["best_acc"] >= 0 else None
    metrics = {"val_top1": val, "test_top1": test_acc}
    if measured:
        metrics.update(confusion(splits.test, predictions, splits.labels))
    else:
        metrics["test_top1"] = None
    return dataclasses.replace(
        card,
        training={
            **card.training,
            "config": card_config(trainer.config),
            "history": history,
            "best_epoch": state["best_epoch"],
            "stopped": stopped_because,
            "training_seconds": seconds,
            "images_per_s": [h["images_per_s"] for h in history],
        },
        metrics={**card.metrics, "torch": metrics},
        artifacts={
            **card.artifacts,
            CHECKPOINT: {"file": CHECKPOINT, "sha256": sha256_file(trainer.out / CHECKPOINT)},
        },
        complete={"finetune": True},
    )


def say_end(trainer, stopped_because: str, test_acc: float) -> None:
    history, state = trainer.state["history"], trainer.state
    saturated = [h["epoch"] for h in history if h["val_top1"] == 1.0]
    if len(saturated) > 1:
        console.err.print(
            f"[yellow]note: validation top-1 was 100% in epochs {', '.join(map(str, saturated))}: the split "
            "cannot tell them apart; the checkpoint was chosen by validation loss[/]"
        )
    speeds = ", ".join(f"{h['images_per_s']:.0f}" for h in history)
    if state["best_acc"] < 0:
        console.err.print(
            f"no validation: kept epoch {state['best_epoch']}; img/s per epoch {speeds}; saved {trainer.out}"
        )
        return
    test = f"test top-1 {test_acc:.2%}" if not math.isnan(test_acc) else "no test images"
    console.err.print(
        f"best val top-1 {state['best_acc']:.2%} (epoch {state['best_epoch']}; "
        f"stopped: {said_stop(stopped_because, history)}); {test}; "
        f"img/s per epoch {speeds}; saved {trainer.out}"
    )
    head = [h for h in history if h["phase"] == "head"]
    body = [h for h in history if h["phase"] != "head" and h["val_top1"] is not None]
    if head and body and any(h["epoch"] == state["best_epoch"] for h in head):  # the whole network's epochs all
        # scored lower than the head's alone: unsaid, the summary read "best ... (epoch 1)" (a new user's trial)
        console.err.print(
            f"[yellow]note: the epoch kept is the head's alone (epoch {state['best_epoch']}): with the whole network "
            f"learning, validation top-1 reached {max(h['val_top1'] for h in body):.2%} at best; the body's learning "
            "rate may be too high for this data: try --body-lr-scale 0.1, or --strategy linear-probe[/]"
        )

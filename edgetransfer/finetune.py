"""Fine-tuning: adapt an ImageNet backbone to the user's labelled images and keep the best checkpoint; adaptation
to an unlabelled target domain (a new camera) follows as its own stage (:func:`edgetransfer.adapt.adapt`).

The run directory is written in place and is always consistent: ``card.json`` says whether training finished;
``model.safetensors`` is the best checkpoint so far; ``resume.pt`` holds the last finished epoch, its weights
included (one file: a stop between two files left weights one epoch ahead of their state, and the resumed run
trained that epoch twice), so Ctrl-C or a crash can be continued with ``--resume``. A better epoch's checkpoint is
written after the state that names it, and ``--resume`` writes it again from the state's weights where the last
saved epoch is the best. Every file is written atomically. Until the first epoch has finished there is nothing to
continue: a stop or a failure then leaves ``--out`` as it was (:class:`_NewOut`).

Images are decoded and resized once (:mod:`edgetransfer.decoded`), batches are augmented whole, the model runs in
channels-last memory with mixed precision where the hardware computes it natively: on a GPU throughout, on a CPU
with AVX-512 BF16 or AMX while only the head learns (its whole-network backward pass was faster in float32).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from edgetransfer import backbones, console
from edgetransfer.adapt import ADAPT_OPTIONS, adapt, not_adapted, target_images
from edgetransfer.builtin_data import resolve_data
from edgetransfer.checkpoint import evaluate, load_model, non_finite, save_checkpoint, unwrap
from edgetransfer.data import (
    LOOKALIKE,
    SPLIT_FOLDERS,
    Splits,
    default_preprocessing,
    load_splits,
    lookalike_classes,
    shown_group,
)
from edgetransfer.decoded import Decoded, augment, score
from edgetransfer.devices import resolve_device
from edgetransfer.errors import EdgeTransferError, RunDirError, TrainingDiverged, UsageError
from edgetransfer.finetune_config import (
    LAST_CHECKPOINT,
    RESUMABLE_CHANGES,
    RESUME_STATE,
    FinetuneConfig,
    absolute_inputs,
    check_out,
    check_resume,
    check_splits,
    choose_batch,
    choose_size,
    choose_strategy,
    load_recipe,
    missing_class_notes,
    per_process,
    refuse_changes,
    resume_options,
)
from edgetransfer.finetune_config import steps_per_epoch as epoch_steps  # the trainer's local is steps_per_epoch
from edgetransfer.finetune_report import dtype_name, finished_card, new_card, no_validation_note, say_end, say_start
from edgetransfer.plots import plot_confusion, plot_curves
from edgetransfer.rundir import (
    CHECKPOINT,
    SPLITS_FILE,
    RunDir,
    atomic_path,
    atomic_write_text,
    library_write_errors,
    write_errors_said,
)
from edgetransfer.training import (
    Distributed,
    amp_dtype,
    fixed_blocks,
    follow_data_quickly,
    head_and_blocks,
    param_groups,
    sampler_for_epoch,
    set_phase,
    set_threads,
    threads_alone,
    trainable_blocks,
    validation_dtype,
    warmup_cosine,
)

__all__ = ["FinetuneConfig", "TrainingDiverged", "evaluate", "finetune", "load_model", "load_recipe", "resume_options"]

CURVES = "curves.png"
CONFUSION = "confusion.png"
MAX_NAMED = 5  # folders a note names


def finetune(
    config: FinetuneConfig, *, on_epoch: Callable[[int, dict], None] | None = None, data_notes: bool = True
) -> RunDir:
    """Fine-tune ``config.backbone`` on ``config.data`` into the run directory ``config.out``; then, when
    ``config`` names target images, adapt the model to them (:func:`edgetransfer.adapt.adapt`). ``on_epoch(epoch,
    record)`` is called after each finished epoch with its history record (``val_top1``, ``val_loss``, ...); an
    exception it raises stops training there (the run keeps that epoch, resumable), e.g. a search pruning a trial.
    ``data_notes=False``: the notes on the data (bad files skipped, copies, folders not read) are not said again
    (a search's trials after its first read the same folder)."""
    config.validate()
    data = resolve_data(config.data, config.seed)  # 'digits' from Python too; absolute, as the card keeps it
    config = dataclasses.replace(config, data=str(Path(data).expanduser().resolve()) if str(data).strip() else data)
    config = absolute_inputs(config)  # the other inputs absolute too
    out = Path(config.out)
    if str(config.out).strip():
        _put_back_previous(out)  # one left aside by a killed --overwrite: before check_out looks at --out
    check_out(config)
    backbone = backbones.get(config.backbone)
    device = resolve_device(config.device)  # these before the data scan, which can take minutes
    if config.resume and _finished(out):
        card = RunDir(out).load_card()
        if not_adapted(card):  # trained, adaptation interrupted or failed: adapt again, not fine-tune again
            return _adapt_again(config, out, card, device)
    backbones.check_weights_here(backbone, config.weights)
    splits = load_splits(config.data, seed=config.seed, skip_bad=config.skip_bad)
    if data_notes:
        _say_data(splits)
    if splits.layout == "split" and splits.train and not splits.val and not splits.test:
        console.err.print(f"[yellow]{no_validation_note(splits, config.epochs)}[/]")  # 1-3 images per class
    else:
        check_splits(splits)
        for note in missing_class_notes(splits):
            console.err.print(f"[yellow]{escape(note)}[/]")
    config, strategy_reason = choose_strategy(config, splits)  # --strategy auto: from the training split's size
    if config.amp == "fp16" and device == "cpu":
        console.err.print(
            "[yellow]note: --amp fp16 on a CPU trains in float32 (fp16 autocast is slow there); --amp bf16 for bf16[/]"
        )
    inputs = target_images(config, splits.labels, splits)  # read and checked before the work
    dist = Distributed.from_env(device)
    config, batch_reason = choose_batch(config, len(splits.train), dist.world)  # from the training split's size
    images = per_process(len(splits.train), dist.world)
    if not batch_reason and 0 < images < config.batch_size:
        console.err.print(
            f"[yellow]note: --batch-size {config.batch_size} is more than the {images} training images"
            f"{' per process' if dist.world > 1 else ''}: each epoch is one step of {images}[/]"
        )
    if dist.enabled and device == "cuda":
        import torch

        torch.cuda.set_device(dist.local_rank)
    try:
        with RunDir(out).lock("finetune") if dist.main else contextlib.nullcontext():
            size = choose_size(config, backbone, splits)
            config = dataclasses.replace(config, size=size[0])  # the card records the size trained at, as the batch
            with _NewOut(out) if dist.main and not config.resume else contextlib.nullcontext() as new_out:
                trainer = _Trainer(config, out, backbone, splits, device, dist, size)
                trainer.strategy_reason, trainer.batch_reason = strategy_reason, batch_reason
                trainer.on_epoch = on_epoch
                trainer.on_resumable = new_out.keep if new_out else None
                run = trainer.run()
            if not dist.main:
                return run
            with threads_alone(dist):  # the other processes are done
                return adapt(run, config, device=device, inputs=inputs)
    finally:
        dist.close()


def _say_data(splits) -> None:
    """The notes on what the folder holds: bad files skipped, copies and near copies, folders and files not read."""
    if splits.extra.get("skipped"):
        skipped = splits.extra["skipped"]
        console.err.print(
            f"[yellow]skipping {len(skipped)} bad file(s) (--skip-bad): {escape(_first_three(skipped))} "
            "(all listed in the card's dataset.skipped_bad_files)[/]"
        )
    for group in lookalike_classes(splits.labels):
        console.err.print(
            f"[yellow]note: the classes {escape(', '.join(shown_group(group)))} {LOOKALIKE}: one class split in two "
            "by accident? (merge their folders if so)[/]"
        )
    if splits.extra.get("hidden_folders"):
        hidden = splits.extra["hidden_folders"]
        one = len(hidden) == 1
        console.err.print(
            f"[yellow]note: {escape(', '.join(hidden[:MAX_NAMED]))} in {escape(str(splits.root))} "
            f"{'holds' if one else 'hold'} images, not read (a folder whose name starts with a dot is hidden, never a "
            f"class): rename {'it' if one else 'them'} to train on {'it' if one else 'them'}[/]"
        )
    if splits.extra.get("grouped_classes"):
        inner = splits.extra["grouped_classes"]
        named = ", ".join(f"{c}/" for c in inner[:MAX_NAMED]) + (" ..." if len(inner) > MAX_NAMED else "")
        group = splits.root / inner[0].split("/")[0]
        classes = f"{escape(', '.join(splits.labels[:MAX_NAMED]))}{' ...' if len(splits.labels) > MAX_NAMED else ''}"
        if all(c.split("/")[1].lower() in SPLIT_FOLDERS for c in inner):  # DIR/cat/{train,test}/: a split made in
            # each class folder, merged and split again (a user's test images trained on, and the note said "pass
            # one group (--data DIR/cat)"; a new user's trial)
            console.err.print(
                f"[yellow]note: the class folders hold split folders ({escape(named)}): the classes are {classes}, "
                "each one's images merged and split again 70/15/15, so the split inside them is not kept; to keep "
                "it, arrange them as DIR/train/<class>/, DIR/val/<class>/, DIR/test/<class>/[/]"
            )
        else:
            console.err.print(
                f"[yellow]note: no class folder holds an image itself, only folders below ({escape(named)}): the "
                f"classes are {classes}; if the folders below are the classes, pass one group (--data "
                f"{escape(str(group))}) or gather them into DIR/<class>/[/]"
            )
    if splits.extra.get("classes_named_like_splits"):
        named = ", ".join(f"{c}/" for c in splits.extra["classes_named_like_splits"])
        console.err.print(
            f"[yellow]note: {escape(named)} in {escape(str(splits.root))} hold images, not class folders, beside "
            "other class folders: read as classes of those names (split folders hold DIR/train/<class>/)[/]"
        )
    for name, what in (("val", "validation"), ("test", "test")):
        if splits.extra.get(f"{name}_from_train"):
            console.err.print(
                f"no {what} images in class folders in {escape(str(splits.root))}: "
                f"{splits.extra[f'{name}_from_train']} held out for {what} (seed {splits.seed})"
            )
    if splits.extra.get("loose"):
        listed = "; ".join(
            f"{folder}/: {_first_three(files) if len(files) <= 3 else f'{len(files)} images'}"
            for folder, files in splits.extra["loose"].items()
        )
        console.err.print(
            f"[yellow]note: not read in {escape(str(splits.root))}, images outside any class folder ("
            f"{escape(listed)}): an image's label is the name of its class folder, as in train/<class>/[/]"
        )
    if splits.extra.get("copies_kept_in_train"):
        console.err.print(
            f"note: {splits.extra['copies_kept_in_train']} image(s) are byte-identical copies of images the split put "
            "elsewhere: kept in train with their copies (a copy in validation or test scores an image trained on)"
        )
    if splits.extra.get("copies_across_splits"):
        console.err.print(
            f"[yellow]note: {splits.extra['copies_across_splits']} image(s) in {escape(str(splits.root))}'s val/ or "
            "test/ are byte-identical copies of images in another split folder: their scores are not held-out "
            "figures[/]"
        )
    near = splits.extra.get("near_copies")
    if near and near["other_classes"]:  # one scene with small differences: this look cannot tell copies there
        console.err.print(
            f"[yellow]note: {near['other_classes']} validation/test image(s) look nearly the same as training images "
            f"of another class at 32x32 px ({escape(_first_three(near['other_pairs']))}): this data's images differ "
            "in details too small for the near-copy look, so near copies are not said (the card lists the pairs "
            "it found)[/]"
        )
    elif near and near["count"]:
        console.err.print(
            f"[yellow]note: {near['count']} validation/test image(s) look like copies of training images of their "
            f"class (resized, re-encoded or recoloured; validation/test ~ training: "
            f"{escape(_first_three(near['pairs']))}; all in the card's dataset.near_copies): their scores are not "
            "quite held-out figures; remove such copies, or keep each with its original[/]"
        )
    if splits.extra.get("copies_across_classes"):
        pairs = _first_three(splits.extra["copies_across_classes"])
        console.err.print(
            f"[yellow]note: the same image is in two classes ({escape(pairs)}): contradictory labels; remove the "
            "wrong copy[/]"
        )
    if splits.extra.get("ignored"):
        console.err.print(
            f"[yellow]note: not read in {escape(str(splits.root))}: {escape(', '.join(splits.extra['ignored']))} "
            + (
                "(with split folders only train/, val/ and test/ are)"
                if splits.layout == "folders"
                else "(files beside the class folders belong to no class)"
            )
            + "[/]"
        )


def _adapt_again(config: FinetuneConfig, out: Path, card, device: str) -> RunDir:
    """``--resume`` on a finished run whose adaptation was interrupted or failed: the run's own options (from its
    card), with the ones given now that differ from the defaults; adaptation options may change, training ones not.
    Under torchrun rank 0 adapts, the others leave it to it."""
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    given = {k: v for k, v in dataclasses.asdict(config).items() if v != defaults.get(k) and k != "data"}
    options = {**resume_options(out), **given, "data": config.data, "resume": True}
    config = absolute_inputs(FinetuneConfig(**options))
    refuse_changes(card, config, RESUMABLE_CHANGES | ADAPT_OPTIONS)
    if not (config.adapt_bn or config.unlabeled):
        raise UsageError(f"{out}: nothing to adapt to; give --adapt-bn DIR or --unlabeled DIR")
    if int(os.environ.get("RANK", "0")) != 0:
        return RunDir(out)
    trained = card.training.get("config", {})
    unused = [k for k in ("epochs", "time_budget", "patience") if k in trained and trained[k] != getattr(config, k)]
    if unused:  # accepted by --resume, and nothing trains now: said, not silently dropped
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        console.err.print(f"[yellow]note: {flags} not used: training has finished; only adaptation runs again[/]")
    console.err.print(f"{escape(str(out))} finished training; adapting it again ({escape(not_adapted(card))})")
    return adapt(RunDir(out), config, device=device, again=True)


def previous_of(out: Path) -> Path:
    """Where a new run keeps what was in ``out`` until its first epoch finished: a hidden sibling (same filesystem:
    moved by a rename)."""
    return out.parent / f".{out.name}.previous"


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# a body epoch's wall time over a head-only epoch's, for --time-budget's plan before any body epoch ran: the head
# alone skips the body's backward pass (MobileNetV2 on this 2-core CPU: ~250 against ~90 img/s; a new user's
# run: 63 against 23)
BODY_EPOCH_SLOWER = 3.0


class _NewOut:
    """A new run in ``out`` that is kept only once it can be continued (its first epoch finished): until then a
    stop (Ctrl-C) or a failure leaves ``out`` as it was. What ``out`` held (a run --overwrite replaces, or an empty
    folder) waits in :func:`previous_of` and is put back; a folder this run made is removed."""

    def __init__(self, out: Path) -> None:
        self.out, self.previous = out, previous_of(out)
        self.replaced = out.exists() and any(out.iterdir())
        self.kept = False

    def __enter__(self) -> _NewOut:
        if self.out.exists() or self.out.is_symlink():
            if self.previous.exists() or self.previous.is_symlink():  # not ours (:func:`_put_back_previous`)
                raise RunDirError(f"{self.previous} is in the way of --out {self.out}; move it or choose another --out")
            os.replace(self.out, self.previous)
        return self

    def keep(self) -> None:
        """The new run can be continued: what it replaced goes (said when that was a run)."""
        if self.kept:
            return
        self.kept = True
        if self.previous.exists() or self.previous.is_symlink():
            _remove(self.previous)
            if self.replaced:
                console.err.print(
                    f"the previous run in {escape(str(self.out))} is removed: this one can be continued with --resume"
                )

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.keep()
        elif not self.kept:
            _remove(self.out)
            if self.previous.exists() or self.previous.is_symlink():
                os.replace(self.previous, self.out)


def _put_back_previous(out: Path) -> None:
    """A :func:`previous_of` left by a finetune that was killed (SIGKILL, a power cut) while its new run could not
    be continued yet: put it back into ``out``, as a stop would have; one whose new run finished an epoch goes.
    Under the run's lock: a live run's is not touched."""
    previous = previous_of(out)
    if not previous.is_dir():
        return
    with RunDir(out).lock("finetune"):
        if not previous.is_dir() or not (RunDir.is_run(previous) or not any(previous.iterdir())):
            return  # the run holding the lock finished meanwhile, or a folder that is not ours
        if (out / RESUME_STATE).is_file() or _finished(out):
            _remove(previous)
            console.err.print(f"note: removed {escape(str(previous))}, the run {escape(str(out))} replaced")
        else:
            _remove(out)
            os.replace(previous, out)
            console.err.print(
                f"note: put the previous run back into {escape(str(out))} from {escape(str(previous))}: a finetune "
                "was stopped there before its first epoch finished"
            )


def _finished(out: Path) -> bool:
    try:
        return bool(RunDir.is_run(out) and RunDir(out).load_card().complete.get("finetune"))
    except EdgeTransferError:
        return False


class _Trainer:
    """One fine-tuning run; :meth:`run` is the loop, top to bottom."""

    def __init__(self, config: FinetuneConfig, out: Path, backbone, splits: Splits, device, dist, size) -> None:
        import torch

        self.config, self.out, self.backbone, self.splits, self.device, self.dist = (
            config,
            out,
            backbone,
            splits,
            device,
            dist,
        )
        self.threads = set_threads()
        torch.manual_seed(config.seed)
        weights = Path(config.weights) if config.weights else None
        self.model, self.weights_info = backbones.build(backbone, len(splits.labels), weights_path=weights)
        follow_data_quickly(self.model)
        blocks = len(head_and_blocks(self.model)[1])
        if config.strategy == "partial" and config.unfreeze > blocks:
            raise UsageError(
                f"--unfreeze {config.unfreeze}: {backbone.name} has {blocks} blocks; --strategy full trains all"
            )
        self.size_reason = size[1]
        self.strategy_reason = ""  # --strategy auto's choice, said at the start
        self.batch_reason = ""  # the batch size's, where it came from the training split
        self.fixed = fixed_blocks(self.model, config, size[0])  # --freeze-early: the first blocks never learn
        self.pre = default_preprocessing(size[0], mean=backbone.mean, std=backbone.std)
        self.state: dict[str, Any] = {"epoch": 0, "step": 0, "best_acc": -1.0, "best_epoch": 0, "history": []}
        self.card = None
        self.on_epoch: Callable[[int, dict], None] | None = None
        self.on_resumable: Callable[[], None] | None = None  # called once the first epoch is saved
        if config.resume:
            self.card, self.state = check_resume(out, config, splits, dist.world)
            weights = self.state.pop("weights", None)  # a state written before they were in it: the file beside
            self.model.load_state_dict(
                weights if weights is not None else backbones.read_safetensors(out / LAST_CHECKPOINT)
            )
            if dist.main:
                for stale in out.glob(".*.tmp"):  # what a killed run was writing (atomic_path's temporaries; the
                    stale.unlink(missing_ok=True)  # files it wrote before are whole; the run's lock is held)
                if weights is not None and self.state["best_epoch"] == self.state["epoch"]:
                    # the last saved epoch is the best: its checkpoint from the same weights (a stop after
                    # resume.pt and before model.safetensors left the epoch before's beside a state naming this one)
                    save_checkpoint(self.model, out / CHECKPOINT, {"backbone": backbone.name})
        dist.barrier()

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunDir:
        import torch

        config, device, dist, pre = self.config, self.device, self.dist, self.pre
        model = self.model.to(device).to(memory_format=torch.channels_last)
        ddp, ddp_phase = model, None  # under torchrun: DDP around the model, made for each phase (below)
        train = Decoded(self.splits.train, pre, name="training images", workers=config.workers)  # decoded once
        # process 0 alone scores validation: the others leave it undecoded (every process of a job held it)
        self.val = Decoded(self.splits.val if dist.main else (), pre, name="validation images", workers=config.workers)
        if dist.main and self.card is None:
            record = self.splits.record()
            atomic_write_text(self.out / SPLITS_FILE, json.dumps(record) + "\n")
            self.card = new_card(self, record["fingerprint"], self.threads)
            RunDir(self.out).save_card(self.card)
        batch = config.batch_size
        steps_per_epoch = epoch_steps(per_process(len(train), dist.world), batch)
        optimizer = torch.optim.AdamW(param_groups(model, config.lr, config.body_lr_scale, config.weight_decay))
        if config.resume:
            optimizer.load_state_dict(self.state["optimizer"])
        planned = config.epochs  # --time-budget re-plans it after each epoch (a resumed run: its saved plan, where a
        # time budget made it; a run planned by its --epochs alone follows the --epochs given now)
        anchor = None  # (step, lr factor): after a re-plan the schedule goes on from there, never back up
        # (a state saved before planned_by_budget existed: as it was resumed then, by its plan under a budget)
        if self.state.get("planned_by_budget", bool(config.time_budget)) and config.time_budget:
            if "planned_epochs" in self.state:
                planned = min(self.state["planned_epochs"], config.epochs)
                anchor = self.state.get("lr_anchor")

        def lr_factor(at: int, plan: int) -> float:
            """Warm-up, then cosine to zero at the plan's last step; past a re-plan's anchor, a cosine from the
            factor reached there (a plan lengthened mid-run took a decayed learning rate back up 22x)."""
            total = plan * steps_per_epoch
            if anchor is None or at < anchor[0]:
                return warmup_cosine(total, max(1, int(config.warmup * total)))(at)
            progress = min(1.0, (at - anchor[0]) / max(1, total - anchor[0]))
            return anchor[1] * 0.5 * (1.0 + math.cos(math.pi * progress))

        dtype = amp_dtype(config.amp, device, body_learns=True)  # per epoch below; this one for the GradScaler
        scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
        if scaler.is_enabled() and self.state.get("scaler"):  # the loss scale reached, not 65536 again (its first
            scaler.load_state_dict(self.state["scaler"])  # steps would overflow and be skipped a second time)
        self.scaler = scaler
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        if dist.main:
            say_start(self, self.threads, {"training images": train, "validation images": self.val})
        started, stopped_because = time.perf_counter(), "epochs done"
        step = self.state.get("step", self.state["epoch"] * steps_per_epoch)  # steps taken so far
        first_epoch = self.state["epoch"] + 1
        # the plan this run follows (a resume's --epochs, where no budget made it), as the resume check reads it
        self.state["planned_epochs"] = planned
        if config.resume and 0 < self.state["epoch"] < config.epochs and self._should_stop(self.state["epoch"]):
            # stopped after the epoch early stopping ended it (Ctrl-C while the test split was scored): what a run
            # never stopped would have done, not one more epoch
            stopped_because = self._early_stop_reason(self.state["epoch"])
            first_epoch = config.epochs + 1
        took: dict[str, list[float]] = {"head": [], "body": []}  # each epoch's wall time (validation included)
        for epoch in range(first_epoch, config.epochs + 1):
            epoch_began = time.perf_counter()
            if epoch > planned:
                stopped_because = "time budget"
                if config.strategy == "two-phase" and epoch <= config.head_epochs + 1:  # no body epoch ran
                    stopped_because += (
                        f" (--time-budget {config.time_budget:g} s held the head-only epoch alone: the rest of the "
                        "network never learned; give more time)"
                    )
                break
            # augmentation and dropout: a resumed epoch is the same; each process its own (the same seed on every one
            # gave the i-th image of each shard the same crop, flip and dropout mask: a review). Rank 0's is as before
            torch.manual_seed(config.seed * 10_000 + epoch + 7_919 * dist.rank)
            head_only = config.strategy == "linear-probe" or (
                config.strategy == "two-phase" and epoch <= config.head_epochs
            )
            phase = "head" if head_only else "body"  # linear-probe: only the head ever learns
            set_phase(model, config.strategy, phase, config.unfreeze, self.fixed)
            if dist.enabled and phase != ddp_phase:
                # DDP takes the parameters that learn when it is made: made again when the phase changes, it syncs
                # exactly those, and needs no search for unused ones (made once with find_unused_parameters, it
                # searched every step and torch warned on every run that it had found none)
                ddp = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[dist.local_rank] if device == "cuda" else None, find_unused_parameters=False
                )
                ddp_phase = phase
            body_learns = bool(trainable_blocks(config.strategy, phase, [None], config.unfreeze))
            dtype = amp_dtype(config.amp, device, body_learns=body_learns)
            self.epoch_precision = dtype_name(dtype)  # recorded in the epoch's history entry
            sampler, sampling = sampler_for_epoch(self.splits.train, config, epoch, dist)
            order = list(sampler)
            batches = [order[i : i + batch] for i in range(0, len(order), batch)][:steps_per_epoch]
            epoch_start, seen, loss_sum = time.perf_counter(), 0, 0.0
            with console.progress() as bar:
                task = bar.add_task(f"epoch {epoch}/{planned} ({phase})", total=len(batches), status="")
                for indices in batches:
                    # the learning rate of this step: warm-up (a share of the planned steps: of --epochs' it
                    # outlasted a budget of fewer epochs), then cosine to zero at the planned last step
                    lr_scale = lr_factor(step, planned)
                    for group in optimizer.param_groups:
                        group["lr"] = group["peak_lr"] * lr_scale
                    images = augment(train.uint8(indices), pre, kind=config.augment, hflip=config.hflip)
                    images, labels = images.to(device, non_blocking=True), train.labels(indices).to(device)
                    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
                        loss = loss_fn(ddp(images), labels)
                    if dist.any(not torch.isfinite(loss).item()):
                        raise TrainingDiverged(
                            f"the loss became {loss.item()} at epoch {epoch}, step {step % steps_per_epoch + 1}; "
                            f"training stopped{self._kept()}; try a lower --lr"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    seen += len(labels)
                    loss_sum += loss.item() * len(labels)
                    speed = seen * dist.world / (time.perf_counter() - epoch_start)
                    bar.update(task, advance=1, status=f"loss {loss_sum / seen:.3f}  {speed:.0f} img/s")
            images_per_s = seen * dist.world / (time.perf_counter() - epoch_start)
            self._end_epoch(epoch, phase, sampling, loss_sum / max(seen, 1), images_per_s, optimizer, step, planned)
            if self.on_epoch is not None and dist.main:
                self.on_epoch(epoch, self.state["history"][-1])
            took[phase].append(time.perf_counter() - epoch_began)
            if config.time_budget:  # re-plan: as many epochs as the budget holds, the schedule follows
                left = config.time_budget - (time.perf_counter() - started)
                fits = epoch
                for later in range(epoch + 1, config.epochs + 1):  # each epoch to come at its phase's cost
                    left -= self._epoch_cost(later, took)
                    if left < 0:
                        break
                    fits = later
                fits = dist.least(fits)  # one plan for every rank
                # a schedule that ended (this was its last epoch) is not lengthened: its learning rate is down to
                # zero, and taking it back up restarts the training (a resumed run's rose 22x)
                if fits < planned or epoch < planned < fits:
                    if step >= max(1, int(config.warmup * planned * steps_per_epoch)):  # past the warm-up: go on
                        anchor = (step, lr_factor(step, planned))  # from the factor reached, to zero at the new end
                    planned = fits
                    self.state["lr_anchor"] = anchor
            if epoch < config.epochs and self._should_stop(epoch):  # (after the last epoch there is nothing to stop)
                stopped_because = self._early_stop_reason(epoch)
                break
        took_s = time.perf_counter() - started
        if config.time_budget and took_s > 1.1 * config.time_budget and dist.main:
            console.err.print(
                f"[yellow]note: training took {took_s:.3g} s, past --time-budget "
                f"{config.time_budget:g} s: the plan "
                "costs each epoch by the ones before it, and an epoch ran slower (or the first one alone outlasted "
                "the budget)[/]"
            )
        return self._finish(stopped_because, took_s)

    # ------------------------------------------------------------------ helpers of the loop
    def _epoch_cost(self, epoch: int, took: dict[str, list[float]]) -> float:
        """The wall time ``epoch`` is expected to take: its phase's last epochs', or, for a body epoch before any
        ran, the last head-only epoch's times how much slower a body epoch is (2-5x measured on CPUs)."""
        config = self.config
        head = config.strategy == "linear-probe" or (config.strategy == "two-phase" and epoch <= config.head_epochs)
        recent = took["head" if head else "body"][-2:]
        if recent:
            return sum(recent) / len(recent)
        return took["head"][-1] * (1 if head else BODY_EPOCH_SLOWER)

    def _end_epoch(self, epoch, phase, sampling, loss, images_per_s, optimizer, step, planned) -> None:
        import torch

        broken = non_finite(self.model)
        if broken:
            raise TrainingDiverged(
                f"the weights became NaN or infinite at epoch {epoch} ({broken}); training stopped{self._kept()}; "
                "try a lower --lr"
            )
        if self.dist.main:
            dtype = validation_dtype(self.config.amp, self.device)  # on a CPU float32, as exported
            with threads_alone(self.dist):  # the other processes wait at the barrier below
                val_acc, _, val_loss = score(unwrap(self.model), self.val, self.device, dtype=dtype)
            if not len(self.val):  # nothing to validate on: the last epoch is the one kept
                improved, val_acc, val_loss = True, None, None
            else:  # a tie in accuracy (a small or saturated validation split) goes to the lower validation loss
                improved = val_acc > self.state["best_acc"] or (
                    val_acc == self.state["best_acc"] and val_loss < self.state.get("best_loss", math.inf)
                )
            if improved:
                best = val_acc if val_acc is not None else -1.0
                self.state.update(best_acc=best, best_epoch=epoch, best_loss=val_loss or math.inf)
            lr = max(group["lr"] for group in optimizer.param_groups)
            self.state["history"].append(
                {
                    "epoch": epoch,
                    "phase": phase,
                    "loss": loss,
                    "val_top1": val_acc,
                    "val_loss": val_loss,
                    "lr": lr,
                    "images_per_s": images_per_s,
                    "precision": self.epoch_precision,
                    "sampling": sampling,
                }
            )
            self.state.update(epoch=epoch, step=step, planned_epochs=planned, optimizer=optimizer.state_dict())
            self.state["scaler"] = self.scaler.state_dict()  # fp16 on a GPU: the loss scale ({} when not used)
            self.state["planned_by_budget"] = bool(self.config.time_budget)
            weights = {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()}
            with write_errors_said(self.out), atomic_path(self.out / RESUME_STATE) as tmp, library_write_errors(tmp):
                torch.save({**self.state, "weights": weights}, tmp)
            if improved:  # after the state that names it: a stop between the two is mended by --resume (below)
                save_checkpoint(self.model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
            (self.out / LAST_CHECKPOINT).unlink(missing_ok=True)  # an older run's, superseded
            # the card says how far training got: an interrupted run's had best_epoch null and no history until it
            # finished (a known item); complete.finetune stays false until then
            training = {**self.card.training, "history": list(self.state["history"])}
            self.card = dataclasses.replace(self.card, training={**training, "best_epoch": self.state["best_epoch"]})
            RunDir(self.out).save_card(self.card)
            if self.on_resumable is not None:
                self.on_resumable()
            val = f"val loss {val_loss:.4f}  val top-1 {val_acc:.2%}" if val_acc is not None else "no validation"
            console.err.print(
                f"epoch {epoch}/{planned} ({phase})  loss {loss:.4f}  {val}  {images_per_s:.0f} img/s  "
                f"lr {lr:.2e}{'  (best, saved)' if improved and val_acc is not None else ''}"
            )
        self.dist.barrier()

    def _kept(self) -> str:
        """What a failure leaves: the best checkpoint, or (no epoch finished: :class:`_NewOut`) ``--out`` as it was."""
        if self.state["best_epoch"]:
            return f", the best checkpoint so far (epoch {self.state['best_epoch']}) is kept in {self.out}"
        return f" before its first epoch finished; {self.out} is as it was"

    def _should_stop(self, epoch: int) -> bool:
        """Early stopping: ``patience`` epochs without a better validation score, counted from the middle of the
        planned epochs on: in the first half the learning rate is near its peak, where validation swings and says
        little of where the schedule ends (a 4-epoch run stopped after epoch 3 at 69 % validation scored 75 % on
        test; run to its end, 100 %: benchmarks/results/finetune_recipes.md, run 15). In two-phase the first epoch
        of the body is not counted either (validation often falls while the whole network starts learning)."""
        c = self.config
        planned = self.state.get("planned_epochs") or c.epochs
        since = max(self.state["best_epoch"], c.head_epochs + 1 if c.strategy == "two-phase" else 0, planned // 2)
        stop = self.dist.main and len(self.val) and c.patience is not None and epoch - since >= c.patience
        return self.dist.any(bool(stop))

    def _early_stop_reason(self, epoch: int) -> str:
        """Why early stopping ended the run after ``epoch``: the epochs since the best one (the patience counts
        only those from the middle of the plan on, so there may be more)."""
        since = epoch - self.state["best_epoch"]
        return f"early stopping (no better validation score for {since} epoch{'s' * (since != 1)})"

    def _finish(self, stopped_because: str, seconds: float) -> RunDir:
        run = RunDir(self.out)
        if not self.dist.main:
            return run
        with threads_alone(self.dist):  # the other processes are done
            return self._finish_alone(run, stopped_because, seconds)

    def _finish_alone(self, run: RunDir, stopped_because: str, seconds: float) -> RunDir:
        model = unwrap(self.model)
        model.load_state_dict(backbones.read_safetensors(self.out / CHECKPOINT))
        model.eval()
        test = score(model, Decoded(self.splits.test, self.pre, name="test images"), self.device)  # float32
        # the card's validation figure in float32 (on a GPU the epoch's own score ran in autocast)
        val = score(model, self.val, self.device)[0] if len(self.val) else None
        card = finished_card(self, stopped_because, test, seconds, val)
        plot_curves(self.state["history"], self.out / CURVES)
        if card.metrics["torch"].get("test_confusion"):
            plot_confusion(card.metrics["torch"]["test_confusion"], self.splits.labels, self.out / CONFUSION)
        run.save_card(card)
        for name in (RESUME_STATE, LAST_CHECKPOINT):
            (self.out / name).unlink(missing_ok=True)
        say_end(self, stopped_because, test[0])
        return run


def _first_three(items) -> str:
    """``a, b, c and 4 more``: a list said in one line."""
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

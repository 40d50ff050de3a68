"""Fine-tuning: adapt an ImageNet backbone to the user's labelled images, keep the best checkpoint, and
optionally adapt it to an unlabelled target domain (a new camera) afterwards.

The run directory is written in place and is always consistent: ``card.json`` says whether training finished;
``model.safetensors`` is the best checkpoint so far; ``resume.pt`` + ``last.safetensors`` hold the last finished
epoch, so Ctrl-C or a crash can be continued with ``--resume``. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetransfer import backbones, console
from edgetransfer.adapt import adapt_to_target
from edgetransfer.builtin_data import resolve_data
from edgetransfer.card import ModelCard
from edgetransfer.checkpoint import confusion, evaluate, load_model, non_finite, save_checkpoint, score, unwrap
from edgetransfer.data import (
    ImageDataset,
    Sample,
    Splits,
    default_preprocessing,
    list_images,
    load_splits,
    train_transform,
)
from edgetransfer.devices import resolve_device
from edgetransfer.errors import DataError, TrainingDiverged, UsageError
from edgetransfer.finetune_config import (
    LAST_CHECKPOINT,
    RESUME_STATE,
    FinetuneConfig,
    check_out,
    check_resume,
    check_splits,
    choose_size,
    class_counts,
    load_recipe,
    resume_options,
)
from edgetransfer.plots import plot_confusion, plot_curves
from edgetransfer.rundir import CHECKPOINT, SPLITS_FILE, RunDir, atomic_path, atomic_write_text, sha256_file
from edgetransfer.training import (
    Distributed,
    amp_dtype,
    head_and_blocks,
    param_groups,
    sampler_for_epoch,
    set_phase,
    warmup_cosine,
)
from edgetransfer.versions import package_versions

__all__ = ["FinetuneConfig", "TrainingDiverged", "evaluate", "finetune", "load_model", "load_recipe", "resume_options"]

if TYPE_CHECKING:
    pass

CURVES = "curves.png"
CONFUSION = "confusion.png"
SMALL_VAL = 50  # fewer validation images than this: the checkpoint choice is coarse, and said so


def _prepare_out(out: Path) -> None:
    """Empty ``out`` (a run directory, checked by :func:`check_out`) for a new run."""
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)


def finetune(config: FinetuneConfig, *, on_epoch: Callable[[int, dict], None] | None = None) -> RunDir:
    """Fine-tune ``config.backbone`` on ``config.data`` into the run directory ``config.out``. ``on_epoch(epoch,
    record)`` is called after each finished epoch with its history record (``val_top1``, ``val_loss``, ...); an
    exception it raises stops training there (the run keeps that epoch, resumable), e.g. a search pruning a trial."""
    config.validate()
    config = dataclasses.replace(config, data=resolve_data(config.data, config.seed))  # 'digits' from Python too
    check_out(config)
    out = Path(config.out)
    backbone = backbones.get(config.backbone)
    splits = load_splits(config.data, seed=config.seed, skip_bad=config.skip_bad)
    if splits.extra.get("skipped"):
        console.err.print(f"[yellow]skipping {len(splits.extra['skipped'])} bad file(s) (--skip-bad)[/]")
    check_splits(splits)
    device = resolve_device(config.device)
    adapt_images = list_images(config.adapt_bn) if config.adapt_bn else ()
    unlabeled = list_images(config.unlabeled) if config.unlabeled else ()
    for option, folder, images in (
        ("--adapt-bn", config.adapt_bn, adapt_images),
        ("--unlabeled", config.unlabeled, unlabeled),
    ):
        if len(images) == 1:
            raise DataError(f"{option} {folder} has 1 image; BatchNorm statistics need at least 2")
    target_val = _target_val(config.target_val, splits) if config.target_val else ()
    dist = Distributed.from_env(device)
    if dist.enabled and device == "cuda":
        import torch

        torch.cuda.set_device(dist.local_rank)
    try:
        with RunDir(out).lock("finetune") if dist.main else contextlib.nullcontext():
            trainer = _Trainer(config, out, backbone, splits, device, dist, choose_size(config, backbone, splits))
            trainer.on_epoch = on_epoch
            return trainer.run(adapt_images, unlabeled, target_val)
    finally:
        dist.close()


def _target_val(folder: str, splits: Splits) -> tuple[Sample, ...]:
    target = load_splits(folder, val_fraction=0.0, test_fraction=0.0)
    if tuple(target.labels) != tuple(splits.labels):
        raise UsageError(f"--target-val has classes {list(target.labels)}, the data has {list(splits.labels)}")
    return target.train + target.val + target.test


class _Trainer:
    """One fine-tuning run; :meth:`run` is the loop, top to bottom."""

    def __init__(
        self,
        config: FinetuneConfig,
        out: Path,
        backbone,
        splits: Splits,
        device: str,
        dist: Distributed,
        size: tuple[int, str],
    ) -> None:
        import torch

        self.config, self.out, self.backbone, self.splits, self.device, self.dist = (
            config,
            out,
            backbone,
            splits,
            device,
            dist,
        )
        torch.manual_seed(config.seed)
        weights = Path(config.weights) if config.weights else None
        self.model, self.weights_info = backbones.build(backbone, len(splits.labels), weights_path=weights)
        blocks = len(head_and_blocks(self.model)[1])
        if config.strategy == "partial" and config.unfreeze > blocks:
            raise UsageError(
                f"--unfreeze {config.unfreeze}: {backbone.name} has {blocks} blocks; --strategy full trains all"
            )
        self.size_reason = size[1]
        self.pre = default_preprocessing(size[0], mean=backbone.mean, std=backbone.std)
        self.state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": []}
        self.card: ModelCard | None = None
        self.on_epoch: Callable[[int, dict], None] | None = None
        if config.resume:
            self.card, self.state = check_resume(out, config, splits)
            self.model.load_state_dict(backbones.read_safetensors(out / LAST_CHECKPOINT))
        elif dist.main:
            _prepare_out(out)
        dist.barrier()

    # ------------------------------------------------------------------ the loop
    def run(self, adapt_images, unlabeled, target_val) -> RunDir:
        import torch

        config, model, device, dist = self.config, self.model, self.device, self.dist
        run = RunDir(self.out)
        if dist.main and self.card is None:
            record = self.splits.record()
            atomic_write_text(self.out / SPLITS_FILE, json.dumps(record) + "\n")
            self.card = self._new_card(record["fingerprint"])
            run.save_card(self.card)
        model.to(device)
        if device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        ddp = model
        if dist.enabled:  # frozen phases leave parameters without gradients: find_unused_parameters
            ddp = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.local_rank] if device == "cuda" else None, find_unused_parameters=True
            )
        steps_per_epoch = max(1, len(self.splits.train) // (config.batch_size * dist.world))
        plan = {"epochs": config.epochs}
        optimizer = torch.optim.AdamW(param_groups(model, config.lr, config.body_lr_scale, config.weight_decay))
        total = lambda: plan["epochs"] * steps_per_epoch  # noqa: E731 - re-planned under --time-budget
        warmup = max(1, int(config.warmup * config.epochs * steps_per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(total(), warmup)(step))
        if config.resume:
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
            plan["epochs"] = self.state.get("planned_epochs", config.epochs)
        dtype = amp_dtype(config.amp, device)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        train_set = ImageDataset(
            self.splits.train, train_transform(self.pre, augment=config.augment, hflip=config.hflip)
        )
        self._say_start(dtype)
        started, stopped_because = time.perf_counter(), "epochs done"
        first_epoch = self.state["epoch"] + 1
        for epoch in range(first_epoch, config.epochs + 1):
            if epoch > plan["epochs"]:
                stopped_because = "time budget"
                break
            torch.manual_seed(config.seed * 10_000 + epoch)  # augmentation and dropout: a resumed epoch is the same
            phase = "head" if config.strategy == "two-phase" and epoch <= config.head_epochs else "body"
            set_phase(model, config.strategy, phase, config.unfreeze)
            sampler, sampling = sampler_for_epoch(self.splits.train, config, epoch, dist)
            loader = torch.utils.data.DataLoader(
                train_set,
                batch_size=config.batch_size,
                sampler=sampler,
                drop_last=len(self.splits.train) > config.batch_size,
                num_workers=config.workers,
                pin_memory=device == "cuda",
                persistent_workers=False,
            )
            epoch_start, seen, loss_sum = time.perf_counter(), 0, 0.0
            with console.progress() as bar:
                task = bar.add_task(f"epoch {epoch}/{plan['epochs']} ({phase})", total=len(loader), status="")
                for step, (images, labels) in enumerate(loader):
                    images = images.to(device, non_blocking=True)
                    if device == "cuda":
                        images = images.to(memory_format=torch.channels_last)
                    labels = labels.to(device, non_blocking=True)
                    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
                        loss = loss_fn(ddp(images), labels)
                    if dist.any(not torch.isfinite(loss).item()):
                        raise TrainingDiverged(
                            f"the loss became {loss.item()} at epoch {epoch}, step {step + 1}; training stopped, "
                            f"the best checkpoint so far (epoch {self.state['best_epoch']}) is kept in {self.out}; "
                            "try a lower --lr"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    seen += len(labels)
                    loss_sum += loss.item() * len(labels)
                    bar.update(task, advance=1, status=f"loss {loss_sum / seen:.3f}")
            seconds = time.perf_counter() - epoch_start
            self._end_epoch(
                epoch, phase, sampling, loss_sum / max(seen, 1), seen * dist.world / seconds, optimizer, scheduler, plan
            )
            if self.on_epoch is not None and dist.main:
                self.on_epoch(epoch, self.state["history"][-1])
            if config.time_budget:  # re-plan: as many epochs as the budget holds, the schedule follows
                per_epoch = (time.perf_counter() - started) / (epoch - first_epoch + 1)
                plan["epochs"] = max(
                    epoch,
                    min(
                        config.epochs, epoch + int((config.time_budget - (time.perf_counter() - started)) // per_epoch)
                    ),
                )
            if self._should_stop(epoch):
                stopped_because = "early stopping"
                break
        return self._finish(stopped_because, adapt_images, unlabeled, target_val)

    # ------------------------------------------------------------------ helpers of the loop
    def _say_start(self, dtype) -> None:
        if not self.dist.main:
            return
        sizes, c = self.splits.sizes(), self.config
        console.err.print(
            f"fine-tuning {self.backbone.name} on {self.splits.root} ({len(self.splits.labels)} classes: "
            f"{class_counts(self.splits)}; train "
            f"{sizes['train']}, val {sizes['val']}, test {sizes['test']}) at {self.pre.crop}px on {self.device}"
            f"{f' x{self.dist.world}' if self.dist.enabled else ''}; strategy {c.strategy}"
            + (f", mixed precision {dtype}" if dtype is not None else "")
            + (f"; resuming after epoch {self.state['epoch']}" if c.resume else "")
            + (f"\ninput size {self.pre.crop} px {self.size_reason}" if self.size_reason != "--size" else "")
        )
        if c.strategy == "two-phase" and c.head_epochs >= c.epochs:
            console.err.print(
                f"[yellow]note: --head-epochs {c.head_epochs} >= --epochs {c.epochs}: the body never learns; "
                "raise --epochs to fine-tune it[/]"
            )
        if sizes["val"] < SMALL_VAL:
            console.err.print(
                f"[yellow]note: the validation split has {sizes['val']} images (one image is "
                f"{100 / sizes['val']:.1f} points): the best epoch is a coarse choice; ties go to the lower "
                "validation loss[/]"
            )

    def _end_epoch(self, epoch, phase, sampling, loss, images_per_s, optimizer, scheduler, plan) -> None:
        import torch

        broken = non_finite(self.model)
        if broken:
            raise TrainingDiverged(
                f"the weights became NaN or infinite at epoch {epoch} ({broken}); training stopped, the best "
                f"checkpoint so far (epoch {self.state['best_epoch']}) is kept in {self.out}; try a lower --lr"
            )
        if self.dist.main:
            val_acc, _, val_loss = score(unwrap(self.model), self.splits.val, self.pre, self.device)
            # a tie in accuracy (a small or saturated validation split) goes to the lower validation loss
            improved = val_acc > self.state["best_acc"] or (
                val_acc == self.state["best_acc"] and val_loss < self.state.get("best_loss", math.inf)
            )
            if improved:
                self.state.update(best_acc=val_acc, best_epoch=epoch, best_loss=val_loss)
                save_checkpoint(self.model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
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
                    "sampling": sampling,
                }
            )
            self.state.update(
                epoch=epoch,
                planned_epochs=plan["epochs"],
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
            )
            save_checkpoint(self.model, self.out / LAST_CHECKPOINT, {"backbone": self.backbone.name})
            with atomic_path(self.out / RESUME_STATE) as tmp:
                torch.save(self.state, tmp)
            console.err.print(
                f"epoch {epoch}/{plan['epochs']} ({phase})  loss {loss:.4f}  val loss {val_loss:.4f}  "
                f"val top-1 {val_acc:.2%}  "
                f"{images_per_s:.0f} img/s  lr {lr:.2e}{'  (best, saved)' if improved else ''}"
            )
        self.dist.barrier()

    def _should_stop(self, epoch: int) -> bool:
        patience = self.config.patience
        stop = self.dist.main and patience is not None and epoch - self.state["best_epoch"] >= patience
        return self.dist.any(stop)

    def _new_card(self, fingerprint: str) -> ModelCard:
        return ModelCard(
            labels=self.splits.labels,
            preprocessing=self.pre,
            backbone=self.backbone.name,
            weights=self.weights_info,
            dataset={
                "path": str(self.splits.root.resolve()),
                "layout": self.splits.layout,
                "seed": self.splits.seed,
                "sizes": self.splits.sizes(),
                "fingerprint": fingerprint,
                "skipped_bad_files": list(self.splits.extra.get("skipped", ())),
            },
            training={
                "config": dataclasses.asdict(self.config),
                "device": self.device,
                "world_size": self.dist.world,
                "input_size": {"pixels": self.pre.crop, "chosen": self.size_reason},
            },
            artifacts={CHECKPOINT: {"file": CHECKPOINT}},
            versions=package_versions(),
            complete={"finetune": False},
        )

    def _finish(self, stopped_because: str, adapt_images, unlabeled, target_val) -> RunDir:
        run = RunDir(self.out)
        if not self.dist.main:
            return run
        model = unwrap(self.model)
        model.load_state_dict(backbones.read_safetensors(self.out / CHECKPOINT))
        model.eval()
        adaptation = adapt_to_target(
            model, self.splits.train, adapt_images, unlabeled, target_val, self.pre, self.device, self.config
        )
        if adaptation:
            save_checkpoint(model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
        test_acc, predictions, _ = score(model, self.splits.test, self.pre, self.device)
        history = self.state["history"]
        card = dataclasses.replace(
            self.card,
            training={
                **self.card.training,
                "config": dataclasses.asdict(self.config),
                "history": history,
                "best_epoch": self.state["best_epoch"],
                "stopped": stopped_because,
                "adaptation": adaptation,
            },
            metrics={
                **self.card.metrics,
                "torch": {
                    "val_top1": self.state["best_acc"],
                    "test_top1": test_acc,
                    **confusion(self.splits.test, predictions, self.splits.labels),
                },
            },
            artifacts={
                **self.card.artifacts,
                CHECKPOINT: {"file": CHECKPOINT, "sha256": sha256_file(self.out / CHECKPOINT)},
            },
            complete={"finetune": True},
        )
        plot_curves(history, self.out / CURVES)
        plot_confusion(card.metrics["torch"]["test_confusion"], self.splits.labels, self.out / CONFUSION)
        run.save_card(card)
        for name in (RESUME_STATE, LAST_CHECKPOINT):
            (self.out / name).unlink(missing_ok=True)
        saturated = [h["epoch"] for h in history if h["val_top1"] == 1.0]
        if len(saturated) > 1:
            console.err.print(
                f"[yellow]note: validation top-1 was 100% in epochs {', '.join(map(str, saturated))}: the split "
                "cannot tell them apart; the checkpoint was chosen by validation loss[/]"
            )
        console.err.print(
            f"best val top-1 {self.state['best_acc']:.2%} (epoch {self.state['best_epoch']}, {stopped_because}); "
            f"test top-1 {test_acc:.2%}; saved {self.out}"
        )
        return run

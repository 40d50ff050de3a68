"""Fine-tuning: adapt an ImageNet backbone to the user's labelled images, keep the best checkpoint, and
optionally adapt it to an unlabelled target domain (a new camera) afterwards.

The run directory is written in place and is always consistent: ``card.json`` says whether training finished;
``model.safetensors`` is the best checkpoint so far; ``resume.pt`` + ``last.safetensors`` hold the last finished
epoch, so Ctrl-C or a crash can be continued with ``--resume``. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetransfer import backbones, console
from edgetransfer.card import ModelCard, Preprocessing
from edgetransfer.data import (
    AUGMENTATIONS,
    ImageDataset,
    Sample,
    Splits,
    default_preprocessing,
    eval_transform,
    list_images,
    load_splits,
    train_transform,
)
from edgetransfer.devices import resolve_device
from edgetransfer.errors import EdgeTransferError, RunDirError, UsageError
from edgetransfer.rundir import CARD, CHECKPOINT, RunDir, atomic_path
from edgetransfer.training import STRATEGIES, Distributed, amp_dtype, param_groups, set_phase, warmup_cosine
from edgetransfer.versions import package_versions

if TYPE_CHECKING:
    import torch

RESUME_STATE = "resume.pt"
LAST_CHECKPOINT = "last.safetensors"
CURVES = "curves.png"
# options that may change when resuming; any other change makes --resume refuse
RESUMABLE_CHANGES = {"epochs", "device", "workers", "time_budget", "patience", "resume", "overwrite", "out"}


class TrainingDiverged(EdgeTransferError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run; the resolved config is written into the run's card."""

    data: str
    out: str
    backbone: str = "mobilenet_v2"
    weights: str | None = None  # a weights file to start from instead of the registry's sources
    size: int | None = None  # input resolution; default: the backbone's
    strategy: str = "two-phase"  # head first, then the whole body at a lower learning rate
    head_epochs: int = 1  # two-phase: epochs of head-only training
    unfreeze: int = 3  # partial: how many of the last body blocks learn
    epochs: int = 5
    batch_size: int = 32
    lr: float = 2e-3  # the head's peak learning rate (benchmarks/finetune_recipes.py chose the defaults)
    body_lr_scale: float = 1.0  # the body learns at lr * body_lr_scale
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps spent warming the learning rate up
    label_smoothing: float = 0.1
    augment: str = "light"
    hflip: bool = False
    balanced: str = "auto"  # class-balanced sampling: auto (when classes are skewed 3:1 or more), on, off
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    time_budget: float | None = None  # seconds of training, at most
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int = 0
    adapt_bn: str | None = None  # unlabelled target-domain images: re-estimate BatchNorm statistics on them
    unlabeled: str | None = None  # unlabelled target images for pseudo-label self-training
    target_val: str | None = None  # a small labelled target split: measures (and guards) adaptation
    pseudo_threshold: float = 0.9
    pseudo_rounds: int = 2
    pseudo_lambda: float = 0.5
    pseudo_lr: float = 9e-5  # self-training's learning rate: small, it refines an adapted model
    skip_bad: bool = False  # train on the good images of a folder with unreadable ones (listed in the card)
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two images)"),
            (self.size is None or self.size >= 32, "--size must be at least 32 pixels"),
            (self.lr > 0 and self.body_lr_scale > 0, "--lr and --body-lr-scale must be positive"),
            (self.strategy in STRATEGIES, f"unknown --strategy {self.strategy!r}; choose {', '.join(STRATEGIES)}"),
            (self.augment in AUGMENTATIONS, f"unknown --augment {self.augment!r}; choose {', '.join(AUGMENTATIONS)}"),
            (self.balanced in ("auto", "on", "off"), "--balanced must be auto, on or off"),
            (self.patience is None or self.patience >= 1, "--patience must be at least 1"),
            (self.time_budget is None or self.time_budget > 0, "--time-budget must be positive"),
            (0 < self.pseudo_threshold <= 1 and 0 <= self.pseudo_lambda <= 1, "pseudo-label options out of range"),
            (self.pseudo_lr > 0, "--pseudo-lr must be positive"),
            (self.head_epochs >= 0 and self.unfreeze >= 0, "--head-epochs and --unfreeze must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)


def load_recipe(path: Path | str) -> dict[str, Any]:
    """Options from a TOML recipe (``key = value`` with FinetuneConfig's names); unknown keys are an error."""
    import tomllib

    path = Path(path)
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read recipe {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {path} is not valid TOML: {exc}") from None
    recipe = recipe.get("finetune", recipe)
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise UsageError(f"recipe {path} has unknown option(s): {', '.join(unknown)}")
    return recipe


def evaluate(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, batch_size: int = 64
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``samples`` with the evaluation transform."""
    return _predict(model, samples, pre, device, batch_size)[0]


def _predict(model, samples, pre, device, batch_size: int = 64) -> tuple[float, list[int]]:
    import torch

    if not samples:
        return float("nan"), []
    model.eval()
    dataset = ImageDataset(samples, eval_transform(pre))
    predictions: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            images = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(samples)))])
            predictions += model(images.to(device)).argmax(1).tolist()
    correct = sum(int(p == s.label) for p, s in zip(predictions, samples, strict=True))
    return correct / len(samples), predictions


def save_checkpoint(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _unwrap(model):
    return getattr(model, "module", model)


def load_model(run: RunDir, card: ModelCard, checkpoint: str = CHECKPOINT) -> torch.nn.Module:
    """The fine-tuned model of a run, in eval mode on the CPU."""
    from safetensors.torch import load_file

    model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
    model.load_state_dict(load_file(str(run.file(checkpoint))))
    return model.eval()


def _sampler(samples: tuple[Sample, ...], config: FinetuneConfig, epoch: int, dist: Distributed):
    """Distributed, class-balanced or plain shuffling, seeded per epoch (so a resumed run sees the same order)."""
    import collections

    import torch

    if dist.enabled:
        sampler = torch.utils.data.DistributedSampler(
            range(len(samples)), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=config.seed
        )
        sampler.set_epoch(epoch)
        return sampler, "distributed"
    counts = collections.Counter(s.label for s in samples)
    skewed = max(counts.values()) >= 3 * min(counts.values())
    generator = torch.Generator().manual_seed(config.seed + epoch)
    if config.balanced == "on" or (config.balanced == "auto" and skewed):
        weights = [1.0 / counts[s.label] for s in samples]
        return torch.utils.data.WeightedRandomSampler(weights, len(samples), generator=generator), "class-balanced"
    return torch.utils.data.RandomSampler(range(len(samples)), generator=generator), "shuffled"


def _check_resume(out: Path, config: FinetuneConfig, splits: Splits) -> tuple[ModelCard, dict]:
    import torch

    run = RunDir(out)
    if not run.file(CARD).is_file():
        raise RunDirError(f"nothing to resume in {out}: it has no {CARD}")
    card = run.load_card()
    if card.complete.get("finetune"):
        raise RunDirError(f"{out} finished training already; nothing to resume")
    if not run.file(RESUME_STATE).is_file():
        raise RunDirError(f"{out} has no {RESUME_STATE} (no epoch finished); start again with --overwrite")
    before = card.training.get("config", {})
    changed = sorted(
        k
        for k, v in dataclasses.asdict(config).items()
        if k not in RESUMABLE_CHANGES and k in before and before[k] != v
    )
    if changed:
        raise UsageError(
            f"--resume with changed option(s): {', '.join(changed)}; only "
            f"{', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'overwrite', 'out'}))} may change"
        )
    if tuple(splits.labels) != tuple(card.labels):
        raise UsageError(f"the data's classes {list(splits.labels)} differ from the checkpoint's {list(card.labels)}")
    if splits.fingerprint() != card.dataset.get("fingerprint"):
        raise UsageError(f"the images in {splits.root} changed since the run started; cannot resume")
    return card, torch.load(run.file(RESUME_STATE), map_location="cpu", weights_only=True)


def _prepare_out(out: Path, config: FinetuneConfig) -> None:
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise UsageError(
                f"{out} already exists and is not empty; choose another --out, pass --overwrite, "
                "or --resume an unfinished run"
            )
        shutil.rmtree(out)


def finetune(config: FinetuneConfig) -> RunDir:
    """Fine-tune ``config.backbone`` on ``config.data`` into the run directory ``config.out``."""
    config.validate()
    out = Path(config.out)
    backbone = backbones.get(config.backbone)
    splits = load_splits(config.data, seed=config.seed, skip_bad=config.skip_bad)
    if splits.extra.get("skipped"):
        console.err.print(f"[yellow]skipping {len(splits.extra['skipped'])} bad file(s) (--skip-bad)[/]")
    device = resolve_device(config.device)
    adapt_images = list_images(config.adapt_bn) if config.adapt_bn else ()
    unlabeled = list_images(config.unlabeled) if config.unlabeled else ()
    target_val = _target_val(config.target_val, splits) if config.target_val else ()
    dist = Distributed.from_env(device)
    if dist.enabled and device == "cuda":
        import torch

        torch.cuda.set_device(dist.local_rank)
    try:
        with RunDir(out).lock("finetune") if dist.main else contextlib.nullcontext():
            trainer = _Trainer(config, out, backbone, splits, device, dist)
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
        self, config: FinetuneConfig, out: Path, backbone, splits: Splits, device: str, dist: Distributed
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
        self.pre = default_preprocessing(config.size or backbone.input_size, mean=backbone.mean, std=backbone.std)
        self.state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": []}
        self.card: ModelCard | None = None
        if config.resume:
            self.card, self.state = _check_resume(out, config, splits)
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(out / LAST_CHECKPOINT)))
        elif dist.main:
            _prepare_out(out, config)
        dist.barrier()

    # ------------------------------------------------------------------ the loop
    def run(self, adapt_images, unlabeled, target_val) -> RunDir:
        import torch

        config, model, device, dist = self.config, self.model, self.device, self.dist
        run = RunDir(self.out)
        if dist.main and self.card is None:
            self.card = self._new_card()
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
            phase = "head" if config.strategy == "two-phase" and epoch <= config.head_epochs else "body"
            set_phase(model, config.strategy, phase, config.unfreeze)
            sampler, sampling = _sampler(self.splits.train, config, epoch, dist)
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
            f"{_class_counts(self.splits)}; train "
            f"{sizes['train']}, val {sizes['val']}, test {sizes['test']}) at {self.pre.crop}px on {self.device}"
            f"{f' x{self.dist.world}' if self.dist.enabled else ''}; strategy {c.strategy}"
            + (f", mixed precision {dtype}" if dtype is not None else "")
            + (f"; resuming after epoch {self.state['epoch']}" if c.resume else "")
        )

    def _end_epoch(self, epoch, phase, sampling, loss, images_per_s, optimizer, scheduler, plan) -> None:
        import torch

        if self.dist.main:
            val_acc = evaluate(_unwrap(self.model), self.splits.val, self.pre, self.device)
            improved = val_acc > self.state["best_acc"]
            if improved:
                self.state.update(best_acc=val_acc, best_epoch=epoch)
                save_checkpoint(self.model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
            lr = max(group["lr"] for group in optimizer.param_groups)
            self.state["history"].append(
                {
                    "epoch": epoch,
                    "phase": phase,
                    "loss": loss,
                    "val_top1": val_acc,
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
                f"epoch {epoch}/{plan['epochs']} ({phase})  loss {loss:.4f}  val top-1 {val_acc:.2%}  "
                f"{images_per_s:.0f} img/s  lr {lr:.2e}{'  (best, saved)' if improved else ''}"
            )
        self.dist.barrier()

    def _should_stop(self, epoch: int) -> bool:
        patience = self.config.patience
        stop = self.dist.main and patience is not None and epoch - self.state["best_epoch"] >= patience
        return self.dist.any(stop)

    def _new_card(self) -> ModelCard:
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
                "fingerprint": self.splits.fingerprint(),
                "skipped_bad_files": list(self.splits.extra.get("skipped", ())),
            },
            training={"config": dataclasses.asdict(self.config), "device": self.device, "world_size": self.dist.world},
            artifacts={CHECKPOINT: {"file": CHECKPOINT}},
            versions=package_versions(),
            complete={"finetune": False},
        )

    def _finish(self, stopped_because: str, adapt_images, unlabeled, target_val) -> RunDir:
        from safetensors.torch import load_file

        run = RunDir(self.out)
        if not self.dist.main:
            return run
        model = _unwrap(self.model)
        model.load_state_dict(load_file(str(self.out / CHECKPOINT)))
        model.eval()
        adaptation = self._adapt(model, adapt_images, unlabeled, target_val)
        if adaptation:
            save_checkpoint(model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
        test_acc, predictions = _predict(model, self.splits.test, self.pre, self.device)
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
                    **_confusion(self.splits.test, predictions, self.splits.labels),
                },
            },
            complete={"finetune": True},
        )
        _plot_curves(history, self.out / CURVES)
        run.save_card(card)
        for name in (RESUME_STATE, LAST_CHECKPOINT):
            (self.out / name).unlink(missing_ok=True)
        console.err.print(
            f"best val top-1 {self.state['best_acc']:.2%} (epoch {self.state['best_epoch']}, {stopped_because}); "
            f"test top-1 {test_acc:.2%}; saved {self.out}"
        )
        return run

    def _adapt(self, model, adapt_images, unlabeled, target_val) -> dict:
        """AdaBN and pseudo-label self-training on the target domain, measured on ``target_val`` when given."""
        from edgetransfer.adapt import SelfTrainConfig, adapt_bn, self_train

        if not adapt_images and not unlabeled:
            return {}
        measure = (lambda m: evaluate(m, target_val, self.pre, self.device)) if target_val else None
        record: dict[str, Any] = {}
        if measure:
            record["target_val_top1_source_only"] = measure(model)
        target = adapt_images or unlabeled
        adapt_bn(model, target, self.pre, self.device)
        model.eval()
        record["adapt_bn_images"] = len(target)
        if measure:
            record["target_val_top1_adabn"] = measure(model)
            console.err.print(
                f"target val top-1: source-only {record['target_val_top1_source_only']:.2%}, "
                f"after AdaBN {record['target_val_top1_adabn']:.2%}"
            )
        if unlabeled:
            c = self.config
            record["self_training"] = self_train(
                model,
                self.splits.train,
                unlabeled,
                self.pre,
                self.device,
                SelfTrainConfig(
                    threshold=c.pseudo_threshold,
                    rounds=c.pseudo_rounds,
                    lam=c.pseudo_lambda,
                    batch_size=c.batch_size,
                    seed=c.seed,
                    lr=c.pseudo_lr,
                ),
                evaluate_target=measure,
            )
            if measure:
                record["target_val_top1_final"] = measure(model)
        return record


def _class_counts(splits: Splits) -> str:
    import collections

    counts = collections.Counter(s.label for split in ("train", "val", "test") for s in splits.split(split))
    shown = ", ".join(f"{splits.labels[i]} {counts[i]}" for i in range(min(len(splits.labels), 12)))
    return shown + (", ..." if len(splits.labels) > 12 else "")


def _confusion(samples: tuple[Sample, ...], predictions: list[int], labels: tuple[str, ...]) -> dict:
    """The test confusion matrix (rows: true class, columns: predicted) and per-class accuracy."""
    n = len(labels)
    matrix = [[0] * n for _ in range(n)]
    for sample, predicted in zip(samples, predictions, strict=True):
        matrix[sample.label][predicted] += 1
    per_class = {labels[i]: (matrix[i][i] / sum(matrix[i]) if sum(matrix[i]) else math.nan) for i in range(n)}
    return {"test_confusion": matrix, "test_per_class_top1": per_class}


def _plot_curves(history: list[dict], path: Path) -> None:
    """Loss, validation accuracy and learning rate per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, title in zip(
        axes, ("loss", "val_top1", "lr"), ("training loss", "val top-1", "learning rate"), strict=True
    ):
        ax.plot(epochs, [h[key] for h in history], marker="o")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

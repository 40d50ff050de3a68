"""Fine-tuning: adapt an ImageNet backbone to the user's labelled images, keep the best checkpoint."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgetransfer import backbones, console
from edgetransfer.card import ModelCard, Preprocessing
from edgetransfer.data import ImageDataset, Sample, default_preprocessing, eval_transform, load_splits, train_transform
from edgetransfer.devices import resolve_device
from edgetransfer.errors import UsageError
from edgetransfer.rundir import CHECKPOINT, RunDir, atomic_path, staging_dir
from edgetransfer.versions import package_versions

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run; written into the run's card."""

    data: str
    out: str
    backbone: str = "mobilenet_v2"
    weights: str | None = None  # a weights file to start from instead of the registry's sources
    size: int | None = None  # input resolution; default: the backbone's
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    overwrite: bool = False

    def validate(self) -> None:
        if self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2 (BatchNorm needs two images)")
        if self.size is not None and self.size < 32:
            raise UsageError("--size must be at least 32 pixels")
        if self.lr <= 0:
            raise UsageError("--lr must be positive")


def _loader(samples: tuple[Sample, ...], transform, config: FinetuneConfig, *, train: bool, device: str):
    import torch

    generator = torch.Generator().manual_seed(config.seed)
    return torch.utils.data.DataLoader(
        ImageDataset(samples, transform),
        batch_size=config.batch_size,
        shuffle=train,
        drop_last=train and len(samples) > config.batch_size,
        num_workers=config.workers,
        pin_memory=device == "cuda",
        generator=generator,
    )


def evaluate(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, batch_size: int = 64
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``samples`` with the evaluation transform."""
    import torch

    if not samples:
        return float("nan")
    model.eval()
    transform = eval_transform(pre)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            images = torch.stack([ImageDataset(chunk, transform)[i][0] for i in range(len(chunk))]).to(device)
            labels = torch.tensor([s.label for s in chunk], device=device)
            correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(samples)


def save_checkpoint(model: torch.nn.Module, path: Path, card_fields: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=card_fields)


def load_model(run: RunDir, card: ModelCard) -> torch.nn.Module:
    """The fine-tuned model of a run, in eval mode on the CPU."""
    from safetensors.torch import load_file

    model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
    model.load_state_dict(load_file(str(run.file(CHECKPOINT))))
    return model.eval()


def finetune(config: FinetuneConfig) -> RunDir:
    """Fine-tune ``config.backbone`` on ``config.data`` and write a complete run directory to ``config.out``."""
    import torch

    config.validate()
    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise UsageError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    backbone = backbones.get(config.backbone)
    splits = load_splits(config.data, seed=config.seed)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model, weights_info = backbones.build(
        backbone, len(splits.labels), weights_path=Path(config.weights) if config.weights else None
    )
    model.to(device)
    pre = default_preprocessing(config.size or backbone.input_size)
    train_loader = _loader(splits.train, train_transform(pre), config, train=True, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * len(train_loader), pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    sizes = splits.sizes()
    console.err.print(
        f"fine-tuning {backbone.name} on {splits.root} ({len(splits.labels)} classes; "
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}) at {pre.crop}px on {device}"
    )
    history, best_acc, best_epoch = [], -1.0, 0
    with staging_dir(out) as stage:
        for epoch in range(1, config.epochs + 1):
            model.train()
            started, seen, loss_sum = time.perf_counter(), 0, 0.0
            with console.progress() as bar:
                task = bar.add_task(f"epoch {epoch}/{config.epochs}", total=len(train_loader), status="")
                for images, labels in train_loader:
                    images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                    loss = loss_fn(model(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    seen += len(labels)
                    loss_sum += loss.item() * len(labels)
                    bar.update(task, advance=1, status=f"loss {loss_sum / seen:.3f}")
            seconds = time.perf_counter() - started
            val_acc = evaluate(model, splits.val, pre, device)
            improved = val_acc > best_acc
            if improved:
                best_acc, best_epoch = val_acc, epoch
                save_checkpoint(model, stage / CHECKPOINT, {"backbone": backbone.name})
            history.append(
                {"epoch": epoch, "loss": loss_sum / max(seen, 1), "val_top1": val_acc, "images_per_s": seen / seconds}
            )
            console.err.print(
                f"epoch {epoch}/{config.epochs}  loss {loss_sum / max(seen, 1):.4f}  val top-1 {val_acc:.2%}  "
                f"{seen / seconds:.0f} img/s{'  (best, saved)' if improved else ''}"
            )
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(stage / CHECKPOINT)))
        test_acc = evaluate(model, splits.test, pre, device)
        card = ModelCard(
            labels=splits.labels,
            preprocessing=pre,
            backbone=backbone.name,
            weights=weights_info,
            dataset={
                "path": str(splits.root.resolve()),
                "layout": splits.layout,
                "seed": splits.seed,
                "sizes": sizes,
                "fingerprint": splits.fingerprint(),
            },
            training={
                "config": dataclasses.asdict(config),
                "device": device,
                "best_epoch": best_epoch,
                "history": history,
            },
            metrics={"torch": {"val_top1": best_acc, "test_top1": test_acc}},
            artifacts={CHECKPOINT: {"file": CHECKPOINT}},
            versions=package_versions(),
            complete={"finetune": True},
        )
        RunDir(stage).save_card(card)
    console.err.print(f"best val top-1 {best_acc:.2%} (epoch {best_epoch}); test top-1 {test_acc:.2%}; saved {out}")
    return RunDir(out)

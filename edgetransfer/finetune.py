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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetransfer import backbones, console
from edgetransfer.card import ModelCard, Preprocessing, verify_artifact
from edgetransfer.data import (
    AUGMENTATIONS,
    ImageDataset,
    Sample,
    Splits,
    default_preprocessing,
    eval_transform,
    list_images,
    load_splits,
    median_shorter_side,
    train_transform,
)
from edgetransfer.devices import resolve_device
from edgetransfer.errors import DataError, EdgeTransferError, RunDirError, UsageError
from edgetransfer.rundir import CARD, CHECKPOINT, SPLITS_FILE, RunDir, atomic_path, atomic_write_text, sha256_file
from edgetransfer.training import AMP_MODES, STRATEGIES, Distributed, amp_dtype, param_groups, set_phase, warmup_cosine
from edgetransfer.versions import package_versions

if TYPE_CHECKING:
    import torch

RESUME_STATE = "resume.pt"
LAST_CHECKPOINT = "last.safetensors"
CURVES = "curves.png"
CONFUSION = "confusion.png"
SMALL_VAL = 50  # fewer validation images than this: the checkpoint choice is coarse, and said so
# options that may change when resuming; any other change makes --resume refuse
# (the data path may be spelt another way: the fingerprint of its images decides)
RESUMABLE_CHANGES = {"epochs", "device", "workers", "time_budget", "patience", "resume", "overwrite", "out", "data"}


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
        """Every option checked before any work: types, finite numbers, ranges. One :class:`UsageError` each."""
        _check_types(self)
        numbers = ("lr", "body_lr_scale", "weight_decay", "warmup", "label_smoothing", "time_budget")
        numbers += ("pseudo_threshold", "pseudo_lambda", "pseudo_lr")
        for name in numbers:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number, not {value}")
        checks = [
            (1 <= self.epochs <= MAX_EPOCHS, f"--epochs must be 1..{MAX_EPOCHS}"),
            (2 <= self.batch_size <= MAX_BATCH, f"--batch-size must be 2..{MAX_BATCH} (BatchNorm needs two images)"),
            (self.size is None or MIN_SIZE <= self.size <= MAX_SIZE, f"--size must be {MIN_SIZE}..{MAX_SIZE} pixels"),
            (self.lr > 0 and self.body_lr_scale > 0, "--lr and --body-lr-scale must be positive"),
            (self.lr <= 10, "--lr above 10 cannot train; the default is 2e-3"),
            (0 <= self.weight_decay <= 10, "--weight-decay must be 0..10"),
            (0 <= self.warmup < 1, "--warmup is a fraction of the steps: 0 <= warmup < 1"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be 0 <= value < 1"),
            (self.strategy in STRATEGIES, f"unknown --strategy {self.strategy!r}; choose {', '.join(STRATEGIES)}"),
            (self.augment in AUGMENTATIONS, f"unknown --augment {self.augment!r}; choose {', '.join(AUGMENTATIONS)}"),
            (self.balanced in ("auto", "on", "off"), "--balanced must be auto, on or off"),
            (self.patience is None or self.patience >= 1, "--patience must be at least 1"),
            (self.time_budget is None or self.time_budget > 0, "--time-budget must be positive"),
            (0 < self.pseudo_threshold <= 1 and 0 <= self.pseudo_lambda <= 1, "pseudo-label options out of range"),
            (self.pseudo_lr > 0, "--pseudo-lr must be positive"),
            (1 <= self.pseudo_rounds <= 100, "--pseudo-rounds must be 1..100"),
            (self.head_epochs >= 0 and self.unfreeze >= 0, "--head-epochs and --unfreeze must not be negative"),
            (0 <= self.workers <= 256, "--workers must be 0..256"),
            (0 <= self.seed < 2**32, "--seed must be 0..2**32-1"),
            (self.amp in AMP_MODES, f"unknown --amp {self.amp!r}; choose one of {', '.join(AMP_MODES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)


MIN_SIZE, MAX_SIZE = 32, 1024  # input pixels; past 1024 a classifier backbone only burns memory
MAX_EPOCHS, MAX_BATCH = 10_000, 4096
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_types(config: FinetuneConfig) -> None:
    """Each field holds its declared type (a recipe can hold anything): a one-line :class:`UsageError` if not."""
    for f in dataclasses.fields(config):
        value, kinds = getattr(config, f.name), [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if not allowed:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise UsageError(f"option {f.name} must be {' or '.join(kinds)}, not {type(value).__name__} {value!r}")


def load_recipe(path: Path | str) -> dict[str, Any]:
    """Options from a TOML recipe (``key = value`` with FinetuneConfig's names); unknown keys are an error."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
        import tomli as tomllib

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


def resume_options(out: Path | str) -> dict[str, Any]:
    """The options an unfinished run was started with, from its card: ``--resume --out RUN`` needs no others,
    and options given again override them."""
    run = RunDir(Path(out))
    if not run.file(CARD).is_file():
        raise RunDirError(f"nothing to resume in {out}: it has no {CARD}")
    card = run.load_card()
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    options = {k: v for k, v in card.training.get("config", {}).items() if k in known}
    options["data"] = card.dataset.get("path", options.get("data"))  # absolute: resumes from any folder
    return options


def evaluate(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, batch_size: int = 64
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``samples`` with the evaluation transform."""
    return _predict(model, samples, pre, device, batch_size)[0]


def _predict(model, samples, pre, device, batch_size: int = 64) -> tuple[float, list[int], float]:
    """Top-1 accuracy, the predicted classes and the mean cross-entropy loss of ``model`` on ``samples``."""
    import torch

    if not samples:
        return float("nan"), [], float("nan")
    model.eval()
    dataset = ImageDataset(samples, eval_transform(pre))
    predictions: list[int] = []
    loss_sum = 0.0
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            indices = range(start, min(start + batch_size, len(samples)))
            images = torch.stack([dataset[i][0] for i in indices])
            labels = torch.tensor([samples[i].label for i in indices], device=device)
            logits = model(images.to(device)).float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            predictions += logits.argmax(1).tolist()
    correct = sum(int(p == s.label) for p, s in zip(predictions, samples, strict=True))
    return correct / len(samples), predictions, loss_sum / len(samples)


def save_checkpoint(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first weight or BatchNorm statistic holding NaN or infinity, or None."""
    import torch

    for name, tensor in _unwrap(model).state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def _unwrap(model):
    return getattr(model, "module", model)


def load_model(run: RunDir, card: ModelCard, checkpoint: str = CHECKPOINT) -> torch.nn.Module:
    """The fine-tuned model of a run, in eval mode on the CPU."""
    path = run.file(checkpoint)
    if checkpoint == CHECKPOINT:
        verify_artifact(run.path, checkpoint, card.artifacts)
    model, _ = backbones.build(card.backbone, card.num_classes, pretrained=False)
    try:
        model.load_state_dict(backbones.read_safetensors(path))
    except RuntimeError as exc:
        raise RunDirError(f"{path} does not fit a {card.backbone} with {card.num_classes} classes: {exc}") from None
    broken = _non_finite(model)
    if broken:
        raise RunDirError(f"{path} holds NaN or infinite weights ({broken}); fine-tune the run again")
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
    try:
        state = torch.load(run.file(RESUME_STATE), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: said in one line
        raise RunDirError(
            f"cannot read {run.file(RESUME_STATE)} ({str(exc).splitlines()[0][:80]}); start again with --overwrite"
        ) from None
    return card, state


def check_out(config: FinetuneConfig) -> None:
    """Refuse an ``--out`` that would destroy or swallow something that is not ours, before any work: the
    filesystem root or the home folder, a folder holding (or inside) an input of the run, an existing file, or an
    existing folder that is not a run this project made (``--overwrite`` replaces runs only)."""
    out = Path(config.out).expanduser()
    where = out.resolve()
    if where == Path(where.anchor) or where == Path.home().resolve():
        raise UsageError(f"--out {config.out} is {where}; name a folder for the run, e.g. models/NAME")
    inputs = {
        "--data": config.data,
        "--adapt-bn": config.adapt_bn,
        "--unlabeled": config.unlabeled,
        "--target-val": config.target_val,
        "--weights": config.weights,
    }
    for option, value in inputs.items():
        if value is None:
            continue
        given = Path(value).expanduser().resolve()
        if given.is_relative_to(where):
            raise UsageError(f"--out {config.out} holds {option} {value}: the run would replace its own input")
        if option != "--weights" and where.is_relative_to(given):
            raise UsageError(f"--out {config.out} is inside {option} {value}: choose a folder outside it")
    if config.resume or not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {config.out} is a file, not a folder; choose another --out")
    if not any(out.iterdir()):
        return
    if not config.overwrite:
        raise UsageError(
            f"{out} already exists and is not empty; choose another --out, pass --overwrite, "
            "or --resume an unfinished run"
        )
    if not RunDir.is_run(out):
        raise UsageError(
            f"--overwrite replaces only a run directory made by edgetransfer, and {out} has no {CARD} of one; "
            "choose another --out (or remove the folder yourself)"
        )


def _prepare_out(out: Path) -> None:
    """Empty ``out`` (a run directory, checked by :func:`check_out`) for a new run."""
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)


def finetune(config: FinetuneConfig) -> RunDir:
    """Fine-tune ``config.backbone`` on ``config.data`` into the run directory ``config.out``."""
    config.validate()
    check_out(config)
    out = Path(config.out)
    backbone = backbones.get(config.backbone)
    splits = load_splits(config.data, seed=config.seed, skip_bad=config.skip_bad)
    if splits.extra.get("skipped"):
        console.err.print(f"[yellow]skipping {len(splits.extra['skipped'])} bad file(s) (--skip-bad)[/]")
    _check_splits(splits)
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
            return trainer.run(adapt_images, unlabeled, target_val)
    finally:
        dist.close()


AUTO_MIN_SIZE = 96  # the smallest input a size from the data goes to: MobileNetV2's last feature map is then 3x3


def choose_size(config: FinetuneConfig, backbone, splits: Splits) -> tuple[int, str]:
    """The input size and why: ``--size``, else from the training images (their median shorter side rounded up to
    a multiple of 32, within 96..the backbone's default): 64 px crops train at 96 px, not at 224."""
    if config.size:
        return config.size, "--size"
    side = median_shorter_side(splits.train, seed=config.seed)
    size = min(max(-(-side // 32) * 32, AUTO_MIN_SIZE), backbone.input_size)
    return size, (
        f"from the images: median shorter side {side} px, rounded up to a multiple of 32 within "
        f"{AUTO_MIN_SIZE}..{backbone.input_size} (--size to choose)"
    )


def _check_splits(splits: Splits) -> None:
    """Training needs images to learn from, validation images to choose the checkpoint by and test images to report
    on: checked before the work, not found missing after it."""
    sizes = splits.sizes()
    if all(sizes.values()):
        return
    counts = f"{sizes['train']} training, {sizes['val']} validation and {sizes['test']} test images"
    if splits.layout == "folders" and sizes["train"] and sizes["val"]:
        raise DataError(f"{splits.root} has no test images ({counts}); add {splits.root / 'test'}/<class>/...")
    raise DataError(
        f"{splits.root} gives {counts} ({_class_counts(splits)}): too few to split; each class needs at least "
        f"{MIN_PER_CLASS} images, or give DIR/train, DIR/val and DIR/test"
    )


MIN_PER_CLASS = 4  # 70/15/15: the fewest images per class that leave one for validation


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
        self.size_reason = size[1]
        self.pre = default_preprocessing(size[0], mean=backbone.mean, std=backbone.std)
        self.state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": []}
        self.card: ModelCard | None = None
        if config.resume:
            self.card, self.state = _check_resume(out, config, splits)
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
            + (f"\ninput size {self.pre.crop} px {self.size_reason}" if self.size_reason != "--size" else "")
        )
        if sizes["val"] < SMALL_VAL:
            console.err.print(
                f"[yellow]note: the validation split has {sizes['val']} images (one image is "
                f"{100 / sizes['val']:.1f} points): the best epoch is a coarse choice; ties go to the lower "
                "validation loss[/]"
            )

    def _end_epoch(self, epoch, phase, sampling, loss, images_per_s, optimizer, scheduler, plan) -> None:
        import torch

        broken = _non_finite(self.model)
        if broken:
            raise TrainingDiverged(
                f"the weights became NaN or infinite at epoch {epoch} ({broken}); training stopped, the best "
                f"checkpoint so far (epoch {self.state['best_epoch']}) is kept in {self.out}; try a lower --lr"
            )
        if self.dist.main:
            val_acc, _, val_loss = _predict(_unwrap(self.model), self.splits.val, self.pre, self.device)
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
        model = _unwrap(self.model)
        model.load_state_dict(backbones.read_safetensors(self.out / CHECKPOINT))
        model.eval()
        adaptation = self._adapt(model, adapt_images, unlabeled, target_val)
        if adaptation:
            save_checkpoint(model, self.out / CHECKPOINT, {"backbone": self.backbone.name})
        test_acc, predictions, _ = _predict(model, self.splits.test, self.pre, self.device)
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
            artifacts={
                **self.card.artifacts,
                CHECKPOINT: {"file": CHECKPOINT, "sha256": sha256_file(self.out / CHECKPOINT)},
            },
            complete={"finetune": True},
        )
        _plot_curves(history, self.out / CURVES)
        _plot_confusion(card.metrics["torch"]["test_confusion"], self.splits.labels, self.out / CONFUSION)
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
    """Training and validation loss, validation accuracy and learning rate per epoch, the phases marked, as a
    PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = (
        (("loss", "training"), ("val_loss", "validation")),
        (("val_top1", "validation"),),
        (("lr", "peak"),),
    )
    for ax, lines, title in zip(axes, panels, ("loss", "val top-1", "learning rate"), strict=True):
        for key, label in lines:
            ax.plot(epochs, [h.get(key, math.nan) for h in history], marker="o", label=label)
        for before, after in zip(history, history[1:], strict=False):
            if before["phase"] != after["phase"]:  # two-phase: where the body starts learning
                ax.axvline(before["epoch"] + 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(before["epoch"] + 0.55, 0.95, after["phase"], transform=ax.get_xaxis_transform(), color="grey")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_confusion(matrix: list[list[int]], labels: tuple[str, ...], path: Path) -> None:
    """The test confusion matrix (rows: true class, columns: predicted), counts in the cells, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    side = min(2 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(n)
    ax.set_xticks(ticks, [str(label)[:12] for label in labels], rotation=90 if n > 6 else 0)
    ax.set_yticks(ticks, [str(label)[:12] for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix")
    if n <= 30:
        peak = max(max(row) for row in matrix) or 1
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    colour = "white" if matrix[i][j] > peak / 2 else "black"
                    ax.text(j, i, matrix[i][j], ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

"""What decides a fine-tuning run, checked before any work: the options (FinetuneConfig), a TOML recipe, the
options of a run to resume, the output folder, the input size and the data's splits."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, create_model

from edgetransfer.card import ModelCard
from edgetransfer.data import AUGMENTATIONS, Splits, median_shorter_side
from edgetransfer.errors import DataError, RunDirError, UsageError
from edgetransfer.rundir import CARD, RunDir, resume_command
from edgetransfer.schemas import Schema, dataclass_schema, read_toml, validate
from edgetransfer.training import AMP_MODES, STRATEGIES, skewed

RESUME_STATE = "resume.pt"  # the last finished epoch: optimizer, scheduler, history
LAST_CHECKPOINT = "last.safetensors"  # the weights after the last finished epoch
# options that may change when resuming; any other change makes --resume refuse
# (the data path may be spelt another way: the fingerprint of its images decides)
RESUMABLE_CHANGES = {"epochs", "device", "workers", "time_budget", "patience", "resume", "overwrite", "out", "data"}


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run; the resolved config is written into the run's card."""

    data: str
    out: str
    backbone: str = "mobilenet_v2"
    weights: str | None = None  # a weights file to start from instead of the registry's sources
    size: int | None = None  # input resolution; default: from the images (see choose_size)
    strategy: str = "auto"  # from the training split's size (choose_strategy): full for large splits, else two-phase
    head_epochs: int = 1  # two-phase: epochs of head-only training
    unfreeze: int = 3  # partial: how many of the last body blocks learn
    freeze_early: bool | None = None  # keep the blocks at output stride <= 4 fixed (BatchNorm stats follow); default:
    # on where --strategy auto chose full fine-tuning, else off
    epochs: int = 4  # at most; 5 took 1.14x the hand loop's time (benchmarks/results/finetune_recipes.md)
    batch_size: int | None = None  # images per step; default: from the training split's size (see choose_batch)
    lr: float = 2e-3  # the head's peak learning rate (benchmarks/finetune_recipes.py chose the defaults)
    body_lr_scale: float = 1.0  # the body learns at lr * body_lr_scale
    weight_decay: float = 0.01
    warmup: float | None = None  # fraction of the steps warming the lr up; default: 0.3 for full, else 0.05
    label_smoothing: float = 0.1
    augment: str = "light"
    hflip: bool = True  # better on the choose half, digits included (--no-hflip where a mirror image is another class)
    balanced: str = "auto"  # class-balanced sampling: auto (when classes are skewed 3:1 or more), on, off
    patience: int | None = 2  # stop after this many epochs without a better val score, counted from the middle of the
    # planned epochs on (two-phase: from the body's 2nd epoch on too); with the default 4 epochs it never stops early
    time_budget: float | None = None  # seconds of training, at most
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int | None = None  # threads decoding images; default: one per usable core, at most 4
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
        """Every option checked before any work against the schema derived from these fields (types, finite
        numbers, ranges, choices): the first mistake as one :class:`UsageError` line naming its option."""
        validate(options_schema(), dataclasses.asdict(self), "", error=UsageError, flags=True)
        if self.strategy == "partial" and self.unfreeze == 0 and not self.resume:  # trained the head alone, "(body)"
            raise UsageError(
                "--unfreeze 0 with --strategy partial trains no block: --strategy linear-probe trains the head alone"
            )


MIN_SIZE, MAX_SIZE = 32, 1024  # input pixels; past 1024 a classifier backbone only burns memory
MAX_EPOCHS, MAX_BATCH = 10_000, 4096
# What a field may hold beyond its type; the schema of the options and of a recipe is derived from the dataclass's
# fields plus these (a field added to FinetuneConfig is type-checked at once; give it a range here).
CONSTRAINTS: dict[str, Any] = {
    "epochs": Field(ge=1, le=MAX_EPOCHS),
    "batch_size": Field(ge=2, le=MAX_BATCH),  # BatchNorm needs two images
    "size": Field(ge=MIN_SIZE, le=MAX_SIZE),
    "lr": Field(gt=0, le=10),  # above 10 nothing trains; the default is 2e-3
    "body_lr_scale": Field(gt=0, le=1000),
    "weight_decay": Field(ge=0, le=10),
    "warmup": Field(ge=0, lt=1),  # a fraction of the steps
    "label_smoothing": Field(ge=0, lt=1),
    "strategy": Literal[("auto", *STRATEGIES)],
    "augment": Literal[AUGMENTATIONS],
    "balanced": Literal["auto", "on", "off"],
    "amp": Literal[AMP_MODES],
    "patience": Field(ge=1, le=MAX_EPOCHS),
    "time_budget": Field(gt=0, le=10 * 365 * 86400),
    "pseudo_threshold": Field(gt=0, le=1),
    "pseudo_lambda": Field(ge=0, le=1),
    "pseudo_lr": Field(gt=0, le=10),
    "pseudo_rounds": Field(ge=1, le=100),
    "head_epochs": Field(ge=0, le=MAX_EPOCHS),
    "unfreeze": Field(ge=0, le=10_000),
    "workers": Field(ge=0, le=256),
    "seed": Field(ge=0, lt=2**32),
}


@functools.cache
def options_schema():
    """The options' schema, derived from :class:`FinetuneConfig`'s fields and :data:`CONSTRAINTS`."""
    return dataclass_schema(FinetuneConfig, "FinetuneOptions", constraints=CONSTRAINTS)


@functools.cache
def recipe_schema():
    """A recipe's schema: the options' schema with every key optional (flags and --data fill in the rest)."""
    return dataclass_schema(FinetuneConfig, "Recipe", constraints=CONSTRAINTS, partial=True)


@functools.cache
def recipe_table_schema():
    """A recipe that holds its options in a ``[finetune]`` table (and nothing beside it)."""
    return create_model("RecipeFile", __base__=Schema, finetune=(recipe_schema(), ...))


def load_recipe(path: Path | str) -> dict[str, Any]:
    """Options from a TOML recipe (``key = value`` with FinetuneConfig's names, at the top or under
    ``[finetune]``), checked against :func:`recipe_schema`: a wrong type, an unknown key, a value out of range is
    one line naming the file and the key."""
    path = Path(path)
    recipe = read_toml(path, what="recipe", error=UsageError)
    for table in (recipe, recipe.get("finetune")):  # a duration as the flag takes it: time_budget = "30m"
        if isinstance(table, dict) and isinstance(table.get("time_budget"), str):
            from edgetransfer.durations import parse_duration

            try:
                table["time_budget"] = parse_duration(table["time_budget"])
            except UsageError:
                raise UsageError(
                    f"{path}: time_budget: expected a duration like 2h, 30m, 90s or 1h30m, or seconds; got "
                    f"{table['time_budget']!r}"
                ) from None
    if "finetune" in recipe and isinstance(recipe["finetune"], dict):  # the options in a [finetune] table
        top = sorted(k for k in recipe if k != "finetune" and k in {f.name for f in dataclasses.fields(FinetuneConfig)})
        if top:  # TOML puts keys written above [finetune] at the top: one place or the other, not both
            raise UsageError(
                f"{path}: {', '.join(top)} above the [finetune] table: put every option under [finetune], or every "
                "one at the top without it"
            )
        checked = validate(recipe_table_schema(), recipe, str(path), error=UsageError).finetune
        return checked.model_dump(include=set(recipe["finetune"]))
    return validate(recipe_schema(), recipe, str(path), error=UsageError).model_dump(include=set(recipe))


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


def check_out(config: FinetuneConfig) -> None:
    """Refuse an ``--out`` that would destroy or swallow something that is not ours, before any work: the
    filesystem root or the home folder, a folder holding (or inside) an input of the run, an existing file, or an
    existing folder that is not a run this project made (``--overwrite`` replaces runs only)."""
    if not str(config.out).strip():
        raise UsageError("--out is empty; name a folder for the run, e.g. models/NAME")
    out = Path(config.out).expanduser()
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--out {config.out}: {blocked} is a file, not a folder")
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
    holder = RunDir(out).held_by()  # a run still being made: said first (it read "pass --overwrite", which then
    if holder is not None:  # said "in use"; a new user's trial)
        raise UsageError(RunDir(out).in_use(holder))
    if not config.overwrite:
        unfinished = (out / RESUME_STATE).is_file()  # its training stopped after an epoch: it can go on
        raise UsageError(
            f"{out} already exists and is not empty; choose another --out or pass --overwrite"
            + (f", or continue its training: edgetransfer finetune --resume --out {out}" if unfinished else "")
        )
    if not RunDir.is_run(out):
        raise UsageError(
            f"--overwrite replaces only a run directory made by edgetransfer, and {out} has no {CARD} of one; "
            "choose another --out (or remove the folder yourself)"
        )


AUTO_FULL_MIN_TRAIN = 300  # --strategy auto: full fine-tuning from this many training images, two-phase below
# (1,000 in run 11; 300 by run 12's rule: benchmarks/results/finetune_recipes.md)
FULL_WARMUP, WARMUP = 0.3, 0.05  # --warmup's default for full fine-tuning (as the hand loop's one-cycle), and else


def choose_strategy(config: FinetuneConfig, splits: Splits) -> tuple[FinetuneConfig, str]:
    """The config with ``strategy``, ``warmup`` and ``freeze_early`` resolved, and why the strategy (empty when given).

    ``--strategy auto`` (the default) picks from the training split's size (benchmarks/results/finetune_recipes.md,
    runs 11 and 12): from :data:`AUTO_FULL_MIN_TRAIN` images the whole network learns from the first step after a
    30 % warm-up with the early blocks fixed (more accurate and faster than two-phase from ~500 images on); below it
    the head learns alone first, then the whole network (steadier on tiny sets, where full fine-tuning was erratic).
    Options given explicitly are kept."""
    strategy, reason = config.strategy, ""
    if strategy == "auto":
        train = len(splits.train)
        strategy = "full" if train >= AUTO_FULL_MIN_TRAIN else "two-phase"
        reason = (
            f"{train} training images {'>=' if strategy == 'full' else '<'} {AUTO_FULL_MIN_TRAIN}: "
            + (
                "the whole network learns from the first step (30 % warm-up, the early blocks fixed)"
                if strategy == "full"
                else "the head learns alone first, then the whole network"
            )
            + " (--strategy to choose)"
        )
    freeze_early = config.freeze_early
    if freeze_early is None:
        freeze_early = config.strategy == "auto" and strategy == "full"
    warmup = config.warmup if config.warmup is not None else (FULL_WARMUP if strategy == "full" else WARMUP)
    return dataclasses.replace(config, strategy=strategy, warmup=warmup, freeze_early=freeze_early), reason


BATCH = 32  # the batch size from BATCH * STEPS_PER_EPOCH training images on (the hand loop's)
STEPS_PER_EPOCH = 10  # below that, a batch that gives about this many optimizer steps per epoch...
MIN_BATCH = 8  # ...but never fewer images than this (BatchNorm's statistics): run 13, finetune_recipes.md


def per_process(images: int, world: int) -> int:
    """Training images each of ``world`` processes sees per epoch (the last one may see fewer)."""
    return -(-images // max(1, world))


def steps_per_epoch(images: int, batch: int) -> int:
    """Optimizer steps per epoch over ``images`` at ``batch``: the last, short batch is dropped; at least one."""
    return images // batch if images > batch else 1


def choose_batch(config: FinetuneConfig, train: int, world: int = 1) -> tuple[FinetuneConfig, str]:
    """The config with ``batch_size`` resolved for ``train`` training images split over ``world`` processes, and why
    (empty when given). :data:`BATCH` images per step from ``BATCH * STEPS_PER_EPOCH`` images on; below, about
    :data:`STEPS_PER_EPOCH` steps per epoch and at least :data:`MIN_BATCH` images per step: at 32 a split of 80
    images took 2 steps per epoch, 8 in a default run (benchmarks/results/finetune_recipes.md, run 13). The images
    are spread evenly over the steps, so that an epoch leaves out fewer images than it takes steps. Several processes
    share one process's batch (each at least :data:`MIN_PROCESS_BATCH`): the steps per epoch, the batch in all and
    so the learning rate's schedule stay the recipe's (each took the whole batch: two processes on 88 images took 5
    steps per epoch of 16 images in all, where one takes 11 of 8; a new user's trial). ``--batch-size`` is per
    process, as under torchrun."""
    if config.batch_size is not None:
        return config, ""
    batch, reason = _one_process_batch(train)
    if world == 1:
        return dataclasses.replace(config, batch_size=batch), reason
    each = max(MIN_PROCESS_BATCH, batch // world)
    share = per_process(train, world)
    steps, one = steps_per_epoch(share, each), steps_per_epoch(train, batch)
    if share < each:  # each process has fewer images than its batch: one step of all of them
        return dataclasses.replace(config, batch_size=each), (
            f"per process; each has {share} training images or fewer: one step of all of them per epoch, as one "
            f"process takes with all {train} (--batch-size, per process, to choose)"
        )
    reason = (
        f"per process, {each * world} in all"
        + (f" (at least {MIN_PROCESS_BATCH} in each)" if each > batch // world else "")
        + (f" where one process takes {batch}" if each * world != batch else ", as one process takes")
        + f" for {train} training images: {steps} step{'s' * (steps != 1)} per epoch"
        + (", as in one" if steps == one else f", {one} in one")
    )
    reason += " (--batch-size, per process, to choose)"
    return dataclasses.replace(config, batch_size=each), reason


MIN_PROCESS_BATCH = 4  # several processes: each one's share of the batch, never below this (BatchNorm's statistics)


def _one_process_batch(train: int) -> tuple[int, str]:
    """The batch one process takes for ``train`` training images, and why (empty from ``BATCH * STEPS_PER_EPOCH``)."""
    if train >= BATCH * STEPS_PER_EPOCH:
        return BATCH, ""
    # about STEPS_PER_EPOCH steps of at least MIN_BATCH images, the split spread evenly over them: the last short
    # batch, which the trainer drops, is then under one image per step (a batch of ceil(images / 10) dropped up to
    # 7 of 15 images, 31 of 319, every epoch; a new user's trial)
    steps = min(STEPS_PER_EPOCH, max(1, train // MIN_BATCH))
    batch = max(MIN_BATCH, train // steps)
    steps = steps_per_epoch(train, batch)
    each = f"one step of all {train} per epoch" if train < batch else f"{steps} step{'s' * (steps != 1)} per epoch"
    return batch, (
        f"{train} training images < {BATCH * STEPS_PER_EPOCH}: {each} "
        f"(about {STEPS_PER_EPOCH} where the split allows, at least {MIN_BATCH} images each; --batch-size to choose)"
    )


GRID = 32  # the backbones' total stride: the sizes chosen from the data, and the search's, are on it (or the
# backbone's own size: EfficientNet-Lite1's 240, Lite2's 260)
AUTO_MIN_SIZE = 96  # the smallest input a size from the data goes to: MobileNetV2's last feature map is then 3x3


def choose_size(config: FinetuneConfig, backbone, splits: Splits) -> tuple[int, str]:
    """The input size and why: ``--size``, else from the training images (their median shorter side rounded up to
    a multiple of 32, within 96..the backbone's default): 64 px crops train at 96 px, not at 224."""
    if config.size:
        if config.size % GRID and config.size != backbone.input_size:  # it trains and exports; said
            below = config.size // GRID * GRID
            return config.size, (
                f"(--size; not a multiple of {GRID}, the backbones' total stride: it trains and exports, but the "
                f"stride-2 layers pad uneven edges and many edge compilers and accelerators want multiples of "
                f"{GRID}; the nearest on the grid: {' or '.join(str(n) for n in (below, below + GRID) if n)} px)"
            )
        return config.size, "--size"
    side = median_shorter_side(splits.train, seed=config.seed)
    rounded = -(-side // GRID) * GRID
    size = min(max(rounded, AUTO_MIN_SIZE), backbone.input_size)
    if rounded > size:  # capped at the backbone's own size (EfficientNet-Lite1's 240 is off the grid)
        how = "at least" if side >= size else f"rounded up to a multiple of 32 ({rounded}) above"
        return size, (
            f"from the images: median shorter side {side} px, {how} {backbone.name}'s own size, {size} px, "
            "the size its ImageNet weights were trained at (--size to choose)"
        )
    return size, (
        f"from the images: median shorter side {side} px, rounded up to a multiple of 32 within "
        f"{AUTO_MIN_SIZE}..{backbone.input_size} (--size to choose)"
    )


def check_splits(splits: Splits) -> None:
    """Training needs images to learn from, validation images to choose the checkpoint by and test images to report
    on: checked before the work, not found missing after it."""
    sizes = splits.sizes()
    if all(sizes.values()):
        return
    counts = f"{sizes['train']} training, {sizes['val']} validation and {sizes['test']} test images"
    if splits.layout == "folders" and sizes["train"] and sizes["val"]:
        raise DataError(f"{splits.root} has no test images ({counts}); add {splits.root / 'test'}/<class>/...")
    copies = splits.extra.get("copies_kept_in_train")
    why = (  # the images are there, but copies of one another stay together in train
        f" (besides {copies} byte-identical copies kept in train with their originals)" if copies else ""
    )
    raise DataError(
        f"{splits.root} gives {counts} ({class_counts(splits)}): too few to split{why}; each class needs at least "
        f"{MIN_PER_CLASS} distinct images, or give DIR/train, DIR/val and DIR/test"
    )


def missing_class_notes(splits: Splits) -> list[str]:
    """A note for a validation or test split that has no images of some classes (a DIR/val or DIR/test folder
    without them): the checkpoint is then chosen, and the model tested, without those classes."""
    notes = []
    for name, what in (("val", "the best epoch is chosen"), ("test", "test top-1 is measured")):
        present = {s.label for s in splits.split(name)}
        missing = [label for i, label in enumerate(splits.labels) if i not in present]
        if missing and splits.split(name):
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            notes.append(
                f"note: the {name} split has no images of {len(missing)} class(es) ({shown}): {what} without them"
            )
    import collections

    counts = collections.Counter(s.label for s in splits.test)
    few = sorted((n, splits.labels[label]) for label, n in counts.items() if n < FEW_TEST_IMAGES)
    if few and skewed(counts):  # (few[0] is the smallest class) a small class's figure rests on
        # a few images, and int8 breaking it moves test top-1 by one image each (an 8:1 set's 3; a new user's trial)
        n, label = few[0]
        others = f" (and {len(few) - 1} more class(es) under {FEW_TEST_IMAGES})" if len(few) > 1 else ""
        notes.append(
            f"note: the test split holds {n} image(s) of {label}{others}, against {max(counts.values())} of the "
            "largest class: its accuracy, and int8's effect on it, rest on those few (the card's test_confusion "
            "and test_per_class_top1 show each class)"
        )
    return notes


FEW_TEST_IMAGES = 5  # a class with fewer test images than this, in a skewed set, is named


MIN_PER_CLASS = 4  # 70/15/15: the fewest images per class that leave one for validation


def class_counts(splits: Splits) -> str:
    import collections

    counts = collections.Counter(s.label for split in ("train", "val", "test") for s in splits.split(split))
    shown = ", ".join(f"{splits.labels[i]} {counts[i]}" for i in range(min(len(splits.labels), 12)))
    return shown + (", ..." if len(splits.labels) > 12 else "")


PATH_OPTIONS = ("adapt_bn", "unlabeled", "target_val", "weights")  # besides --data: kept absolute in the card


def absolute_inputs(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` with its input paths (:data:`PATH_OPTIONS`) absolute, as the card records them: a run started with
    --unlabeled unl (relative) could not be resumed from another folder, and giving the folder again by another path
    was "a changed option"."""
    absolute = {k: str(Path(v).expanduser().resolve()) for k in PATH_OPTIONS if (v := getattr(config, k)) is not None}
    return dataclasses.replace(config, **absolute)


def refuse_changes(card: ModelCard, config: FinetuneConfig, allowed: set[str]) -> None:
    """A :class:`UsageError` naming the options ``config`` changes from the run's, other than ``allowed``."""
    before = dict(card.training.get("config", {}))
    for key in PATH_OPTIONS:  # a card written before they were made absolute:
        if isinstance(before.get(key), str):  # relative to the folder the run started in, taken to be this one
            before[key] = str(Path(before[key]).expanduser().resolve())
    changed = sorted(
        k for k, v in dataclasses.asdict(config).items() if k not in allowed and k in before and before[k] != v
    )
    if changed:

        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        said = ", ".join(f"{flag(k)} ({before[k]} in the run, {getattr(config, k)} now)" for k in changed)
        may = ", ".join(flag(k) for k in sorted(allowed - {"resume", "overwrite", "out"}))
        raise UsageError(f"--resume with changed option(s): {said}; leave them out to continue; only {may} may change")


def check_resume(out: Path, config: FinetuneConfig, splits: Splits, world: int = 1) -> tuple[ModelCard, dict]:
    import torch

    run = RunDir(out)
    if not run.file(CARD).is_file():
        raise RunDirError(f"nothing to resume in {out}: it has no {CARD}")
    card = run.load_card()
    if card.complete.get("finetune"):
        raise RunDirError(f"{out} finished training already; nothing to resume")
    if not run.file(RESUME_STATE).is_file():
        raise RunDirError(f"{out} has no {RESUME_STATE} (no epoch finished); start again with --overwrite")
    refuse_changes(card, config, RESUMABLE_CHANGES)
    trained_in = int((card.training or {}).get("world_size") or 1)
    if trained_in != world:  # each process's share of the batches sets the steps per epoch, so the schedule
        # (a resumed two-process run went on in one at the wrong learning rate and lost 22 validation points)
        raise UsageError(
            f"{out} was training in {trained_in} process{'es' * (trained_in > 1)}, this is {world}: the steps per "
            f"epoch and the learning-rate schedule follow that; continue it as it started"
            + (" (on several machines, torchrun's --nnodes and --nproc_per_node as then)" if trained_in > 1 else "")
            + f": {resume_command(out, trained_in)}"
        )
    if tuple(splits.labels) != tuple(card.labels):
        raise UsageError(f"the data's classes {list(splits.labels)} differ from the checkpoint's {list(card.labels)}")
    if splits.fingerprint() != card.dataset.get("fingerprint"):
        started = (card.training or {}).get("config", {}).get("data")
        other = started and Path(started).expanduser().resolve() != Path(splits.root).expanduser().resolve()
        raise UsageError(  # another folder given: not "changed" (a new user's trial)
            f"the images in {splits.root} are not the ones the run started on (in {started}); cannot resume"
            if other
            else f"the images in {splits.root} changed since the run started; cannot resume"
        )
    try:
        state = torch.load(run.file(RESUME_STATE), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: said in one line
        raise RunDirError(
            f"cannot read {run.file(RESUME_STATE)} ({str(exc).splitlines()[0][:80]}); start again with --overwrite"
        ) from None
    if config.epochs < state.get("epoch", 0):
        raise UsageError(
            f"--epochs {config.epochs} with --resume: {out} has finished {state['epoch']} epochs already; give "
            f"--epochs {state['epoch']} or more (or leave it out)"
        )
    return card, state

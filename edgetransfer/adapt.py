"""Domain adaptation to a new camera: BatchNorm re-estimation (AdaBN) and pseudo-label self-training that keeps
what AdaBN gained.

Self-training here uses domain-specific BatchNorm statistics: source batches are normalised with the source
statistics and target batches with the target ones, both frozen while the weights learn (the naive way, mixed
batches through the same BatchNorm layers, undoes the adapted statistics). After each round the statistics are
re-estimated for the new weights; a labelled target split, when given, guards every round.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from edgetransfer import console
from edgetransfer.card import Preprocessing
from edgetransfer.checkpoint import confusion, evaluate, load_model, non_finite, save_checkpoint, score
from edgetransfer.data import ImageDataset, Sample, eval_transform, list_images, load_splits, train_transform
from edgetransfer.errors import DataError, EdgeTransferError, TrainingDiverged, UsageError
from edgetransfer.rundir import CHECKPOINT, RunDir, interrupts_deferred, sha256_file
from edgetransfer.training import amp_dtype

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SelfTrainConfig:
    threshold: float = 0.9  # keep pseudo-labels at least this confident
    rounds: int = 2
    epochs_per_round: int = 1
    lam: float = 0.5  # loss = lam * L_source + (1 - lam) * L_target
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    amp: str = "auto"  # as the main loop when the body learns: float32 on a CPU under auto, mixed on a GPU


def bn_layers(model: torch.nn.Module) -> list:
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def bn_state(model: torch.nn.Module) -> list[dict]:
    """A copy of every BatchNorm layer's running statistics."""
    return [
        {k: getattr(m, k).clone() for k in ("running_mean", "running_var", "num_batches_tracked")}
        for m in bn_layers(model)
    ]


def load_bn_state(model: torch.nn.Module, state: list[dict]) -> None:
    for module, saved in zip(bn_layers(model), state, strict=True):
        for key, value in saved.items():
            getattr(module, key).copy_(value)


@contextlib.contextmanager
def bn_statistics(model: torch.nn.Module, state: list[dict]) -> Iterator[None]:
    """Run the block with ``state`` as BatchNorm statistics, then put the previous ones back."""
    previous = bn_state(model)
    load_bn_state(model, state)
    try:
        yield
    finally:
        load_bn_state(model, previous)


def _loader(samples: tuple[Sample, ...], pre: Preprocessing, batch_size: int, *, shuffle: bool, seed: int = 0):
    import torch

    return torch.utils.data.DataLoader(
        ImageDataset(samples, train_transform(pre), pre.resize),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(samples) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )


def adapt_bn(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, batch_size: int = 64
) -> None:
    """AdaBN: replace every BatchNorm layer's statistics by those of ``samples`` (unlabelled target images)."""
    import numpy as np
    import torch

    layers = bn_layers(model)
    momenta = [m.momentum for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all target batches
    if len(samples) < 2:
        raise DataError(f"BatchNorm statistics need at least 2 images, {len(samples)} given")
    # only the BatchNorm layers gather statistics: model.train() also switched on dropout and stochastic depth
    # (efficientnet_b0's 16 StochasticDepth blocks drop residual branches at random), which made the statistics
    # noisy, inflated and not reproducible from --seed
    model.eval()
    for m in layers:
        m.train()
    dataset = ImageDataset(samples, eval_transform(pre), pre.resize)
    # batches of near-equal size, at least two images each: BatchNorm in train mode cannot take one image alone
    count = max(1, min(-(-len(samples) // batch_size), len(samples) // 2))
    with torch.no_grad():
        for chunk in np.array_split(np.arange(len(samples)), count):
            model(torch.stack([dataset[int(i)][0] for i in chunk]).to(device))
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


def pseudo_labels(
    model: torch.nn.Module, samples: tuple[Sample, ...], pre: Preprocessing, device: str, threshold: float
) -> tuple[Sample, ...]:
    """The target images the model is at least ``threshold`` sure of, labelled with its prediction."""
    import torch

    model.eval()
    kept: list[Sample] = []
    with torch.no_grad():
        for start in range(0, len(samples), 64):
            chunk = samples[start : start + 64]
            images = torch.stack(
                [ImageDataset(chunk, eval_transform(pre), pre.resize)[i][0] for i in range(len(chunk))]
            )
            probs = model(images.to(device)).softmax(1)
            conf, pred = probs.max(1)
            kept += [
                Sample(s.path, int(p))
                for s, c, p in zip(chunk, conf.tolist(), pred.tolist(), strict=True)
                if c >= threshold
            ]
    return tuple(kept)


def _frozen_bn_train_mode(model: torch.nn.Module) -> None:
    model.train()
    for m in bn_layers(model):
        m.eval()  # use, never update, the statistics swapped in


def self_train(
    model: torch.nn.Module,
    source: tuple[Sample, ...],
    target: tuple[Sample, ...],
    pre: Preprocessing,
    device: str,
    config: SelfTrainConfig,
    *,
    evaluate_target=None,
) -> list[dict]:
    """Pseudo-label rounds on unlabelled ``target`` images with per-domain BatchNorm statistics.

    Expects the model's statistics to be the target ones (after :func:`adapt_bn`) and leaves them so.
    ``evaluate_target(model) -> accuracy`` (a labelled target split) guards each round: a round that makes it
    worse is rolled back and ends the loop. Returns one record per round.
    """
    import torch

    target_stats = bn_state(model)
    source_stats = copy.deepcopy(target_stats)
    with bn_statistics(model, source_stats):
        adapt_bn(model, source, pre, device)
        source_stats = bn_state(model)
    history: list[dict] = []
    best = evaluate_target(model) if evaluate_target else None
    loss_fn = torch.nn.CrossEntropyLoss()
    dtype = amp_dtype(config.amp, device, body_learns=True)  # self-training trains the whole network
    autocast = lambda: torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    for round_index in range(1, config.rounds + 1):
        labelled = pseudo_labels(model, target, pre, device, config.threshold)
        if not labelled:
            console.err.print(f"self-training round {round_index}: no target image reaches {config.threshold}")
            break
        saved = copy.deepcopy(model.state_dict())
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
        for epoch in range(config.epochs_per_round):
            seed = config.seed + 100 * round_index + epoch
            torch.manual_seed(seed)  # the augmentation's and dropout's draws: a resumed run adapts as a straight one
            src = _loader(source, pre, config.batch_size, shuffle=True, seed=seed)
            tgt = _loader(labelled, pre, config.batch_size, shuffle=True, seed=seed + 1)
            _frozen_bn_train_mode(model)
            with console.progress() as bar:
                task = bar.add_task(f"self-training round {round_index}", total=len(src), status="")
                for step, ((xs, ys), (xt, yt)) in enumerate(zip(src, _cycle(tgt), strict=False)):
                    optimizer.zero_grad(set_to_none=True)
                    with bn_statistics(model, source_stats):  # backward too: BatchNorm saved these statistics
                        with autocast():
                            source_loss = config.lam * loss_fn(model(xs.to(device)), ys.to(device))
                        source_loss.backward()
                    load_bn_state(model, target_stats)
                    with autocast():
                        target_loss = (1 - config.lam) * loss_fn(model(xt.to(device)), yt.to(device))
                    target_loss.backward()
                    if not bool(torch.isfinite(source_loss + target_loss)):
                        model.load_state_dict(saved)
                        raise TrainingDiverged(
                            f"self-training's loss became {float(source_loss + target_loss)} in round {round_index}, "
                            f"step {step + 1}; the model before the round is kept; try a lower --pseudo-lr"
                        )
                    optimizer.step()
                    bar.update(task, advance=1, status=f"loss {float((source_loss + target_loss).detach()):.3f}")
        broken = non_finite(model)
        if broken:
            model.load_state_dict(saved)
            raise TrainingDiverged(f"self-training made {broken} NaN or infinite in round {round_index}; rolled back")
        adapt_bn(model, target, pre, device)  # the statistics of the new weights, per domain
        target_stats = bn_state(model)
        with bn_statistics(model, source_stats):
            adapt_bn(model, source, pre, device)
            source_stats = bn_state(model)
        model.eval()
        record = {"round": round_index, "pseudo_labelled": len(labelled), "of": len(target)}
        if evaluate_target:
            accuracy = evaluate_target(model)
            record["target_val_top1"] = accuracy
            if accuracy < best:
                model.load_state_dict(saved)
                record["rolled_back"] = True
                history.append(record)
                console.err.print(
                    f"self-training round {round_index}: target val {accuracy:.2%} < {best:.2%}; rolled back, stopping"
                )
                break
            best = accuracy
        history.append(record)
        console.err.print(
            f"self-training round {round_index}: {len(labelled)}/{len(target)} pseudo-labelled"
            + (f", target val top-1 {record['target_val_top1']:.2%}" if evaluate_target else "")
        )
    return history


def _cycle(loader) -> Iterator:
    while True:
        yield from loader


def adapt_to_target(model, source, adapt_images, unlabeled, target_val, pre, device: str, c) -> dict:
    """After fine-tuning: AdaBN on ``adapt_images`` (or ``unlabeled``), then pseudo-label self-training on
    ``unlabeled`` with the options of the fine-tuning config ``c``; measured on ``target_val`` when given."""
    if not adapt_images and not unlabeled:
        return {}
    measure = (lambda m: evaluate(m, target_val, pre, device)) if target_val else None
    record: dict[str, Any] = {}
    if measure:
        record["target_val_top1_source_only"] = measure(model)
        source_only_state = copy.deepcopy(model.state_dict())
    target = adapt_images or unlabeled
    adapt_bn(model, target, pre, device)
    model.eval()
    record["adapt_bn_images"] = len(target)
    if measure:
        record["target_val_top1_adabn"] = measure(model)
        console.err.print(
            f"target val top-1: source-only {record['target_val_top1_source_only']:.2%}, "
            f"after AdaBN {record['target_val_top1_adabn']:.2%}"
        )
    if unlabeled:
        record["self_training"] = self_train(
            model,
            source,
            unlabeled,
            pre,
            device,
            SelfTrainConfig(
                threshold=c.pseudo_threshold,
                rounds=c.pseudo_rounds,
                lam=c.pseudo_lambda,
                batch_size=c.batch_size,
                seed=c.seed,
                lr=c.pseudo_lr,
                amp=c.amp,
            ),
            evaluate_target=measure,
        )
        if measure:
            record["target_val_top1_final"] = measure(model)
    if measure:  # the guard covers AdaBN too: adapted, the model must be better on the labelled target images
        adapted = record.get("target_val_top1_final", record["target_val_top1_adabn"])
        source_only = record["target_val_top1_source_only"]
        # a tie is no measured gain: the fine-tuned model, whose figures on its own test split hold, is kept (a new
        # user's adapted model tied on 48 target images and had lost 62 points on the source test split)
        record["rolled_back_to_source"] = adapted <= source_only
        if record["rolled_back_to_source"]:
            model.load_state_dict(source_only_state)
            # the final figure is the kept model's (it read the rejected adaptation's: 25 % for a 80 % model)
            record["target_val_top1_rejected"] = adapted
            record["target_val_top1_final"] = source_only
            how = "worse" if adapted < source_only else "no better"
            console.err.print(
                f"[yellow]adaptation made target val top-1 {how} ({adapted:.2%} {'<' if adapted < source_only else '='}"
                f" source-only {source_only:.2%}): rolled back; the model is the fine-tuned one[/]"
            )
    return record


def target_images(config, labels: tuple[str, ...], source=None) -> tuple[tuple[Sample, ...], ...]:
    """The adaptation inputs of a fine-tuning config (``adapt_bn``, ``unlabeled``, ``target_val`` folders), read and
    checked against the run's class ``labels`` and, given the run's ``source`` splits, kept apart from its images:
    called before training, so that a bad folder stops the run before the work."""
    if config.target_val and not (config.adapt_bn or config.unlabeled):
        raise UsageError(
            "--target-val measures and guards domain adaptation: it goes with --adapt-bn and/or --unlabeled"
        )
    skip_bad = bool(getattr(config, "skip_bad", False))
    adapt_images = _listed("--adapt-bn", config.adapt_bn, skip_bad)
    unlabeled = _listed("--unlabeled", config.unlabeled, skip_bad)
    adapted_on = (("--adapt-bn", config.adapt_bn, adapt_images), ("--unlabeled", config.unlabeled, unlabeled))
    for option, folder, images in adapted_on:
        if len(images) == 1:
            raise DataError(f"{option} {folder} has 1 image; BatchNorm statistics need at least 2")
        classes = (
            sorted(p.name for p in Path(folder).expanduser().iterdir() if p.is_dir() and p.name in labels)
            if (folder and Path(folder).expanduser().is_dir())
            else []
        )
        if classes:  # read as unlabelled, unsaid (a new user pointed it at a labelled class tree)
            console.err.print(
                f"[yellow]note: {option} {escape(str(folder))} holds class folders ({escape(', '.join(classes[:5]))}"
                f"{' ...' if len(classes) > 5 else ''}): their images are read unlabelled; labelled target images "
                "measure and guard the adaptation with --target-val (kept apart from these)[/]"
            )
    target_val: tuple[Sample, ...] = ()
    if config.target_val:
        try:
            target = load_splits(
                config.target_val, val_fraction=0.0, test_fraction=0.0, skip_bad=skip_bad, option="--target-val"
            )
        except DataError as exc:  # it read "data folder not found: DIR", as if --data were wrong
            raise DataError(f"--target-val: {exc}") from None
        extra = [name for name in target.labels if name not in labels]
        if extra:
            raise UsageError(
                f"--target-val has classes the data lacks: {extra} (the data has {list(labels)}); its class folders "
                "are named as the data's"
            )
        # a small labelled target set may lack a class (a new user's night set was refused for it): its images are
        # labelled by the data's class order, and the classes it lacks are said
        index = [labels.index(name) for name in target.labels]
        target_val = tuple(
            dataclasses.replace(sample, label=index[sample.label]) for sample in target.train + target.val + target.test
        )
        lacking = [name for name in labels if name not in target.labels]
        if lacking:
            console.err.print(
                f"[yellow]note: --target-val has no images of {escape(str(lacking))}: domain adaptation is judged "
                "on the other classes[/]"
            )
        _apart(config.target_val, target_val, adapted_on)
    if source is not None and (adapt_images or unlabeled):  # (without adaptation: nothing to hash the source for)
        _apart_from_source(source, adapted_on, ("--target-val", config.target_val, target_val))
    return adapt_images, unlabeled, target_val


def _apart_from_source(source, adapted_on: tuple, judged_on: tuple) -> None:
    """The target folders hold no image of the run's own data (by content; a new user's trial): --target-val given
    the training folder judged AdaBN on source images and rolled back an adaptation that had lifted target top-1
    from 71 % to 96 %; --adapt-bn given it adapted on the source's own test images, and reported their top-1 as held
    out."""
    digests = _digests(sample for name in ("train", "val", "test") for sample in source.split(name))
    for option, folder, images in (*adapted_on, judged_on):
        shared = _shared(images, digests) if folder else 0
        if shared:
            raise UsageError(
                f"{option} {folder} shares {shared} image(s) with --data {source.root} (by content): domain "
                "adaptation takes images of the target domain, apart from the source data it was trained on"
            )


def _listed(option: str, folder: str | None, skip_bad: bool = False) -> tuple[Sample, ...]:
    """The images of an adaptation folder, its bad files passed over and named with ``--skip-bad`` (a new user's
    flag was ignored there); its errors name the option (they read "DIR has no images")."""
    if not folder:
        return ()
    try:
        return list_images(folder, skip_bad=skip_bad, offer="--skip-bad")
    except DataError as exc:
        said = str(exc)
        raise DataError(said if said.startswith(option) else f"{option}: {said}") from None


def _apart(given: str, target_val: tuple[Sample, ...], adapted_on: tuple) -> None:
    """--target-val must hold images the adaptation does not see (by content): the same folder given to --unlabeled
    and --target-val reported AdaBN's 100 % on the images its statistics were taken from."""
    judged = _digests(target_val)
    for option, folder, images in adapted_on:
        shared = _shared(images, judged)
        if shared:
            raise UsageError(
                f"--target-val {given} shares {shared} image(s) with {option} {folder} "
                "(by content): the adaptation would be judged on images it adapted on; keep the labelled target "
                "images apart from the unlabelled ones"
            )


def _digests(samples) -> set[str]:
    from edgetransfer.data import file_sha256

    return {file_sha256(sample.path) for sample in samples}


def _shared(samples, digests: set[str]) -> int:
    """How many of ``samples`` have the content of one of ``digests`` (under any name)."""
    from edgetransfer.data import file_sha256

    return sum(file_sha256(sample.path) in digests for sample in samples)


AGAIN = (
    "the same command with --resume adapts again without fine-tuning (its --adapt-bn/--unlabeled/--pseudo-* may change)"
)
ADAPT_OPTIONS = {
    "adapt_bn",
    "unlabeled",
    "target_val",
    "pseudo_threshold",
    "pseudo_rounds",
    "pseudo_lambda",
    "pseudo_lr",
    "amp",
}


def _with_adapt_options(card, config) -> dict:
    """The card's recorded options with the adaptation's as used (an adaptation done again may change them)."""
    recorded = dict(card.training.get("config") or {})
    recorded.update({k: getattr(config, k) for k in ADAPT_OPTIONS - {"amp"} if hasattr(config, k)})  # (amp: the
    # training's stays; the adaptation's own is in its record's options)
    return recorded


def not_adapted(card) -> str | None:
    """Why a finished run's adaptation did not happen (interrupted, failed, or stopped before it began: its options
    name target images and no record says what came of them), or None."""
    adaptation = card.training.get("adaptation") or {}
    if adaptation:
        return adaptation.get("interrupted") or adaptation.get("failed")
    config = card.training.get("config") or {}
    if config.get("adapt_bn") or config.get("unlabeled"):
        return "stopped after training, before adaptation began"
    return None


def say_not_adapted(run: RunDir) -> None:
    """A note, for export and bench, on a run whose domain adaptation was asked for and did not happen: its model
    is the fine-tuned (source) one (a new user exported and benched one interrupted mid-adaptation, unwarned)."""
    try:
        why = not_adapted(run.load_card())
    except EdgeTransferError:  # no card to read: the command's own loading says so, in its words
        return
    if why:
        kept = "" if "fine-tuned one" in why else "; its model is the fine-tuned one, not adapted"
        console.err.print(
            f"[yellow]note: {escape(str(run.path))} was to be adapted to its target images (--adapt-bn/--unlabeled) "
            f"and was not: {escape(why)}{kept}; 'edgetransfer finetune --resume --out {escape(str(run.path))}' "
            "adapts it[/]"
        )


def adapt(run: RunDir, config, *, device: str = "cpu", inputs: tuple | None = None, again: bool = False) -> RunDir:
    """The adaptation stage: a fine-tuned run's model adapted to the target images named by ``config`` (a
    FinetuneConfig: AdaBN on ``adapt_bn``, self-training on ``unlabeled``, guarded by ``target_val``); the
    checkpoint, its test metrics and the card's ``training.adaptation`` record are replaced. ``inputs``: the
    images :func:`target_images` read already. ``again``: only a run whose adaptation was interrupted or failed
    (checked under the run's lock). Returns the run."""
    if not (config.adapt_bn or config.unlabeled):
        return run
    with run.lock("adapt"):
        card = run.load_card()
        if again and not not_adapted(card):  # another process adapted it while this one waited for the lock
            console.err.print(f"{run.path} was adapted meanwhile; nothing to do")
            return run
        moved = config.data if config.data and Path(str(config.data)).expanduser().is_dir() else None
        splits = run.load_splits(card, moved)  # (--data: the run's images moved since it trained)
        adapt_images, unlabeled, target_val = inputs or target_images(config, card.labels, splits)
        model = load_model(run, card).to(device)
        pre = card.preprocessing
        before = dict(card.metrics.get("torch", {}))
        try:
            record = adapt_to_target(model, splits.train, adapt_images, unlabeled, target_val, pre, device, config)
            val_acc = score(model, splits.val, pre, device)[0] if splits.val else None
            test_acc = None  # a set too small to split has no test images: nothing to say of it (it printed "nan%")
            if splits.test:
                test_acc, predictions, _ = score(model, splits.test, pre, device)
        except KeyboardInterrupt:  # the run keeps its fine-tuned model; the card says adaptation did not happen
            note = "interrupted (Ctrl-C): not adapted; the model is the fine-tuned one"
            run.save_card(dataclasses.replace(card, training={**card.training, "adaptation": {"interrupted": note}}))
            raise  # said by the command (one line: a second one here said it again in other words)
        except EdgeTransferError as exc:  # diverged, or a target image unreadable: the same, said in the card
            said = f"{exc}; {run.path} keeps the fine-tuned model, not adapted (its card says so); {AGAIN}"
            run.save_card(dataclasses.replace(card, training={**card.training, "adaptation": {"failed": str(exc)}}))
            raise type(exc)(said) from None
        record["source_before"] = {"val_top1": before.get("val_top1"), "test_top1": before.get("test_top1")}
        record["options"] = {k: getattr(config, k) for k in sorted(ADAPT_OPTIONS) if hasattr(config, k)}
        torch_metrics = {**before, "test_top1": test_acc, "val_top1": val_acc}  # all of the adapted model
        if splits.test:
            torch_metrics.update(confusion(splits.test, predictions, splits.labels))
        # the adapted weights beside the fine-tuned ones, then the card naming them and the swap, a Ctrl-C held until
        # both are done: a card that failed to save (a full disk) left weights the card did not know, and the run
        # refused by every later command
        from edgetransfer.finetune import CONFUSION  # (finetune imports this module)
        from edgetransfer.plots import plot_confusion

        adapted = run.file(CHECKPOINT + ".adapted")
        plot = run.file("confusion.adapted.png")  # drawn before the swap, swapped with it (one left stale otherwise)
        try:
            if splits.test and torch_metrics.get("test_confusion"):
                plot_confusion(torch_metrics["test_confusion"], splits.labels, plot)
            save_checkpoint(model, adapted, {"backbone": card.backbone})
            card = dataclasses.replace(
                card,
                training={**card.training, "adaptation": record, "config": _with_adapt_options(card, config)},
                metrics={**card.metrics, "torch": torch_metrics},
                artifacts={**card.artifacts, CHECKPOINT: {"file": CHECKPOINT, "sha256": sha256_file(adapted)}},
            )
            with interrupts_deferred():
                run.save_card(card)
                os.replace(adapted, run.file(CHECKPOINT))
                if plot.is_file():
                    os.replace(plot, run.file(CONFUSION))
        except BaseException:
            adapted.unlink(missing_ok=True)
            plot.unlink(missing_ok=True)
            raise
        was = before.get("test_top1")
        measured = (
            f"test top-1 {test_acc:.2%} on the labelled source test split"
            if test_acc is not None
            else "no test figure (the labelled source set has no test split)"
        )
        if record.get("rolled_back_to_source"):
            console.err.print(f"not adapted: {measured}")
        else:
            plotted = " and confusion.png" if splits.test and torch_metrics.get("test_confusion") else ""
            console.err.print(
                f"after adaptation: {measured}"
                + (f" (before adaptation {was:.2%})" if isinstance(was, float) and test_acc is not None else "")
                + f"; the card's PyTorch figures{plotted} are the adapted model's, which is for the target domain"
                + (
                    ""
                    if target_val
                    else "; its gain on the target domain is not measured (--target-val DIR: labelled target images)"
                )
            )
    return run

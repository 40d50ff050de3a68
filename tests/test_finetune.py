"""The fine-tuning loop: strategies, schedule, recipes, resume, divergence, determinism, outputs, adaptation."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from conftest import drawn_images, make_folder
from PIL import Image

from edgetransfer import backbones
from edgetransfer.errors import EdgeTransferError, RunDirError, UsageError
from edgetransfer.finetune import FinetuneConfig, TrainingDiverged, finetune, load_recipe
from edgetransfer.finetune_config import AUTO_MIN_SIZE
from edgetransfer.rundir import RunDir, sha256_file
from edgetransfer.training import (
    ALONE_THREADS,
    early_blocks,
    fixed_blocks,
    head_and_blocks,
    param_groups,
    set_phase,
    warmup_cosine,
)

TINY = {"size": 32, "epochs": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def model():
    return backbones.build("mobilenet_v2", 3, pretrained=False)[0]


def trainable(model):
    return {name.split(".")[0] + "." + name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad}


def test_strategies_freeze_what_they_should(model):
    head, blocks = head_and_blocks(model)
    assert head is model.classifier[1] and len(blocks) == 19
    set_phase(model, "linear-probe", "body", 3)
    assert trainable(model) == {"classifier.1"}
    set_phase(model, "two-phase", "head", 3)
    assert trainable(model) == {"classifier.1"}
    assert not model.features[0][1].training, "frozen BatchNorm keeps its statistics"
    set_phase(model, "partial", "body", 2)
    assert trainable(model) == {"classifier.1", "features.17", "features.18"}
    set_phase(model, "two-phase", "body", 3)
    assert all(p.requires_grad for p in model.parameters()) and model.features[0][1].training


def test_freeze_early_fixes_the_blocks_at_stride_four_or_less(model):
    # MobileNetV2's features 0-3 compute at output stride 2, 2, 4, 4 and feature 4 at 8, whatever the input size
    assert early_blocks(model, 96) == 4 and early_blocks(model, 224) == 4
    lite = backbones.build("efficientnet_lite0", 3, pretrained=False)[0]
    assert early_blocks(lite, 96) == 4  # the stem, then MBConv blocks at stride 2, 4, 4; the next is at 8
    resnet = backbones.build("resnet18", 3, pretrained=False)[0]
    assert [type(b).__name__ for b in head_and_blocks(resnet)[1][: early_blocks(resnet, 64)]] == [
        "Conv2d",
        "BatchNorm2d",
        "BasicBlock",
        "BasicBlock",
    ]  # conv1 and bn1 at stride 2, layer1 (after the max-pool) at 4
    set_phase(model, "two-phase", "body", 3, fixed=4)
    assert trainable(model) == {"classifier.1"} | {f"features.{i}" for i in range(4, 19)}
    assert model.features[0][1].training and model.features[3].conv[1][1].training, "statistics follow the data"
    set_phase(model, "full", "body", 3, fixed=4)
    assert "features.3" not in trainable(model) and "features.4" in trainable(model)
    set_phase(model, "two-phase", "head", 3, fixed=4)
    assert trainable(model) == {"classifier.1"} and not model.features[0][1].training


def test_a_freeze_early_run_never_changes_the_early_weights(image_folder, tmp_path):
    from safetensors.torch import load_file

    start = backbones.build("mobilenet_v2", 3)[0].state_dict()
    # strategy full: every epoch trains the body, so whichever epoch is kept as the best has
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), strategy="full", freeze_early=True, **TINY)
    run = finetune(config)
    trained = load_file(run.file("model.safetensors"))
    assert run.load_card().training["fixed_blocks"] == 4
    early = [k for k in trained if k.startswith(("features.0.", "features.3.")) and "num_batches" not in k]
    weights = [k for k in early if not k.endswith(("running_mean", "running_var"))]
    assert weights and all(torch.equal(trained[k], start[k]) for k in weights), "fixed blocks learnt"
    assert not torch.equal(trained["features.0.1.running_mean"], start["features.0.1.running_mean"])
    assert not torch.equal(trained["features.4.conv.0.0.weight"], start["features.4.conv.0.0.weight"])


def test_freeze_early_only_fixes_blocks_the_strategy_would_train(model):
    from types import SimpleNamespace

    def fixed(strategy, unfreeze=3, freeze_early=True):
        config = SimpleNamespace(freeze_early=freeze_early, strategy=strategy, unfreeze=unfreeze)
        return fixed_blocks(model, config, 64)

    assert fixed("two-phase") == fixed("full") == 4 and fixed("two-phase", freeze_early=False) == 0
    assert fixed("linear-probe") == 0 and fixed("partial", unfreeze=3) == 0  # those blocks never learn anyway
    assert fixed("partial", unfreeze=16) == 4  # blocks 3-18 learn: block 3 is an early one


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_precision_is_bf16_while_only_the_head_learns_on_a_bf16_cpu(
    image_folder, tmp_path, monkeypatch, capsys, native_bf16
):
    from edgetransfer import finetune as module
    from edgetransfer import training

    monkeypatch.setattr(training, "cpu_bf16", lambda: native_bf16)
    scored = []  # each epoch's validation scores in float32, as the exported model runs: bf16 changed the epoch kept
    real = module.score
    monkeypatch.setattr(module, "score", lambda *a, dtype=None, **k: scored.append(dtype) or real(*a, dtype=dtype, **k))
    run = finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), device="cpu", **TINY))
    history = run.load_card().training["history"]
    err = capsys.readouterr().err
    assert scored == [None] * 4  # two epochs' validation, then the card's test and validation figures
    if native_bf16:
        assert [(h["phase"], h["precision"]) for h in history] == [("head", "bfloat16"), ("body", "float32")]
        assert "mixed precision bfloat16 while only the head learns, float32 when the body does" in err
    else:
        assert [h["precision"] for h in history] == ["float32", "float32"] and "; strategy two-phase, float32;" in err
    # two-phase does not count the body's first epoch against the patience: said where the patience is
    assert "without a better validation score from the middle of the epochs on (the body's first epoch not" in err
    assert "(never before the last with 2)" in err  # 2 epochs, patience 2: it cannot stop early, and says so


def test_auto_strategy_follows_the_training_splits_size():
    from types import SimpleNamespace

    from edgetransfer.finetune_config import AUTO_FULL_MIN_TRAIN, choose_strategy

    def chosen(train, **options):
        config = FinetuneConfig(data="d", out="o", **options)
        config, reason = choose_strategy(config, SimpleNamespace(train=[None] * train))
        return config.strategy, config.warmup, config.freeze_early, reason

    small, large = chosen(AUTO_FULL_MIN_TRAIN - 1), chosen(AUTO_FULL_MIN_TRAIN)
    assert small[:3] == ("two-phase", 0.05, False) and f"{AUTO_FULL_MIN_TRAIN - 1} training images <" in small[3]
    assert large[:3] == ("full", 0.3, True) and f"{AUTO_FULL_MIN_TRAIN} training images >=" in large[3]
    # options given explicitly are kept; an explicit strategy is not explained and gets no --freeze-early
    assert chosen(5000, warmup=0.1, freeze_early=False)[:3] == ("full", 0.1, False)
    assert chosen(5000, strategy="two-phase") == ("two-phase", 0.05, False, "")
    assert chosen(10, strategy="full") == ("full", 0.3, False, "")
    assert chosen(10, strategy="partial", freeze_early=True)[:3] == ("partial", 0.05, True)


def test_the_batch_size_follows_the_training_splits_size():
    from edgetransfer.finetune_config import BATCH, MIN_BATCH, STEPS_PER_EPOCH, choose_batch

    def chosen(train, world=1, **options):
        config, reason = choose_batch(FinetuneConfig(data="d", out="o", **options), train, world)
        return config.batch_size, reason

    large = BATCH * STEPS_PER_EPOCH
    assert chosen(large) == (BATCH, "") and chosen(50_000) == (BATCH, "")
    batch, reason = chosen(large - 1)  # 319 images: 10 steps of 31, 9 left out (at 32: 9 steps, 31 left out)
    assert batch == 31 and f"{large - 1} training images < {large}: 10 steps per epoch" in reason
    assert chosen(80)[0] == MIN_BATCH == 8 and chosen(170)[0] == 17 and chosen(105)[0] == 10
    # every epoch leaves out fewer images than it takes steps (the trainer drops the last short batch): a split of
    # 15 took one step of 8, leaving out 7 (a new user's trial)
    for train in range(MIN_BATCH, large):
        size = chosen(train)[0]
        steps = train // size
        assert size >= MIN_BATCH and steps <= STEPS_PER_EPOCH + 1, train  # about 10 steps
        assert 1 <= steps and train - steps * size < steps, train
    assert chosen(15) == (15, chosen(15)[1]) and ": 1 step per epoch" in chosen(15)[1]
    assert ": 10 steps per epoch (about 10 where" in chosen(170)[1] and ": 3 steps per epoch" in chosen(24)[1]
    assert ": 1 step per epoch" in chosen(9)[1]  # the steps said are the ones the trainer takes
    assert ": one step of all 3 per epoch" in chosen(3)[1]  # fewer images than the batch (it said "batch size 8")
    assert chosen(3)[0] == MIN_BATCH  # a tiny split still gets BatchNorm's floor (the last short batch is one step)
    # several processes share one process's batch: the batch in all and the steps per epoch stay the recipe's (each
    # took the whole batch: two processes on 88 images took 5 steps of 16 in all per epoch, one takes 11 of 8)
    batch, reason = chosen(1257, world=2)
    assert batch == BATCH // 2 and "per process, 32 in all, as one process takes for 1257 training images" in reason
    assert ": 39 steps per epoch, as in one" in reason and chosen(5000, world=8)[0] == 4
    batch, reason = chosen(88, world=2)
    assert batch == 4 and "8 in all, as one process takes" in reason and ": 11 steps per epoch, as in one" in reason
    batch, reason = chosen(88, world=3)  # each takes at least 4: more in all, fewer steps, said
    assert batch == 4 and "12 in all (at least 4 in each) where one process takes 8" in reason
    assert ": 7 steps per epoch, 11 in one" in reason
    batch, reason = chosen(3, world=2)  # fewer images than the batch: it said "8 in all" of 3 (review)
    assert batch == 4 and "each has 2 training images or fewer: one step of all of them per epoch" in reason, reason
    for train in range(MIN_BATCH, 3 * large):  # two processes never take fewer steps per epoch than one
        one = chosen(train)[0]
        assert (-(-train // 2)) // chosen(train, world=2)[0] >= max(1, train // one) if train > one else True, train
    assert chosen(80, batch_size=32) == (32, "") and chosen(5000, batch_size=4) == (4, "")  # given: kept, unexplained


def test_a_small_run_says_its_batch_size_and_records_it(image_folder, tmp_path, capsys):
    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    options = {k: v for k, v in TINY.items() if k not in ("batch_size", "size")}  # both from the data
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), device="cpu", **options)
    with pytest.raises(Stop):
        finetune(config, on_epoch=stop)  # interrupted after its first epoch
    err = capsys.readouterr().err
    assert "batch size 8: " in err and "note: --batch-size" not in err
    # --resume compares the resolved batch and input sizes with the card's: the same data resolves to the same ones,
    # and giving the size the run chose is no change
    run = finetune(dataclasses.replace(config, resume=True, size=AUTO_MIN_SIZE))
    said = capsys.readouterr().err
    assert "; batch 8, at most 2 epochs" in said and "resuming after epoch 1" in said, said  # said again on resume
    card = run.load_card()
    assert card.training["config"]["batch_size"] == 8 and len(card.training["history"]) == 2
    assert card.training["batch_per_step"] == 8 and card.training["world_size"] == 1  # one process: its batch
    assert card.training["config"]["size"] == card.preprocessing.crop == AUTO_MIN_SIZE  # the size trained at


def test_an_auto_run_above_the_threshold_trains_the_whole_network_from_the_start(
    image_folder, tmp_path, monkeypatch, capsys
):
    from edgetransfer import finetune_config

    monkeypatch.setattr(finetune_config, "AUTO_FULL_MIN_TRAIN", 10)  # the test folder's few images count as many
    run = finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), device="cpu", **TINY))
    card = run.load_card()
    config = card.training["config"]
    assert (config["strategy"], config["warmup"], config["freeze_early"]) == ("full", 0.3, True)
    assert [h["phase"] for h in card.training["history"]] == ["body", "body"]
    err = capsys.readouterr().err
    assert "; strategy full," in err and "strategy full: " in err and "training images >= 10" in err
    assert "stay fixed" in err  # --freeze-early's blocks, said at the start


def test_discriminative_learning_rates(model):
    groups = {g["name"]: g for g in param_groups(model, 1e-3, 0.1, 0.01)}
    assert groups["head"]["lr"] == 1e-3 and groups["body"]["lr"] == pytest.approx(1e-4)
    assert groups["body/no-decay"]["weight_decay"] == 0.0 and groups["body"]["weight_decay"] == 0.01
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_warmup_then_cosine():
    f = warmup_cosine(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-9)


def test_recipe_and_its_errors(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[finetune]\nstrategy = "partial"\nunfreeze = 2\nepochs = 3\n')
    assert load_recipe(recipe) == {"strategy": "partial", "unfreeze": 2, "epochs": 3}
    recipe.write_text("epochz = 3\n")
    with pytest.raises(UsageError, match="epochz"):
        load_recipe(recipe)
    recipe.write_text("epochs = = 3\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_recipe(recipe)
    # a duration, as --time-budget takes it, at the top or in [finetune]
    recipe.write_text('time_budget = "1m30s"\n')
    assert load_recipe(recipe) == {"time_budget": 90.0}
    recipe.write_text('[finetune]\ntime_budget = "2h"\n')
    assert load_recipe(recipe) == {"time_budget": 7200.0}
    recipe.write_text('time_budget = "soon"\n')
    with pytest.raises(UsageError, match="r.toml: time_budget: expected a duration like 2h"):
        load_recipe(recipe)
    recipe.write_text("epochs = 1\n[finetune]\nepochs = 2\n")  # was "unknown key 'epochs' (known: finetune)"
    with pytest.raises(UsageError, match=r"r.toml: epochs above the \[finetune\] table: put every option under"):
        load_recipe(recipe)


def test_cli_flags_override_the_recipe(image_folder, tmp_path):
    from typer.testing import CliRunner

    from edgetransfer.cli import app

    recipe = tmp_path / "r.toml"
    recipe.write_text('strategy = "linear-probe"\nepochs = 3\nsize = 32\nbatch_size = 8\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["finetune", "--config", str(recipe), "--data", str(image_folder), "--out", str(out), "--epochs", "1"]
        + ["--amp", "fp16", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "note: --amp fp16 on a CPU trains in float32" in result.stderr
    training = json.loads((out / "card.json").read_text())["training"]
    config = training["config"]
    assert config["strategy"] == "linear-probe" and config["epochs"] == 1 and config["size"] == 32
    assert [h["phase"] for h in training["history"]] == ["head"]  # only the head learns in a linear probe
    assert "(head)" in result.stderr and "(body)" not in result.stderr
    # a recipe's folder that is not there names the recipe (it read "data folder not found: src")
    recipe.write_text('data = "no-such-folder"\n')
    said = CliRunner().invoke(app, ["finetune", "--config", str(recipe), "--out", str(tmp_path / "x")]).stderr
    assert " ".join(said.split()).startswith(f"error: {recipe}: data = 'no-such-folder' not found (a path in a recipe")
    # --recipe, as the README calls the file, is the same option (a new user's "No such option: --recipe")
    said = CliRunner().invoke(app, ["finetune", "--recipe", str(recipe), "--out", str(tmp_path / "x")]).stderr
    assert " ".join(said.split()).startswith(f"error: {recipe}: data = 'no-such-folder' not found (a path in a recipe")


def test_outputs_curves_confusion_and_determinism(image_folder, tmp_path):
    a = finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "a"), **TINY))
    b = finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "b"), **TINY))
    card_a, card_b = a.load_card(), b.load_card()
    assert card_a.metrics["torch"] == card_b.metrics["torch"], "same seed, same result on the CPU"
    assert a.file("model.safetensors").read_bytes() == b.file("model.safetensors").read_bytes()
    assert a.file("curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.file("confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card_a.artifacts["model.safetensors"]["sha256"] == sha256_file(a.file("model.safetensors"))
    matrix = card_a.metrics["torch"]["test_confusion"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) == card_a.dataset["sizes"]["test"]
    assert set(card_a.metrics["torch"]["test_per_class_top1"]) == {"class0", "class1", "class2"}
    history = card_a.training["history"]
    assert [h["phase"] for h in history] == ["head", "body"] and all(h["images_per_s"] > 0 for h in history)
    assert not a.file("resume.pt").exists() and not a.file("last.safetensors").exists()


def test_ctrl_c_after_an_epoch_says_how_to_resume_and_a_too_large_batch_is_said(image_folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from edgetransfer import finetune as module
    from edgetransfer.cli import app

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Trainer, "_should_stop", interrupt)  # Ctrl-C right after epoch 1 is saved
    out = tmp_path / "run"
    args = ["finetune", "--data", str(image_folder), "--out", str(out), "--size", "32", "--epochs", "2"]
    result = CliRunner().invoke(app, [*args, "--batch-size", "512"])
    assert result.exit_code == 130, result.output
    assert f"interrupted; the finished epochs are kept in {out}: the same command with --resume continues" in (
        result.stderr
    )
    assert "note: --batch-size 512 is more than the " in result.stderr and "each epoch is one step of" in result.stderr
    images = len(json.loads((out / "splits.json").read_text())["files"]["train"])
    # the opening line's batch is the one it trains with (it said "batch 512")
    assert f"; batch {images} (all the training images; --batch-size 512), at most 2" in result.stderr
    training = json.loads((out / "card.json").read_text())["training"]  # the card too (it said 512 a step)
    assert training["batch_per_step"] == images and training["config"]["batch_size"] == 512


def stop_after_epoch(monkeypatch, stop: int) -> None:
    """Ctrl-C right after epoch ``stop`` is saved (where early stopping is asked); ``monkeypatch.undo()`` ends it."""
    from edgetransfer import finetune as module

    real = module._Trainer._should_stop

    def interrupted(self, epoch):
        if epoch == stop:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(module._Trainer, "_should_stop", interrupted)


def stopped_after_epoch(monkeypatch, config: FinetuneConfig, stop: int) -> None:
    """Run ``config``'s fine-tune and stop it with Ctrl-C right after epoch ``stop`` is saved (every patch of
    ``monkeypatch`` undone after)."""
    stop_after_epoch(monkeypatch, stop)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    monkeypatch.undo()


def test_interrupted_run_resumes_where_it_stopped(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = FinetuneConfig(data=str(image_folder), out=str(out), **{**TINY, "epochs": 3})
    stopped_after_epoch(monkeypatch, config, 2)
    with pytest.raises(RunDirError, match="--resume"):
        RunDir.open(out)
    # the card says how far it got (best_epoch was null and the history empty until it finished: a known item)
    stopped = json.loads((out / "card.json").read_text())
    assert [h["epoch"] for h in stopped["training"]["history"]] == [1, 2] and not stopped["complete"]["finetune"]
    assert stopped["training"]["best_epoch"] in (1, 2)
    with pytest.raises(UsageError, match=r"changed option\(s\): --lr \(0.002 in the run, 0.5 now\); leave them out"):
        finetune(FinetuneConfig(**{**config.__dict__, "resume": True, "lr": 0.5}))
    with pytest.raises(UsageError, match="already exists"):
        finetune(config)
    run = finetune(FinetuneConfig(**{**config.__dict__, "resume": True}))
    card = run.load_card()
    assert card.complete["finetune"] and [h["epoch"] for h in card.training["history"]] == [1, 2, 3]
    uninterrupted = finetune(FinetuneConfig(**{**config.__dict__, "out": str(tmp_path / "straight")}))
    assert uninterrupted.file("model.safetensors").read_bytes() == run.file("model.safetensors").read_bytes()
    # the resumed epoch saw the same augmentation and dropout as the uninterrupted one: the same losses
    straight = uninterrupted.load_card().training["history"]
    assert [(h["loss"], h["val_loss"]) for h in card.training["history"]] == [
        (h["loss"], h["val_loss"]) for h in straight
    ]


def test_a_multi_process_run_is_resumed_in_as_many_processes(image_folder, tmp_path, monkeypatch):
    """A two-process run resumed as one process went on silently with the wrong steps per epoch and learning rate
    (72 % validation where the uninterrupted run had 94 %; a new user's trial). The card of a single-process run,
    edited to say two processes as torchrun's does, stands in for one here."""
    out = tmp_path / "run"
    config = FinetuneConfig(data=str(image_folder), out=str(out), **{**TINY, "epochs": 3})
    stopped_after_epoch(monkeypatch, config, 1)
    card = json.loads((out / "card.json").read_text())
    card["training"]["world_size"] = 2
    (out / "card.json").write_text(json.dumps(card))
    command = f"edgetransfer finetune --nproc-per-node 2 --resume --out {out}"  # (it said torchrun, off PATH)
    with pytest.raises(RunDirError, match=f"continue it with: {command}$"):
        RunDir.open(out)
    from edgetransfer.runtime import Classifier  # predict said the one-process command, refused when followed

    with pytest.raises(UsageError, match=f"continue it with '{command}', then"):
        Classifier(out)
    with pytest.raises(UsageError, match=f"training in 2 processes, this is 1: .*as it started .*: {command}$"):
        finetune(FinetuneConfig(**{**config.__dict__, "resume": True}))
    card["training"]["world_size"] = 1
    (out / "card.json").write_text(json.dumps(card))
    with pytest.raises(RunDirError, match=f"continue it with: edgetransfer finetune --resume --out {out}$"):
        RunDir.open(out)
    assert finetune(FinetuneConfig(**{**config.__dict__, "resume": True})).load_card().complete["finetune"]


def test_a_resumed_fp16_run_keeps_its_loss_scale(image_folder, tmp_path, monkeypatch):
    """fp16 training (a GPU's --amp fp16) scales its loss; the scale it had backed off to was not saved, so a
    resumed run began at the initial scale again and skipped steps to overflow a second time. fp16 autocast on the
    CPU stands in for the GPU; an initial scale far past fp16's range makes the first steps overflow for sure."""
    import torch

    from edgetransfer import finetune as module

    scales = []  # the scale at each step's update

    class Scaler(torch.amp.GradScaler):
        def __init__(self, device, enabled=True):
            super().__init__(device, init_scale=2.0**30, enabled=enabled)

        def update(self, new_scale=None):
            scales.append(self.get_scale())
            super().update(new_scale)

    # fp16 for training steps only (scoring in fp16 on a CPU is slow and says nothing here)
    monkeypatch.setattr(
        module, "amp_dtype", lambda mode, device, body_learns=False: torch.float16 if body_learns else None
    )
    monkeypatch.setattr(torch.amp, "GradScaler", Scaler)
    options = {**TINY, "epochs": 2, "strategy": "full", "batch_size": 32}  # one step an epoch
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "run"), **options)
    stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    saved = torch.load(tmp_path / "run" / "resume.pt", weights_only=True)["scaler"]["scale"]
    assert saved < 2.0**30 and saved == scales[-1] / 2  # epoch 1 overflowed and backed off
    monkeypatch.setattr(module._Trainer, "_should_stop", lambda self, epoch: False)
    scales.clear()
    finetune(FinetuneConfig(**{**config.__dict__, "resume": True}))
    assert scales[0] == saved  # epoch 2 went on from the scale reached, not from the initial one


def test_weights_and_device_are_checked_before_the_data_scan(image_folder, tmp_path, monkeypatch, capsys):
    """A new user's --weights typo and a backbone with no weights here were said only after the data scan (which
    can take minutes on a large folder): before it now, with nothing written."""
    from edgetransfer.errors import BackendUnavailableError, WeightsError

    (image_folder / "class0" / "broken.png").write_bytes(b"not a png")  # the scan would say it skips this
    base = {"data": str(image_folder), "out": str(tmp_path / "run"), "skip_bad": True, **TINY}
    monkeypatch.setenv("EDGETRANSFER_OFFLINE", "1")
    cases = [
        ({"weights": str(tmp_path / "missing.pth")}, UsageError, "weights file not found"),
        ({"backbone": "resnet18"}, WeightsError, "no pretrained weights for resnet18"),
    ]
    if not torch.cuda.is_available():
        cases.append(({"device": "cuda"}, BackendUnavailableError, "no CUDA GPU on this machine: --device cpu"))
    for options, error, message in cases:
        capsys.readouterr()
        with pytest.raises(error, match=message):
            finetune(FinetuneConfig(**{**base, **options}))
        assert "skipping" not in capsys.readouterr().err, options
        assert not (tmp_path / "run").exists()


def test_a_run_with_relative_input_folders_resumes_from_another_folder(image_folder, tmp_path, monkeypatch):
    """The card kept --adapt-bn/--unlabeled/--target-val/--weights as typed: resumed from another working folder
    they were not found, and naming them again by another path was refused as a changed option."""
    from edgetransfer.finetune_config import resume_options

    make_folder(tmp_path / "unl", per_class=4, seed=7)
    monkeypatch.chdir(tmp_path)
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "run"), adapt_bn="unl", **TINY)
    stopped_after_epoch(monkeypatch, config, 1)
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    options = resume_options(tmp_path / "run")  # what `finetune --resume --out RUN` starts from
    assert options["adapt_bn"] == str(tmp_path / "unl")
    again = {**options, "out": str(tmp_path / "run"), "resume": True, "adapt_bn": "../unl"}  # the same, by another path
    card = finetune(FinetuneConfig(**again)).load_card()
    assert card.complete["finetune"] and card.training["adaptation"]["adapt_bn_images"] == 12


def test_a_run_stopped_after_early_stopping_resumes_to_its_end(image_folder, tmp_path, monkeypatch):
    """Ctrl-C after early stopping ended training (while the test split was scored): --resume trained one more
    epoch and called it 'epochs done'; it finishes as the run would have."""
    from edgetransfer import finetune as module

    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "run"), **{**TINY, "epochs": 4})
    monkeypatch.setattr(module._Trainer, "_should_stop", lambda self, epoch: epoch >= 2)  # no better score after 2
    real_finish = module._Trainer._finish

    def interrupted(self, stopped_because, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Trainer, "_finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    monkeypatch.setattr(module._Trainer, "_finish", real_finish)
    with pytest.raises(UsageError, match="has finished 2 epochs already; give --epochs 2 or more"):
        finetune(FinetuneConfig(**{**config.__dict__, "resume": True, "epochs": 1}))  # it recorded 1 of 2 epochs
    card = finetune(FinetuneConfig(**{**config.__dict__, "resume": True})).load_card()
    assert [h["epoch"] for h in card.training["history"]] == [1, 2]
    assert card.training["stopped"].startswith("early stopping")


def test_a_resume_with_fewer_epochs_counts_the_patience_by_its_own_plan(image_folder, tmp_path, monkeypatch):
    """Early stopping counts from the middle of the plan: a run of 8 interrupted after epoch 5 and resumed with
    --epochs 6 judged its first epoch by the old plan (middle 4: one epoch counted, trained on) and only later ones by
    the new (middle 3: two counted, it stops there). The stop says how long the score stalled (4 epochs, not the
    patience's 2)."""
    import torch

    from edgetransfer.finetune_config import RESUME_STATE

    out = tmp_path / "run"
    config = FinetuneConfig(data=str(image_folder), out=str(out), **{**TINY, "epochs": 8, "patience": 2})
    stopped_after_epoch(monkeypatch, config, 5)
    state = torch.load(out / RESUME_STATE, map_location="cpu", weights_only=True)
    state.update(best_acc=2.0, best_epoch=1)  # no better validation score since epoch 1 (none can beat 2.0)
    torch.save(state, out / RESUME_STATE)
    card = finetune(FinetuneConfig(**{**config.__dict__, "resume": True, "epochs": 6})).load_card()
    assert [h["epoch"] for h in card.training["history"]] == [1, 2, 3, 4, 5]
    assert card.training["stopped"] == "early stopping (no better validation score for 4 epochs)"


def test_a_failed_state_write_resumes_from_the_epoch_before_exactly(image_folder, tmp_path, monkeypatch):
    """The disk filling while epoch 2's state is written: resuming trains epoch 2 again from epoch 1's weights (the
    weights sat in their own file, written first: they were epoch 2's while the state said epoch 1, and the
    resumed run trained epoch 2 twice)."""
    import errno

    import torch

    out = tmp_path / "run"
    config = FinetuneConfig(data=str(image_folder), out=str(out), **{**TINY, "epochs": 3})
    real, calls = torch.save, []

    def full_disk_at_epoch_2(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_at_epoch_2)
    with pytest.raises(EdgeTransferError, match="No space left"):
        finetune(config)
    monkeypatch.setattr(torch, "save", real)
    run = finetune(FinetuneConfig(**{**config.__dict__, "resume": True}))
    straight = finetune(FinetuneConfig(**{**config.__dict__, "out": str(tmp_path / "straight")}))
    assert [h["loss"] for h in run.load_card().training["history"]] == [
        h["loss"] for h in straight.load_card().training["history"]
    ]
    assert run.file("model.safetensors").read_bytes() == straight.file("model.safetensors").read_bytes()


@pytest.mark.parametrize(
    "code, reason, when",
    [
        ("ENOSPC", "No space left on device", "once there is room"),
        ("EACCES", "Permission denied", "once it can be written"),
    ],
)
def test_a_full_disk_mid_training_says_the_finished_epochs_are_kept(
    image_folder, tmp_path, monkeypatch, code, reason, when
):
    """A full disk at epoch 2 said 'cannot write RUN/resume.pt: No space left on device; what was there before is
    unchanged', and no more, over a run whose first epoch --resume continues (a new user's trial; Ctrl-C says so).
    Any other write error says so too, without 'room'."""
    import errno

    import torch
    from typer.testing import CliRunner

    from edgetransfer.cli import app

    out = tmp_path / "run"
    real, calls = torch.save, []

    def full_disk_at_epoch_2(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            raise OSError(getattr(errno, code), reason)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_at_epoch_2)
    args = ["finetune", "--data", str(image_folder), "--out", str(out), "--size", "32", "--epochs", "3"]
    result = CliRunner().invoke(app, [*args, "--batch-size", "8"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and reason in said, result.output
    assert f"the finished epochs are kept in {out}: the same command with --resume continues {when}" in said
    assert (out / "resume.pt").is_file()


def test_the_best_checkpoint_is_the_epoch_the_saved_state_names(image_folder, tmp_path, monkeypatch):
    """model.safetensors was written before resume.pt: a stop between the two left a checkpoint of an epoch the state
    did not know, and a resumed run whose epoch scored lower (on a GPU it is not the same bit for bit) kept it as
    its best. Now a stop at either write leaves the checkpoint of the epoch the state names as best."""
    import errno

    from edgetransfer import finetune as module

    out = tmp_path / "run"
    config = FinetuneConfig(data=str(image_folder), out=str(out), **{**TINY, "epochs": 3})
    real_score, real_save, real_checkpoint = module.score, torch.save, module.save_checkpoint
    accuracies: list[float] = []

    def scored(*args, **kwargs):  # validation top-1 as the test says, one value per epoch (then the test split's)
        accuracy, predicted, loss = real_score(*args, **kwargs)
        return accuracies.pop(0) if accuracies else accuracy, predicted, loss

    def best_matches_state() -> bool:
        state = torch.load(out / "resume.pt", weights_only=False)
        checkpoint = backbones.read_safetensors(out / "model.safetensors")
        assert state["best_epoch"] == state["epoch"]  # the test's scores make the last saved epoch the best
        return all(torch.equal(checkpoint[k], v) for k, v in state["weights"].items())

    def fail_second(real):
        calls = []

        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise EdgeTransferError(f"cannot write: {OSError(errno.ENOSPC, 'No space left on device')}")
            return real(*args, **kwargs)

        return write

    monkeypatch.setattr(module, "score", scored)
    # epoch 2 better than epoch 1, its state write fails: the checkpoint stays epoch 1's, as the state says
    accuracies[:] = [0.5, 0.6]
    monkeypatch.setattr(torch, "save", fail_second(real_save))
    with pytest.raises(EdgeTransferError, match="No space left"):
        finetune(config)
    monkeypatch.setattr(torch, "save", real_save)
    assert best_matches_state()
    # epoch 2 better, its state written and then its checkpoint write fails; the resumed epoch 3 scores lower:
    # the run's best is epoch 2's weights, from the state
    shutil.rmtree(out)
    accuracies[:] = [0.5, 0.6]
    monkeypatch.setattr(module, "save_checkpoint", fail_second(real_checkpoint))
    with pytest.raises(EdgeTransferError, match="No space left"):
        finetune(config)
    monkeypatch.setattr(module, "save_checkpoint", real_checkpoint)
    epoch_2 = torch.load(out / "resume.pt", weights_only=False)["weights"]
    accuracies[:] = [0.4]
    run = finetune(FinetuneConfig(**{**config.__dict__, "resume": True}))
    assert run.load_card().training["best_epoch"] == 2
    checkpoint = backbones.read_safetensors(run.file("model.safetensors"))
    assert all(torch.equal(checkpoint[k], v) for k, v in epoch_2.items())


def test_nan_loss_stops_with_a_message_and_keeps_the_best(image_folder, tmp_path, monkeypatch):
    class Exploding(torch.nn.CrossEntropyLoss):
        calls = 0

        def forward(self, logits, target):
            Exploding.calls += 1
            loss = super().forward(logits, target)
            return loss * math.nan if Exploding.calls > 4 else loss  # epoch 1 has 3 steps

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", Exploding)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2") as info:
        finetune(FinetuneConfig(data=str(image_folder), out=str(out), **TINY))
    assert "best checkpoint" in str(info.value) and (out / "model.safetensors").is_file()


def test_odd_image_modes_are_converted(tmp_path):
    root = make_folder(tmp_path / "data", per_class=6, classes=2)
    rng = np.random.default_rng(0)
    odd = {
        "gray.png": Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)),
        "rgba.png": Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8)),
        "palette.png": Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("P"),
        "deep.png": Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)),
        "cmyk.jpg": Image.new("CMYK", (20, 20), (10, 200, 30, 0)),
    }
    for name, img in odd.items():
        img.save(root / "class0" / name)
    run = finetune(FinetuneConfig(data=str(root), out=str(tmp_path / "run"), **{**TINY, "epochs": 1}))
    assert run.load_card().dataset["sizes"]["train"] + run.load_card().dataset["sizes"]["val"] > 12


def test_adabn_and_self_training_are_measured(image_folder, tmp_path):
    target = tmp_path / "target"
    make_folder(target, per_class=4, seed=5)  # another draw of the same classes: unlabelled target images
    labelled = make_folder(tmp_path / "labelled", per_class=3, seed=6)  # and labelled ones, kept apart
    run = finetune(
        FinetuneConfig(
            data=str(image_folder),
            out=str(tmp_path / "run"),
            adapt_bn=str(target),
            unlabeled=str(target),
            target_val=str(labelled),
            pseudo_rounds=1,
            pseudo_threshold=1e-6,
            **TINY,
        )
    )
    adaptation = run.load_card().training["adaptation"]
    assert adaptation["adapt_bn_images"] == 12
    for key in ("target_val_top1_source_only", "target_val_top1_adabn", "target_val_top1_final"):
        assert 0 <= adaptation[key] <= 1
    assert adaptation["self_training"][0]["pseudo_labelled"] == 12


def test_bad_options(image_folder, tmp_path):
    for bad in ({"strategy": "magic"}, {"augment": "heavy"}, {"patience": 0}, {"balanced": "maybe"}):
        with pytest.raises(UsageError):
            finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "x"), **bad))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["auto", "full"])  # auto: two-phase on these few images (a frozen body first)
def test_torchrun_two_cpu_processes_with_gloo(image_folder, tmp_path, strategy):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    script = tmp_path / "record_weights.py"  # each rank writes its weights' sha256 after each epoch: they must agree
    script.write_text(
        "import hashlib, os, sys\n"
        "from edgetransfer import finetune\n"
        "end_epoch = finetune._Trainer._end_epoch\n"
        "def recorded(self, *args, **kwargs):\n"
        "    digest = hashlib.sha256()\n"
        "    for name, value in sorted(self.model.named_parameters()):  # (BatchNorm statistics: each its own)\n"
        "        digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())\n"
        f"    with open(os.path.join({str(tmp_path)!r}, 'rank' + os.environ['RANK']), 'a') as f:\n"
        "        threads = __import__('torch').get_num_threads()  # training's, after the last validation\n"
        "        f.write(f'{digest.hexdigest()} {len(self.val)} {threads}\\n')\n"
        "    return end_epoch(self, *args, **kwargs)\n"
        "finetune._Trainer._end_epoch = recorded\n"
        "import torch\n"
        "real_score = finetune.score\n"
        "def threads_scored(*args, **kwargs):  # process 0's threads as it scores (validation, the test split)\n"
        f"    with open(os.path.join({str(tmp_path)!r}, 'threads' + os.environ['RANK']), 'a') as f:\n"
        "        f.write(f'{torch.get_num_threads()}\\n')\n"
        "    return real_score(*args, **kwargs)\n"
        "finetune.score = threads_scored\n"
        "from edgetransfer.cli import main\n"
        "sys.argv = ['edgetransfer'] + sys.argv[1:]\n"
        "main()\n"
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        "finetune",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--strategy",
        strategy,
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", ALONE_THREADS: "2"}  # as --nproc-per-node sets
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["world_size"] == 2 and card["complete"]["finetune"]
    assert card["training"]["config"]["strategy"] == ("full" if strategy == "full" else "two-phase")
    # process 0 scores validation and the test split on the cores both share, while process 1 waits (it scored
    # them on its one thread), and trains on its share again after (the weights' records above: 1 each epoch)
    assert (tmp_path / "threads0").read_text().split() == ["2"] * 4 and not (tmp_path / "threads1").exists()
    # DDP is made for each phase's learning parameters: no search for unused ones, and no warning from torch that
    # it found none (it came on every run); the two-phase run's head phase leaves the body out of it
    assert "find_unused_parameters" not in result.stderr
    # and every parameter that learned was synced: the two processes end with the same weights
    lines = [(tmp_path / f"rank{rank}").read_text().splitlines() for rank in (0, 1)]
    epochs = [[line.split()[0] for line in rank] for rank in lines]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1] and epochs[0][0] != epochs[0][1]
    # process 0 alone scores the validation split: the others do not decode it (each of 8 GPUs' processes held it)
    assert int(lines[0][0].split()[1]) > 0 and int(lines[1][0].split()[1]) == 0
    assert [line.split()[2] for rank in lines for line in rank] == ["1"] * 4  # training's threads: each its share
    assert card["training"]["config"]["batch_size"] == 4 and card["training"]["batch_per_step"] == 8
    assert result.stderr.count("best val top-1") == 1, "only rank 0 reports and writes"
    # the batch is each process's: the step's in all is said (a user's trial read 'batch 8' for 16 a step)
    assert "batch 4 per process (8 a step in all)" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_torchrun_ranks_agree_on_a_time_budgets_plan(image_folder, tmp_path):
    """Each rank times its own epochs (rank 0's include validation); where their plans differed one rank stopped
    while the other waited on it in the next step's gradient exchange (a hang). Rank 0 is made to think an epoch
    costs far more than the budget: every rank must stop with it."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    script = tmp_path / "slow_rank0.py"
    script.write_text(
        "import os, sys\n"
        "from edgetransfer import finetune\n"
        "if os.environ['RANK'] == '0':\n"
        "    finetune._Trainer._epoch_cost = lambda self, epoch, took: 1e9\n"
        "from edgetransfer.cli import main\n"
        "sys.argv = ['edgetransfer'] + sys.argv[1:]\n"
        "main()\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    command += ["finetune", "--data", str(image_folder), "--out", str(out), "--size", "32", "--epochs", "3"]
    command += ["--batch-size", "4", "--device", "cpu", "--time-budget", "600", "--strategy", "full"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert [entry["epoch"] for entry in card["training"]["history"]] == [1]
    assert "time budget" in card["training"]["stopped"]


def _nproc(image_folder, out, *extra) -> list[str]:
    import sys

    return [sys.executable, "-m", "edgetransfer", "finetune", "--data", str(image_folder), "--out", str(out)] + [
        "--nproc-per-node", "2", "--size", "32", "--batch-size", "4", "--device", "cpu", "--strategy", "full", *extra
    ]  # fmt: skip


@pytest.mark.slow
def test_nproc_per_node_trains_in_two_processes_and_process_0_alone_speaks(image_folder, tmp_path):
    """torchrun's launcher inside the command: the job trains in two processes, its output is process 0's (the
    run's path once, no torchrun warning), and a mistake the processes find is one line, not torchrun's report."""
    import os
    import subprocess

    from edgetransfer.launch import threads_per_process

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = tmp_path / "ddp"
    done = subprocess.run(
        _nproc(image_folder, out, "--epochs", "1"), capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["world_size"] == 2 and card["complete"]["finetune"]
    assert done.stdout.split() == [str(out)] and done.stderr.count("best val top-1") == 1
    assert "OMP_NUM_THREADS" not in done.stderr and "torch.distributed" not in done.stderr
    threads = threads_per_process(2)  # the cores shared out between the two (torchrun gives each 1)
    assert f"on cpu x2 ({threads} thread{'s' * (threads != 1)}); " in done.stderr, done.stderr[:2000]
    (next(image_folder.iterdir()) / "broken.png").write_bytes(b"not an image")  # found by each process's scan
    failed = subprocess.run(
        _nproc(image_folder, tmp_path / "bad"), capture_output=True, text=True, timeout=300, env=env
    )
    assert failed.returncode == 2, failed.stderr[-3000:]
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]  # process 0's, or process 1's when it was first
    assert len(errors) == 1 and errors[0].startswith("error: 1 bad file(s)"), failed.stderr[-3000:]
    # (process 0, stopped by the launcher after process 1 failed first, says what it kept: not "interrupted")
    assert all(line.startswith(("error:", "stopped with the job; nothing was kept")) for line in lines), lines
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_ctrl_c_in_an_nproc_per_node_job_is_one_line_and_resumable(image_folder, tmp_path):
    """Ctrl-C reaches the launcher (the job's processes run in sessions of their own) and it passes it on: process 0
    says what is kept, the launcher adds no traceback (torchrun's SignalException), and the exit code is 130."""
    import os
    import signal
    import subprocess

    out = tmp_path / "ddp"
    command = _nproc(image_folder, out, "--epochs", "40")
    job = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True
    )
    said = []
    for line in job.stderr:
        said.append(line)
        if line.startswith("epoch 1/"):  # one epoch kept: the run can be resumed
            os.killpg(job.pid, signal.SIGINT)
            break
    said += job.stderr.readlines()
    assert job.wait(timeout=120) == 130, "".join(said)[-3000:]
    assert "Traceback" not in "".join(said) and "SignalException" not in "".join(said)
    interrupted = [line for line in said if line.startswith("interrupted")]
    assert len(interrupted) == 1 and "--resume continues" in interrupted[0], "".join(said)[-3000:]
    assert (out / "resume.pt").is_file()


def test_nproc_per_node_gives_its_processes_the_options_given(image_folder, tmp_path, monkeypatch):
    """The processes get the command line as given (flags, values, --no- switches), and a mistake in it is said
    before any process starts."""
    from typer.testing import CliRunner

    from edgetransfer import launch
    from edgetransfer.cli import app

    started, real = [], launch.launch
    monkeypatch.setattr(launch, "launch", lambda nproc, argv, device: started.append((nproc, argv)) or 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    args = ["finetune", "--data", str(image_folder), "--out", str(tmp_path / "r"), "--nproc-per-node", "3"]
    args += ["--lr", "0.01", "--no-skip-bad", "--overwrite", "--size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ((nproc, argv),) = started
    assert nproc == 3 and argv[0] == "finetune"
    pairs = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if not argv[i + 1].startswith("--")}
    assert pairs == {"--data": str(image_folder), "--out": str(tmp_path / "r"), "--nproc-per-node": "3",
                     "--lr": "0.01", "--size": "64"}  # fmt: skip
    assert "--no-skip-bad" in argv and "--overwrite" in argv and len(argv) == 13
    wrong = CliRunner().invoke(app, [*args, "--lr", "-1"])
    assert wrong.exit_code == 2 and "--lr" in wrong.output and len(started) == 1
    import torch

    monkeypatch.setattr(launch, "launch", real)  # its own check, before torchrun's launcher
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpus = CliRunner().invoke(app, [*args, "--device", "cuda"])  # 3 processes, one GPU each, on 2 GPUs
    assert gpus.exit_code == 2, gpus.output
    assert "--nproc-per-node 3 trains one process per GPU and this machine has 2: --nproc-per-node 2" in gpus.output
    zero = CliRunner().invoke(app, [*args, "--nproc-per-node", "0"])
    assert zero.exit_code == 2 and "--nproc-per-node must be 1 to 10, not 0" in zero.output
    eleven = CliRunner().invoke(app, [*args, "--nproc-per-node", "11"])  # torchrun's launcher raised a traceback
    assert eleven.exit_code == 2 and "must be 1 to 10, not 11; more processes on one machine: torchrun" in eleven.output


def test_more_cpu_processes_than_cores_is_said(capsys, monkeypatch):
    """Three processes on two cores take turns on them (each still takes one thread): said before they start."""
    import torch.distributed.run

    from edgetransfer import launch, machine

    ran = []
    monkeypatch.setattr(torch.distributed.run, "run", lambda args: ran.append(args.nproc_per_node))
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert launch.launch(3, ["finetune"], device="cpu") == 0 and ran == ["3"]
    assert "note: 3 processes on the 2 cores this command may use: they take turns" in capsys.readouterr().err
    assert launch.launch(2, ["finetune"], device="cpu") == 0 and "note" not in capsys.readouterr().err


def test_a_failed_process_the_first_did_not_speak_for_is_said(tmp_path, capsys, monkeypatch):
    """The first failure is the cause. Process 0 says its own; another's error line (kept by the command's error
    handler) is said unless process 0 said the same; a bug's traceback is read back from its output; a process
    killed by a signal is named, with 128 + the signal as the exit code."""
    from types import SimpleNamespace

    from edgetransfer.cli._common import friendly_errors
    from edgetransfer.errors import UsageError
    from edgetransfer.launch import SAID, _failed

    def fails(message):
        raise UsageError(message)

    monkeypatch.setenv(SAID, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(typer.Exit):
        friendly_errors(fails)("CUDA out of memory on cuda:1")
    capsys.readouterr()
    assert _failed({1: SimpleNamespace(exitcode=2, timestamp=5)}, tmp_path) == 2
    assert capsys.readouterr().err == "error: CUDA out of memory on cuda:1 (process 1)\n"
    monkeypatch.setenv("RANK", "0")  # process 0 said the same: once is enough
    with pytest.raises(typer.Exit):
        friendly_errors(fails)("CUDA out of memory on cuda:1")
    capsys.readouterr()
    late = {0: SimpleNamespace(exitcode=-15, timestamp=6), 1: SimpleNamespace(exitcode=2, timestamp=5)}
    assert _failed(late, tmp_path) == 2 and capsys.readouterr().err == ""
    # every process failed at one step, each with its own error, process 1 first by the launcher's clock: process
    # 0's is the one (process 1's said 'OUT is as it was' of a run process 0 had kept epochs of: a review)
    with open(tmp_path / "said-1", "a", encoding="utf-8") as said:
        said.write("error: the loss became nan; training stopped before its first epoch finished\n")
    both = {0: SimpleNamespace(exitcode=2, timestamp=6), 1: SimpleNamespace(exitcode=2, timestamp=5)}
    assert _failed(both, tmp_path) == 2 and capsys.readouterr().err == ""
    log = tmp_path / "run" / "attempt_0" / "2" / "stderr.log"  # a bug: no error line of its own, a traceback
    log.parent.mkdir(parents=True)
    log.write_text("Traceback (most recent call last):\nZeroDivisionError: division by zero\n")
    assert _failed({2: SimpleNamespace(exitcode=1, timestamp=1)}, tmp_path) == 1
    assert capsys.readouterr().err.endswith("ZeroDivisionError: division by zero (process 2)\n")
    assert (
        _failed({0: SimpleNamespace(exitcode=-9, timestamp=1), 1: SimpleNamespace(exitcode=-15, timestamp=2)}, tmp_path)
        == 137
    )
    assert capsys.readouterr().err == "error: training process 0 of the job was killed by SIGKILL\n"


def test_a_process_the_launcher_stopped_says_so_not_interrupted(tmp_path, capsys, monkeypatch):
    """Process 0 of a job whose process 1 failed first is stopped by the launcher with SIGTERM: it said
    'interrupted', as if the user had pressed Ctrl-C (a review); outside a job SIGTERM stays an interruption."""
    from edgetransfer import cli
    from edgetransfer.cli.finetune import say_interrupted
    from edgetransfer.launch import SAID

    monkeypatch.setattr(cli, "TERMINATED", [15])
    monkeypatch.setenv(SAID, str(tmp_path))
    say_interrupted(str(tmp_path / "run"), 0.0, resume=False)
    assert capsys.readouterr().err.startswith("stopped with the job; nothing was kept")
    monkeypatch.delenv(SAID)
    say_interrupted(str(tmp_path / "run"), 0.0, resume=False)
    assert capsys.readouterr().err.startswith("interrupted; nothing was kept")


def test_self_training_has_its_own_learning_rate():
    """The head's and body's rates do not move self-training's (a small one that refines an adapted model)."""
    assert FinetuneConfig(data="x", out="y").pseudo_lr == 9e-5
    with pytest.raises(UsageError, match="--pseudo-lr"):
        FinetuneConfig(data="x", out="y", pseudo_lr=0).validate()


def test_ties_in_validation_accuracy_go_to_the_lower_validation_loss(image_folder, tmp_path, monkeypatch):
    """A small or saturated validation split ties: the checkpoint is the tied epoch with the lowest validation loss
    (epoch 2 here), not the first one to reach the top accuracy."""
    from edgetransfer import finetune as module

    real, scripted = module.score, iter([(1.0, 0.5), (1.0, 0.2), (1.0, 0.3)])  # (val top-1, val loss) per epoch

    def predict(model, samples, *args, **kwargs):
        accuracy, predictions, loss = real(model, samples, *args, **kwargs)
        accuracy, loss = next(scripted, (accuracy, loss))  # the last call is the test split: real figures
        return accuracy, predictions, loss

    monkeypatch.setattr(module, "score", predict)
    run = finetune(FinetuneConfig(data=str(image_folder), out=str(tmp_path / "run"), **{**TINY, "epochs": 3}))
    card = run.load_card()
    assert [h["val_loss"] for h in card.training["history"]] == [0.5, 0.2, 0.3]
    assert card.training["best_epoch"] == 2


@pytest.mark.parametrize("side, expected", [(40, 96), (130, 160), (300, 224)])
def test_input_size_from_the_images(tmp_path, side, expected):
    from edgetransfer.builtin_data import write_pattern_folder
    from edgetransfer.data import load_splits
    from edgetransfer.finetune_config import choose_size

    data = write_pattern_folder(tmp_path / "data", per_class=4, classes=2, size=side)
    splits = load_splits(data)
    config = FinetuneConfig(data=str(data), out=str(tmp_path / "run"))
    size, why = choose_size(config, backbones.get("mobilenet_v2"), splits)
    assert size == expected and f"median shorter side {side} px" in why
    given = FinetuneConfig(data=str(data), out=str(tmp_path / "run"), size=64)
    assert choose_size(given, backbones.get("mobilenet_v2"), splits) == (64, "--size")
    off = FinetuneConfig(data=str(data), out=str(tmp_path / "run"), size=100)  # trains off the stride grid: said
    size, why = choose_size(off, backbones.get("mobilenet_v2"), splits)
    assert size == 100 and "not a multiple of 32" in why and why.endswith("nearest on the grid: 96 or 128 px)")
    assert choose_size(dataclasses.replace(off, size=20), backbones.get("mobilenet_v2"), splits)[1].endswith(
        "grid: 32 px)"
    )
    lite1 = backbones.get("efficientnet_lite1")  # its own size, 240, is off the grid: no note for it
    assert choose_size(dataclasses.replace(off, size=lite1.input_size), lite1, splits) == (240, "--size")
    if side == 300:  # from the images: "rounded up to a multiple of 32 within 96..240" said of 240 (a new user)
        size, why = choose_size(config, lite1, splits)
        assert size == 240 and "at least efficientnet_lite1's own size, 240 px, the size its ImageNet" in why
        assert "multiple of 32" not in why and choose_size(config, backbones.get("mobilenet_v2"), splits)[0] == 224


def test_input_size_from_images_just_below_the_backbones_own_size(tmp_path):
    """230 px images for EfficientNet-Lite1 (240): rounded up to 256, capped at 240; not "at least" its size."""
    from edgetransfer.builtin_data import write_pattern_folder
    from edgetransfer.data import load_splits
    from edgetransfer.finetune_config import choose_size

    data = write_pattern_folder(tmp_path / "data", per_class=4, classes=2, size=230)
    config = FinetuneConfig(data=str(data), out=str(tmp_path / "run"))
    size, why = choose_size(config, backbones.get("efficientnet_lite1"), load_splits(data))
    assert size == 240 and "median shorter side 230 px, rounded up to a multiple of 32 (256) above" in why
    assert "at least" not in why


def test_the_built_in_digits_by_name_from_python(image_folder, tmp_path, monkeypatch, capsys):
    """finetune(FinetuneConfig(data="digits")) resolves the built-in set as the CLI does (the folder is replaced by
    a small one here; writing the real digits is tested by the pipeline test)."""
    from edgetransfer import builtin_data

    monkeypatch.setattr(builtin_data, "materialize_digits", lambda seed=0: image_folder)
    run = finetune(FinetuneConfig(data="digits", out=str(tmp_path / "run"), **{**TINY, "epochs": 1}))
    assert run.load_card().dataset["path"] == str(image_folder.resolve())
    said = " ".join(capsys.readouterr().err.split())  # two-phase was chosen on these few images, not given
    assert (
        "note: --epochs 1 ends within the head-only epochs of the two-phase recipe (chosen by --strategy auto; "
        "--head-epochs 1): the body never learns; --epochs 2 or more fine-tunes it, or --strategy full" in said
    )


def test_one_image_per_class_trains_on_all_and_says_it_cannot_validate(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_class=1, classes=3)
    run = finetune(FinetuneConfig(data=str(data), out=str(tmp_path / "run"), **TINY))
    card = run.load_card()
    assert card.dataset["sizes"] == {"train": 3, "val": 0, "test": 0} and card.complete["finetune"]
    assert card.metrics["torch"]["test_top1"] is None and card.training["best_epoch"] == 2, "the last epoch kept"
    err = capsys.readouterr().err
    assert "cannot validate: it trains all 2 epochs on every image, keeps the last epoch" in err


def test_early_stopping_ends_the_run_when_validation_stops_improving(image_folder, tmp_path, monkeypatch):
    from edgetransfer import finetune as module

    real, scripted = module.score, iter([(0.9, 0.5), (0.8, 0.6), (0.7, 0.7)])

    def predict(model, samples, *args, **kwargs):
        accuracy, predictions, loss = real(model, samples, *args, **kwargs)
        accuracy, loss = next(scripted, (accuracy, loss))
        return accuracy, predictions, loss

    monkeypatch.setattr(module, "score", predict)
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "run"), patience=1, **{**TINY, "epochs": 4})
    card = finetune(config).load_card()
    # epoch 2, the first of the body, is not counted against the patience: the run stops after epoch 3
    assert [h["epoch"] for h in card.training["history"]] == [1, 2, 3] and card.training["best_epoch"] == 1
    assert card.training["stopped"].startswith("early stopping")
    assert len(card.training["images_per_s"]) == 3 and all(v > 0 for v in card.training["images_per_s"])
    scripted = iter([(0.9, 0.5), (0.8, 0.6), (0.7, 0.7)])  # the same scores, 3 epochs: nothing left to stop
    card = finetune(dataclasses.replace(config, epochs=3, overwrite=True)).load_card()
    assert len(card.training["history"]) == 3 and card.training["stopped"] == "epochs done"


def test_early_stopping_waits_for_the_middle_of_the_planned_epochs(image_folder, tmp_path, monkeypatch):
    """A 4-epoch run whose validation fell at the peak learning rate stopped after epoch 3 (75 % test on a held-out
    set, 100 % run to its end): epochs before the middle of the plan are not counted against the patience."""
    from edgetransfer import finetune as module

    real = module.score
    falling = iter(())

    def scores(model, samples, *args, **kwargs):
        accuracy, predictions, loss = real(model, samples, *args, **kwargs)
        accuracy, loss = next(falling, (accuracy, loss))
        return accuracy, predictions, loss

    monkeypatch.setattr(module, "score", scores)
    base = {**TINY, "strategy": "full", "patience": 2}
    for epochs, ran in ((4, 4), (8, 6)):  # 4: no stop before the end; 8: counted from epoch 4, stops after 6
        falling = iter([(0.9 - 0.05 * e, 0.5 + 0.1 * e) for e in range(epochs)])  # the best at epoch 1, then worse
        out = tmp_path / f"run{epochs}"
        card = finetune(FinetuneConfig(data=str(image_folder), out=str(out), **{**base, "epochs": epochs})).load_card()
        assert [h["epoch"] for h in card.training["history"]] == list(range(1, ran + 1)), epochs
        assert card.training["best_epoch"] == 1
        assert card.training["stopped"].startswith("epochs done" if ran == epochs else "early stopping")


def test_a_validation_or_test_split_without_some_classes_is_said():
    from edgetransfer.data import Sample, Splits
    from edgetransfer.finetune_config import missing_class_notes

    def samples(*labels):
        return tuple(Sample(Path(f"{i}.png"), label) for i, label in enumerate(labels))

    labels = ("red car", "café", "dog")
    whole = Splits(Path("d"), labels, samples(0, 1, 2), samples(0, 1, 2), samples(0, 1, 2), 0, "folders")
    assert missing_class_notes(whole) == []
    gaps = Splits(Path("d"), labels, samples(0, 1, 2), samples(0, 2), samples(2), 0, "folders")
    assert missing_class_notes(gaps) == [
        "note: the val split has no images of 1 class(es) (café): the best epoch is chosen without them",
        "note: the test split has no images of 2 class(es) (red car, café): test top-1 is measured without them",
    ]
    # a skewed set: its smallest class's few test images are named (an 8:1 set's 3; a new user's trial)
    skewed = Splits(Path("d"), labels, samples(0, 1, 2), samples(0, 1, 2), samples(*[0] * 24, 1, 1, 1, 2, 2), 0, "x")
    (note,) = missing_class_notes(skewed)
    assert note.startswith("note: the test split holds 2 image(s) of dog (and 1 more class(es) under 5), against 24")
    even = Splits(Path("d"), labels, samples(0, 1, 2), samples(0, 1, 2), samples(0, 0, 1, 1, 2, 2), 0, "x")
    assert missing_class_notes(even) == []  # a small even set: its small splits are said elsewhere


def test_an_occupied_out_says_how_to_continue_only_an_unfinished_run(tmp_path):
    from edgetransfer.finetune_config import RESUME_STATE, check_out

    out = tmp_path / "run"
    out.mkdir()
    (out / "card.json").write_text("{}")
    config = FinetuneConfig(data="digits", out=str(out))
    with pytest.raises(UsageError, match="already exists and is not empty; choose another --out or pass --overwrite$"):
        check_out(config)
    (out / RESUME_STATE).write_bytes(b"")  # stopped after an epoch (Ctrl-C in finetune or in pipeline)
    with pytest.raises(UsageError, match=f"or continue its training: edgetransfer finetune --resume --out {out}$"):
        check_out(config)


def test_class_balanced_sampling_is_said_when_it_is_chosen():
    """auto switched class-balanced sampling on for a skewed set without a console line (only the card knew)."""
    from types import SimpleNamespace

    from edgetransfer.data import Sample
    from edgetransfer.training import balanced_reason

    skewed = tuple(Sample(Path(f"{i}.png"), 0) for i in range(10)) + (Sample(Path("x.png"), 1),)
    even = tuple(Sample(Path(f"{i}.png"), i % 2) for i in range(10))
    assert "skewed 10:1 (largest 10, smallest 1 images)" in balanced_reason(skewed, SimpleNamespace(balanced="auto"))
    assert balanced_reason(skewed, SimpleNamespace(balanced="off")) is None
    assert balanced_reason(even, SimpleNamespace(balanced="auto")) is None
    assert balanced_reason(even, SimpleNamespace(balanced="on")) == "--balanced on"


def test_several_processes_sample_class_balanced_too():
    """--nproc-per-node 2 trained plain shuffled whatever --balanced said (on, or auto on a 3:1 skew), unsaid (a
    review): each process takes its share of one class-balanced draw, disjoint and as many as a plain shard."""
    import collections
    from types import SimpleNamespace

    from edgetransfer.data import Sample
    from edgetransfer.training import Distributed, sampler_for_epoch

    skewed = tuple(Sample(Path(f"{i}.png"), 0) for i in range(90)) + tuple(
        Sample(Path(f"{i}b.png"), 1) for i in range(9)
    )
    config = SimpleNamespace(balanced="auto", seed=3)
    shares = [sampler_for_epoch(skewed, config, 1, Distributed(rank=r, world=2)) for r in (0, 1)]
    assert [name for _, name in shares] == ["class-balanced", "class-balanced"]
    orders = [list(order) for order, _ in shares]
    assert [len(o) for o in orders] == [50, 50]  # ceil(99 / 2) each, as DistributedSampler's shards
    again = sampler_for_epoch(skewed, config, 1, Distributed(rank=0, world=2))[0]
    assert list(again) == orders[0]  # the same seed and epoch: the same share (a resumed epoch)
    drawn = collections.Counter(skewed[i].label for o in orders for i in o)
    assert 30 <= drawn[1] <= 70, drawn  # the 9 images of class 1 drawn about as often as the 90 of class 0
    off = sampler_for_epoch(skewed, SimpleNamespace(balanced="off", seed=3), 1, Distributed(rank=0, world=2))
    assert off[1] == "distributed"


# --------------------------------------------------------------------------- a run stopped before its first epoch
# finished leaves --out as it was: the previous run of --overwrite put back, a folder it made removed


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run with the files an export and a bench add (stand-ins), and the images it was trained on."""
    base = tmp_path_factory.mktemp("finished")
    data = make_folder(base / "images", per_class=6)
    run = finetune(FinetuneConfig(data=str(data), out=str(base / "run"), **{**TINY, "epochs": 1}))
    (run.path / "openvino").mkdir()
    (run.path / "openvino" / "model.xml").write_text("<net/>")
    (run.path / "bench.json").write_text("{}")
    return data, run.path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def interrupt_in_the_first_step(monkeypatch):
    """Ctrl-C while the first epoch trains: card.json and splits.json are written by then."""
    from edgetransfer import finetune as module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "augment", interrupt)


def cli(*args):
    from typer.testing import CliRunner

    from edgetransfer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_ctrl_c_before_the_first_epoch_with_overwrite_puts_the_previous_run_back(finished_run, tmp_path, monkeypatch):
    data, finished = finished_run
    out = Path(shutil.copytree(finished, tmp_path / "run"))
    before = snapshot(out)
    interrupt_in_the_first_step(monkeypatch)
    result = cli("finetune", "--data", data, "--out", out, "--size", 32, "--epochs", 1, "--overwrite")
    assert result.exit_code == 130, result.output
    assert f"interrupted; nothing was kept: {out} is as it was" in result.stderr
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_failure_before_the_first_epoch_with_overwrite_puts_the_previous_run_back(
    finished_run, tmp_path, monkeypatch
):
    data, finished = finished_run
    out = Path(shutil.copytree(finished, tmp_path / "run"))
    before = snapshot(out)

    class Exploding(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) * math.nan

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", Exploding)
    config = FinetuneConfig(data=str(data), out=str(out), overwrite=True, **{**TINY, "epochs": 1})
    with pytest.raises(TrainingDiverged, match=f"before its first epoch finished; {out} is as it was; try a lower"):
        finetune(config)
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_ctrl_c_before_the_first_epoch_removes_the_folder_it_made(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    interrupt_in_the_first_step(monkeypatch)
    args = ["finetune", "--data", image_folder, "--out", out, "--size", 32, "--epochs", 1]
    result = cli(*args)
    assert result.exit_code == 130, result.output
    assert f"interrupted; nothing was kept: the new folder {out} is removed" in result.stderr  # was "is as it was"
    assert not out.exists() and not out.parent.exists()  # nor the folder above it, made for its lock file
    monkeypatch.undo()
    result = cli(*args)  # the same command again: no "already exists", no "--resume"
    assert result.exit_code == 0, result.output
    assert RunDir.open(out).load_card().complete["finetune"]


def test_overwrite_removes_the_previous_run_once_an_epoch_finished(finished_run, tmp_path, monkeypatch):
    from edgetransfer import finetune as module

    data, finished = finished_run
    out = Path(shutil.copytree(finished, tmp_path / "run"))

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Trainer, "_should_stop", interrupt)  # Ctrl-C right after epoch 1 is saved
    result = cli("finetune", "--data", data, "--out", out, "--size", 32, "--epochs", 2, "--overwrite")
    assert result.exit_code == 130, result.output
    assert f"the previous run in {out} is removed: this one can be continued with --resume" in result.stderr
    assert f"interrupted; the finished epochs are kept in {out}: the same command with --resume" in result.stderr
    assert (out / "resume.pt").is_file() and not (out / "bench.json").exists() and hidden(tmp_path) == []


def test_ctrl_c_in_a_resumed_run_keeps_its_finished_epochs(image_folder, tmp_path, monkeypatch):
    from edgetransfer import finetune as module

    out = tmp_path / "run"
    args = ["finetune", "--data", image_folder, "--out", out, "--size", 32, "--epochs", 2]

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Trainer, "_should_stop", interrupt)
    assert cli(*args).exit_code == 130
    before = snapshot(out)
    monkeypatch.undo()
    interrupt_in_the_first_step(monkeypatch)  # epoch 2 is interrupted
    result = cli("finetune", "--resume", "--out", out)
    assert result.exit_code == 130, result.output
    assert f"interrupted; the finished epochs are kept in {out}: the same command with --resume" in result.stderr
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_previous_run_left_aside_by_a_killed_overwrite_is_put_back(finished_run, tmp_path):
    """SIGKILL between moving the previous run aside and the first finished epoch: the next finetune on that --out
    puts it back when the new run never finished an epoch (there is then nothing of the new run to keep)."""
    from edgetransfer.finetune import previous_of

    data, finished = finished_run
    out = tmp_path / "run"
    before = snapshot(Path(shutil.copytree(finished, previous_of(out))))
    out.mkdir()
    shutil.copy(finished / "splits.json", out)  # the killed run's half-written start
    with pytest.raises(UsageError, match="already exists and is not empty"):
        finetune(FinetuneConfig(data=str(data), out=str(out), **TINY))
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_a_previous_run_left_by_a_killed_overwrite_after_its_first_epoch_is_removed(finished_run, tmp_path):
    from edgetransfer.finetune import previous_of

    data, finished = finished_run
    out = tmp_path / "run"
    shutil.copytree(finished, previous_of(out))
    out.mkdir()
    (out / "resume.pt").write_bytes(b"")  # the killed run finished an epoch: it replaced the previous one
    with pytest.raises(UsageError, match="or continue its training"):
        finetune(FinetuneConfig(data=str(data), out=str(out), **TINY))
    assert hidden(tmp_path) == [] and [p.name for p in out.iterdir()] == ["resume.pt"]


def test_a_time_budget_that_holds_only_the_head_epoch_says_the_body_never_learned(image_folder, tmp_path, capsys):
    """--time-budget 10 on a slow machine ran the two-phase head-only epoch alone and said only 'time budget'."""
    config = FinetuneConfig(
        data=str(image_folder), out=str(tmp_path / "r"), device="cpu", strategy="two-phase", time_budget=0.01, **TINY
    )
    card = finetune(config).load_card()
    assert [h["phase"] for h in card.training["history"]] == ["head"]
    assert "held the head-only epoch alone: the rest of the network never learned" in card.training["stopped"]
    # the overrun in figures that say it ("training took 0 s, past --time-budget 0.001 s" to a new user)
    said = " ".join(capsys.readouterr().err.split())
    took = card.training["training_seconds"]
    assert f"note: training took {took:.3g} s, past --time-budget 0.01 s" in said and "took 0 s" not in said


def test_a_time_budget_plans_body_epochs_by_a_body_epochs_time(image_folder, tmp_path, monkeypatch):
    """--time-budget planned the two-phase run's body epochs by the head-only epoch's time (2-5x faster): 6 s became
    7.5 s of training, 20 s became 50 s on a loaded machine. Here a body epoch is pretended endlessly slower than
    the head's: after the head epoch no body epoch fits a budget of days."""
    import edgetransfer.finetune as finetune_module

    monkeypatch.setattr(finetune_module, "BODY_EPOCH_SLOWER", 1e12)
    config = FinetuneConfig(
        data=str(image_folder), out=str(tmp_path / "r"), device="cpu", strategy="two-phase", time_budget=1e6, **TINY
    )
    card = finetune(config).load_card()
    assert [h["phase"] for h in card.training["history"]] == ["head"]
    assert card.training["stopped"].startswith("time budget")


@pytest.mark.parametrize("epochs", [3, 2])
def test_resume_with_other_epochs_follows_them(image_folder, tmp_path, capsys, epochs):
    """--resume --epochs N (a change --resume allows) kept the run's first plan: a run of 3 resumed with --epochs 2
    said 'epoch 2/3' and ended its schedule early; one of 2 resumed with --epochs 3 stopped at 2 ('time budget')."""

    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    start = {**TINY, "epochs": 5 - epochs}  # 2 -> 3 and 3 -> 2
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), device="cpu", strategy="full", **start)
    with pytest.raises(Stop):
        finetune(config, on_epoch=stop)  # interrupted after its first epoch
    capsys.readouterr()
    card = finetune(dataclasses.replace(config, resume=True, epochs=epochs)).load_card()
    assert len(card.training["history"]) == epochs and card.training["stopped"] == "epochs done"
    err = capsys.readouterr().err
    assert f"epoch {epochs}/{epochs} (body)" in err
    assert f"; stopped: all {epochs} epochs ran)" in err  # it said "epochs done" (a new user: unclear)


def test_a_resume_with_a_time_budget_keeps_one_decaying_schedule(image_folder, tmp_path, capsys):
    """A new user's run of --epochs 2, interrupted after epoch 1 and resumed with --epochs 4 --time-budget 600, ran
    epoch 2 as the last of 2 (lr 1.7e-05) and epoch 3 of a new 4-epoch plan (lr 3.8e-04): the learning rate went
    back up 22x. A budget only ever shortens the plan; one made by --epochs alone follows the --epochs given."""

    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    config = FinetuneConfig(
        data=str(image_folder), out=str(tmp_path / "r"), device="cpu", strategy="full", **{**TINY, "epochs": 2}
    )
    with pytest.raises(Stop):
        finetune(config, on_epoch=stop)
    capsys.readouterr()
    card = finetune(dataclasses.replace(config, resume=True, epochs=4, time_budget=1e6, patience=10)).load_card()
    lrs = [h["lr"] for h in card.training["history"]]
    assert len(lrs) == 4 and lrs[1] > lrs[2] > lrs[3], lrs
    err = capsys.readouterr().err
    assert "epoch 2/4 (body)" in err
    assert "never before the last" not in err  # patience 10 of 4 epochs, but a time budget may cut the plan short


def test_a_plan_lengthened_by_the_time_budget_goes_on_from_the_learning_rate_reached(
    image_folder, tmp_path, monkeypatch
):
    """A re-plan that lengthened the schedule took a decayed learning rate back up (a cosine to a later end); only
    shortening it lost budget when the first estimate was pessimistic (a reviewer's finding). Here the plan shrinks
    to 2 epochs after the first, then grows back to 4: the learning rate never rises after the warm-up."""
    from edgetransfer import finetune as module

    def planned(costs: list[float], out: str) -> list[float]:
        left = iter(costs)
        monkeypatch.setattr(module._Trainer, "_epoch_cost", lambda self, epoch, took: next(left, 1.0))
        config = FinetuneConfig(
            data=str(image_folder), out=str(tmp_path / out), device="cpu", strategy="full", time_budget=1e6,
            **{**TINY, "epochs": 4, "patience": 10, "warmup": 0.1},
        )  # fmt: skip
        return [h["lr"] for h in finetune(config).load_card().training["history"]]

    lrs = planned([1.0, 1.0, 1e9], "a")  # after epoch 1: 2 and 3 fit, 4 does not; after epoch 2: every one fits
    assert len(lrs) == 4 and lrs[1] > lrs[2] > lrs[3] > 0, lrs
    # a plan that ended (epoch 2 of 2, its learning rate down to zero) is not taken back up: it stops there
    assert len(planned([1.0, 1e9], "b")) == 2


def test_options_the_strategy_does_not_use_are_said():
    """--unfreeze with two-phase, --head-epochs with full, --body-lr-scale with linear-probe changed nothing and were
    written into the card without a word (a new user's trial)."""
    from edgetransfer.finetune_report import _unused_options

    def unused(**given):
        return _unused_options(FinetuneConfig(data="d", out="o", **given))

    assert unused(strategy="two-phase", unfreeze=2) == ["--unfreeze 2 changes nothing (it is for --strategy partial)"]
    assert unused(strategy="full", head_epochs=3)[0].startswith("--head-epochs 3 changes nothing")
    assert unused(strategy="linear-probe", body_lr_scale=0.5)[0].startswith("--body-lr-scale 0.5 changes nothing")
    assert unused(strategy="partial", unfreeze=2) == [] and unused(strategy="two-phase", head_epochs=2) == []
    assert unused(strategy="full") == []  # the defaults are never said


def test_batchnorm_statistics_follow_the_training_images_within_a_fine_tune(image_folder, tmp_path, monkeypatch):
    # EfficientNet-Lite's BatchNorm layers carry TensorFlow's momentum 0.01: after a digits fine-tune of 160 steps
    # a fifth of their running statistics were still ImageNet's (test top-1 80 %, 96 % with the images' own)
    from edgetransfer import finetune as finetune_module
    from edgetransfer.training import FINE_TUNE_BN_MOMENTUM, follow_data_quickly

    lite = backbones.build("efficientnet_lite0", 3, pretrained=False)[0]
    cumulative = torch.nn.BatchNorm2d(4, momentum=None)
    assert {m.momentum for m in lite.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}
    follow_data_quickly(torch.nn.Sequential(lite, cumulative, torch.nn.BatchNorm1d(4, momentum=0.5)))
    assert {m.momentum for m in lite.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {FINE_TUNE_BN_MOMENTUM}
    assert cumulative.momentum is None
    seen = []
    real = finetune_module.set_phase

    def spy(model, *args, **kwargs):
        seen.extend(m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "set_phase", spy)
    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), backbone="efficientnet_lite0", **TINY)
    finetune(config)
    assert seen and min(seen) >= FINE_TUNE_BN_MOMENTUM


def test_the_confusion_plot_draws_class_names_with_dollar_signs_as_written(tmp_path):
    # matplotlib read '$5_$10' as math and raised after training had finished, before the card was saved
    from edgetransfer.plots import plot_confusion

    plot_confusion([[3, 1], [0, 4]], ("$5_$10", "$x$"), tmp_path / "confusion.png")
    assert Image.open(tmp_path / "confusion.png").size[0] > 100


@pytest.mark.parametrize(
    "labels", [("astronaut photo", "café", "chelsea_the_cat", "Rakete", "coins"), tuple("abcdefgh")]
)
def test_the_confusion_plots_column_names_do_not_run_together(tmp_path, monkeypatch, labels):
    # five names like 'astronaut photo' were drawn upright (turned only past six classes) and ran into one line
    from edgetransfer import plots

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.update(fig=fig))
    n = len(labels)
    plots.plot_confusion([[int(i == j) for j in range(n)] for i in range(n)], labels, tmp_path / "c.png")
    fig = drawn["fig"]
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].get_xticklabels()]
    assert len(boxes) == n and all(a.x1 <= b.x0 + 1 for a, b in zip(boxes[:-1], boxes[1:], strict=True)), [
        (b.x0, b.x1) for b in boxes
    ]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v2", "efficientnet_lite0"])
def test_strategy_full_trains_every_weight(name):
    # MobileNetV3's classifier.0 (a Linear between the features and the head) was in neither and never trained
    net = backbones.build(name, 3, pretrained=False)[0]
    set_phase(net, "full", "body", 3)
    assert all(p.requires_grad for p in net.parameters())
    head, blocks = head_and_blocks(net)
    set_phase(net, "partial", "body", 1)  # the last body block: for MobileNetV3 the Linear before the head
    assert {id(p) for p in net.parameters() if p.requires_grad} == {
        id(p) for m in (head, blocks[-1]) for p in m.parameters()
    }


def test_the_opening_lines_batch_is_the_one_it_trains_with():
    """A batch larger than the training images trains one step of all of them: said so, naming --batch-size only
    where the user gave it, and per process under torchrun (a review found 'batch 21 ... (1024 a step in all)')."""
    from edgetransfer.finetune_report import batch_said

    assert batch_said(512, 42, 1, given=True) == "42 (all the training images; --batch-size 512)"
    assert batch_said(8, 6, 1, given=False) == "6 (all the training images)"
    assert batch_said(16, 1259, 1, given=False) == "16"
    assert batch_said(512, 42, 2, given=True) == (
        "21 (each process's share of the training images; --batch-size 512) per process (42 a step in all)"
    )
    assert batch_said(4, 88, 2, given=False) == "4 per process (8 a step in all)"


def test_near_copies_of_training_images_are_said_and_recorded(tmp_path, capsys):
    """A resized copy of a training image in test/ is said (with its pair) and recorded in the card."""
    from PIL import Image

    root = tmp_path / "data"
    for label, seed in (("a", 0), ("b", 1)):
        drawn_images(root / "train" / label, 8, seed)
        drawn_images(root / "val" / label, 2, seed + 10)
        drawn_images(root / "test" / label, 2, seed + 20)
    Image.open(root / "train" / "b" / "004.png").resize((100, 100)).save(root / "test" / "b" / "copy.jpg")
    run = finetune(FinetuneConfig(data=str(root), out=str(tmp_path / "r"), device="cpu", **{**TINY, "epochs": 1}))
    err = " ".join(capsys.readouterr().err.split())
    assert "note: 1 validation/test image(s) look like copies of training images of their class (resized, " in err
    assert (
        "validation/test ~ training: test/b/copy.jpg ~ train/b/004.png; all in the card's dataset.near_copies)" in err
    )
    near = run.load_card().dataset["near_copies"]
    assert near == {"count": 1, "pairs": ["test/b/copy.jpg ~ train/b/004.png"], "other_classes": 0, "other_pairs": []}
    # a look-alike of another class's image: this data's images may differ in details too small to see at 32x32
    # px (one scene; a new user's trial was told to remove "copies" of other classes): no copy advice then
    Image.open(root / "train" / "a" / "002.png").save(root / "val" / "b" / "from-a.jpg", quality=90)
    config = FinetuneConfig(
        data=str(root), out=str(tmp_path / "r"), device="cpu", overwrite=True, **{**TINY, "epochs": 1}
    )
    finetune(config)
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "note: 1 validation/test image(s) look nearly the same as training images of another class at 32x32 px" in err
    )
    assert "(val/b/from-a.jpg ~ train/a/002.png): this data's images differ in details too small" in err
    assert "look like copies" not in err


def test_the_card_keeps_the_full_path_of_out_too(tmp_path, monkeypatch):
    """training.config.out was the path as given ("runs/plain"), beside absolute data and weights paths, where the
    README says the card keeps the full paths (a new user's trial)."""
    from edgetransfer.finetune_report import card_config

    monkeypatch.chdir(tmp_path)
    assert card_config(FinetuneConfig(data="d", out="runs/plain"))["out"] == str(tmp_path / "runs" / "plain")


def test_resuming_on_another_folder_says_so_not_that_the_images_changed(image_folder, tmp_path, monkeypatch):
    """--resume --data OTHER said "the images in OTHER changed since the run started", of a folder the run never
    read (a new user's trial); a changed folder of its own is said as changed."""
    import shutil

    from edgetransfer.errors import UsageError

    config = FinetuneConfig(data=str(image_folder), out=str(tmp_path / "r"), device="cpu", **{**TINY, "epochs": 2})
    stopped_after_epoch(monkeypatch, config, 1)
    other = shutil.copytree(image_folder, tmp_path / "other")
    next(other.rglob("*.png")).unlink()
    with pytest.raises(UsageError, match=rf"images in {other} are not the ones the run started on \(in {image_folder}"):
        finetune(dataclasses.replace(config, data=str(other), resume=True))
    next(image_folder.rglob("*.png")).unlink()
    with pytest.raises(UsageError, match=rf"the images in {image_folder} changed since the run started"):
        finetune(dataclasses.replace(config, resume=True))


def test_what_the_data_folder_holds_is_said_in_words_that_fit_the_layout(tmp_path, capsys):
    """A new user's trial: DIR/cat/{train,test}/ was told to 'pass one group (--data DIR/cat)', its own split merged
    unsaid; images outside class folders in a split folder went unread unsaid; 'fusée', 'fusée' (one typed on
    macOS) read alike in the look-alike note."""
    from PIL import Image

    from edgetransfer.data import load_splits
    from edgetransfer.finetune import _say_data

    def images(folder, n, shade):
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (shade, 20 * i, 9)).save(folder / f"{i}.png")

    for k, name in enumerate(("cat", "dog")):
        images(tmp_path / "percls" / name / "train", 6, 90 * k)
        images(tmp_path / "percls" / name / "test", 2, 90 * k + 5)
    _say_data(load_splits(tmp_path / "percls"))
    err = " ".join(capsys.readouterr().err.split())
    assert "note: the class folders hold split folders (cat/test/, cat/train/, dog/test/, dog/train/)" in err
    assert "split again 70/15/15, so the split inside them is not kept" in err and "pass one group" not in err
    for k, name in enumerate(("fus\u00e9e", "fuse\u0301e")):
        images(tmp_path / "kaggle" / "train" / name, 8, 90 * k)
    images(tmp_path / "kaggle" / "test", 5, 200)
    _say_data(load_splits(tmp_path / "kaggle"))
    err = " ".join(capsys.readouterr().err.split())
    assert "images outside any class folder (test/: 5 images)" in err
    assert "no test images in class folders in" in err and "15% of train/ per class held out for test" in err
    assert "the classes 'fuse\\u0301e', 'fus\\xe9e' differ only in case, Unicode form or spaces at their ends" in err


@pytest.mark.parametrize("given", [None, "1"])
def test_the_launcher_gives_process_0_the_shared_cores_for_its_work_alone(monkeypatch, given):
    """--nproc-per-node on a CPU: the launcher shares the cores out (OMP_NUM_THREADS) and names them all for process
    0's work the others wait for (validation, the test split); where OMP_NUM_THREADS was given, both stay the user's."""
    import os

    import torch.distributed.run

    from edgetransfer import launch
    from edgetransfer.machine import usable_cores

    monkeypatch.delenv(ALONE_THREADS, raising=False)
    if given is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", given)
    seen = {}
    monkeypatch.setattr(
        torch.distributed.run,
        "run",
        lambda args: seen.update(omp=os.environ.get("OMP_NUM_THREADS"), alone=os.environ.get(ALONE_THREADS)),
    )
    assert launch.launch(2, ["finetune", "--data", "x"], device="cpu") == 0
    if given is None:
        assert seen == {"omp": str(launch.threads_per_process(2)), "alone": str(usable_cores())}
    else:
        assert seen == {"omp": "1", "alone": None}


def test_the_card_records_the_splits_held_out_of_train(tmp_path):
    """train/ + val/: the test split is held out of train (said on the console) and recorded in the card."""
    root = tmp_path / "data"
    for label, seed in (("a", 0), ("b", 1)):
        drawn_images(root / "train" / label, 8, seed)
        drawn_images(root / "val" / label, 2, seed + 10)
    run = finetune(FinetuneConfig(data=str(root), out=str(tmp_path / "r"), device="cpu", **{**TINY, "epochs": 1}))
    dataset = run.load_card().dataset
    assert dataset["held_out_of_train"] == ["test"] and dataset["sizes"]["test"] == 2


def test_a_kept_head_only_epoch_is_said_with_what_to_try(capsys, tmp_path):
    """Two-phase, the head's epoch kept because every epoch with the whole network learning scored lower on
    validation: unsaid, the summary read 'best val top-1 97.50% (epoch 1...)' (a new user's trial)."""
    import types

    from edgetransfer.finetune_report import say_end

    def epoch(n, phase, val):
        return {"epoch": n, "phase": phase, "val_top1": val, "images_per_s": 100.0}

    history = [epoch(1, "head", 0.975), epoch(2, "body", 0.85), epoch(3, "body", 0.90)]
    trainer = types.SimpleNamespace(state={"history": history, "best_acc": 0.975, "best_epoch": 1}, out=tmp_path)
    say_end(trainer, "epochs done", 0.95)
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "note: the epoch kept is the head's alone (epoch 1): with the whole network learning, validation top-1" in err
    )
    assert "reached 90.00% at best" in err and "--body-lr-scale 0.1, or --strategy linear-probe" in err
    trainer.state.update(best_acc=0.99, best_epoch=3)  # a body epoch kept: nothing said
    history[2]["val_top1"] = 0.99
    say_end(trainer, "epochs done", 0.95)
    assert "the head's alone" not in capsys.readouterr().err

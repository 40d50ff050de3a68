"""Domain adaptation as its own stage: adapt(run, config) -> run on a finished run."""

import dataclasses
import shutil

import pytest
from conftest import make_folder

from edgetransfer.adapt import adapt
from edgetransfer.checkpoint import load_model
from edgetransfer.errors import UsageError
from edgetransfer.finetune import FinetuneConfig, finetune
from edgetransfer.rundir import RunDir


def test_adapt_is_a_stage_on_a_finished_run(image_folder, tmp_path, capsys):
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    before = run.load_card()
    assert adapt(run, FinetuneConfig(**options)) is run and run.load_card() == before, "nothing to adapt to"
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    capsys.readouterr()
    adapted = adapt(run, FinetuneConfig(**options, adapt_bn=str(target)))  # (with --target-val it may roll back)
    # without --target-val the target-domain gain is unmeasured: said beside the source figure (a new user's trial)
    said = " ".join(capsys.readouterr().err.split())
    assert "its gain on the target domain is not measured (--target-val DIR: labelled target images)" in said, said
    card = adapted.load_card()
    assert card.training["adaptation"]["adapt_bn_images"] == 12
    assert card.artifacts["model.safetensors"]["sha256"] != before.artifacts["model.safetensors"]["sha256"]
    load_model(adapted, card)  # the new checkpoint matches the sha256 the card records
    from edgetransfer.export import ExportConfig, export
    from edgetransfer.quantize import Int8Config

    capsys.readouterr()
    export(adapted, ExportConfig(openvino=False, int8=Int8Config(mode="static", calibration_size=8, max_drop=100.0)))
    assert "was adapted to a target domain: int8 is calibrated on the source training split" in " ".join(
        capsys.readouterr().err.split()
    )  # a new user's adapted run was calibrated and checked on source images without a word
    # with --calib TARGET too: the figures and int8's check stay the source split's (said; they were not)
    calibrated = Int8Config(mode="static", calibration_dir=str(target), accuracy_aware=False, max_drop=100.0)
    export(adapted, ExportConfig(openvino=False, int8=calibrated))
    said = " ".join(capsys.readouterr().err.split())
    assert (
        "was adapted to a target domain: the top-1 figures below and int8's --max-drop check are measured on " in said
    )
    # a 100-point budget holds any drop: said as no budget (a search's trials), not as a "100-point budget"
    assert "points against fp32 (not held to a budget)" in said and "100-point" not in said
    from edgetransfer.bench import BenchConfig, bench

    capsys.readouterr()
    bench(
        adapted, BenchConfig(backends=("ort-cpu",), variants=("fp32",), min_runs=2, min_time=0, rounds=1), write=False
    )
    assert "this run's model was adapted to a target domain: its top-1 here is on the source test split" in " ".join(
        capsys.readouterr().err.split()
    )
    other = make_folder(tmp_path / "other", per_class=4, seed=8)
    next(other.iterdir()).rename(other / "zebra")  # a class the data lacks: refused
    with pytest.raises(UsageError, match=r"--target-val has classes the data lacks: \['"):
        adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(other)))
    # one lacking a class is taken (a new user's small night set): its images labelled by the data's class order
    from edgetransfer.adapt import target_images

    fewer = make_folder(tmp_path / "fewer", per_class=4, classes=3, seed=7)
    kept = sorted(p.name for p in fewer.iterdir())
    shutil.rmtree(fewer / kept[0])
    capsys.readouterr()
    _, _, judged = target_images(FinetuneConfig(**options, adapt_bn=str(target), target_val=str(fewer)), card.labels)
    labels = card.labels
    assert {labels[s.label] for s in judged} == set(kept[1:]) and all(
        labels[s.label] == s.path.parent.name for s in judged
    )
    assert f"--target-val has no images of ['{kept[0]}']" in capsys.readouterr().err


def test_the_card_s_figures_are_the_adapted_model_s_and_an_interrupted_adaptation_is_said(
    image_folder, tmp_path, monkeypatch
):
    """After adaptation every PyTorch figure of the card (val, test, confusion) is the adapted model's, with the
    figures before kept beside the record; Ctrl-C during adaptation leaves the fine-tuned model and a card that says
    it was not adapted (and --resume says what to do); --target-val alone is refused."""
    from edgetransfer import adapt as module
    from edgetransfer.checkpoint import score
    from edgetransfer.errors import RunDirError

    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    before = run.load_card().metrics["torch"]
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    card = adapt(run, FinetuneConfig(**options, adapt_bn=str(target))).load_card()
    splits = run.load_splits(card)
    model = load_model(run, card)
    assert card.metrics["torch"]["val_top1"] == score(model, splits.val, card.preprocessing, "cpu")[0]
    assert card.training["adaptation"]["source_before"] == {k: before[k] for k in ("val_top1", "test_top1")}
    with pytest.raises(UsageError, match="--target-val measures and guards domain adaptation"):
        module.target_images(FinetuneConfig(**options, target_val=str(target)), card.labels)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "adapt_to_target", interrupted)
    again = FinetuneConfig(**{**options, "out": str(tmp_path / "again")}, adapt_bn=str(target))
    with pytest.raises(KeyboardInterrupt):
        finetune(again)
    stopped = RunDir(tmp_path / "again").load_card()
    assert "not adapted" in stopped.training["adaptation"]["interrupted"]
    monkeypatch.undo()
    trained = (tmp_path / "again" / "model.safetensors").read_bytes()
    card = finetune(FinetuneConfig(**{**again.__dict__, "resume": True})).load_card()  # adapts, no fine-tune
    assert card.training["adaptation"]["adapt_bn_images"] == 12 and "interrupted" not in card.training["adaptation"]
    assert card.training["history"] == stopped.training["history"]
    assert (tmp_path / "again" / "model.safetensors").read_bytes() != trained
    with pytest.raises(RunDirError, match="finished training already"):  # adapted now: nothing to resume
        finetune(FinetuneConfig(**{**again.__dict__, "resume": True}))


def test_a_failed_adaptation_is_said_and_adapts_again_with_resume(image_folder, tmp_path, monkeypatch):
    """Self-training that diverged said 'rolled back; try a lower --pseudo-lr', but --resume then said 'finished
    training already' and only --overwrite (a whole fine-tune again) could try it: now the card says it failed and
    --resume adapts again with the new --pseudo-* options, refusing changed training options."""
    from edgetransfer import adapt as module
    from edgetransfer.errors import TrainingDiverged

    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    config = FinetuneConfig(**options, unlabeled=str(target), pseudo_threshold=0.01, seed=3)
    real = module.adapt_to_target

    def diverged(*args, **kwargs):
        raise TrainingDiverged("self-training's loss became nan in round 1, step 1; try a lower --pseudo-lr")

    monkeypatch.setattr(module, "adapt_to_target", diverged)
    with pytest.raises(TrainingDiverged, match="keeps the fine-tuned model, not adapted .* --resume adapts again"):
        finetune(config)
    monkeypatch.setattr(module, "adapt_to_target", real)
    card = RunDir(tmp_path / "run").load_card()
    assert "loss became nan" in card.training["adaptation"]["failed"] and card.complete["finetune"]
    with pytest.raises(UsageError, match=r"changed option\(s\): --lr"):
        finetune(FinetuneConfig(**{**config.__dict__, "resume": True, "lr": 0.1}))
    moved = tmp_path / "moved"  # the run's images elsewhere now (--data may change on resume)
    image_folder.rename(moved)
    # from Python with only what changes: the run's own options fill the rest (its seed 3, batch 8), not defaults
    minimal = FinetuneConfig(data=str(moved), out=str(tmp_path / "run"), resume=True, unlabeled=str(target))
    again = finetune(dataclasses.replace(minimal, pseudo_lr=1e-5, pseudo_threshold=0.01)).load_card()
    assert again.training["adaptation"]["self_training"] and "failed" not in again.training["adaptation"]
    assert (
        again.training["config"]["pseudo_lr"] == 1e-5 and again.training["adaptation"]["options"]["pseudo_lr"] == 1e-5
    )
    assert again.training["config"]["seed"] == card.training["config"]["seed"]  # the run's options, not defaults


def test_adaptation_that_makes_the_labelled_target_worse_is_rolled_back(image_folder, tmp_path, monkeypatch):
    """--target-val guards AdaBN too (a new user's run kept AdaBN at 90 % against 96.67 % source-only, with no word):
    worse on the labelled target images, the fine-tuned model is kept, and the card says so."""
    import torch

    from edgetransfer import adapt as module

    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    before = load_model(run, run.load_card()).state_dict()
    scores = iter([0.9, 0.5])  # source-only, then after AdaBN
    monkeypatch.setattr(module, "evaluate", lambda *args: next(scores))
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    labelled = make_folder(tmp_path / "labelled", per_class=4, seed=6)
    # the same images to adapt on and to judge by: refused (AdaBN was measured on the images it was taken from)
    with pytest.raises(UsageError, match=r"--target-val .*target shares 12 image\(s\) with --adapt-bn .*target \(by"):
        adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(target)))
    card = adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(labelled))).load_card()
    record = card.training["adaptation"]
    assert record["rolled_back_to_source"] is True and record["target_val_top1_adabn"] == 0.5
    # the final figure is the kept model's, not the rejected adaptation's
    assert record["target_val_top1_final"] == 0.9 and record["target_val_top1_rejected"] == 0.5
    after = load_model(run, card).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the fine-tuned weights and statistics
    # a tie on the labelled target images is no measured gain: the fine-tuned model is kept too (a new user's
    # adaptation tied on 48 night images and had lost 62 points on the day test split)
    scores = iter([0.5, 0.5])
    card = adapt(run, FinetuneConfig(**options, adapt_bn=str(target), target_val=str(labelled))).load_card()
    record = card.training["adaptation"]
    assert record["rolled_back_to_source"] is True and record["target_val_top1_rejected"] == 0.5
    after = load_model(run, card).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_adabn_gathers_statistics_without_dropout_or_stochastic_depth(tmp_path):
    """A reviewer's finding: AdaBN ran the whole network in train mode, so efficientnet_b0's stochastic depth
    dropped residual branches at random while the statistics were gathered: two runs on the same images differed
    (up to 20x in a running variance) and --seed did not make them reproducible."""
    import torch

    from edgetransfer import backbones
    from edgetransfer.adapt import adapt_bn, bn_layers
    from edgetransfer.data import default_preprocessing, list_images

    folder = make_folder(tmp_path / "target", per_class=4, classes=2)
    samples = list_images(folder)
    stats = []
    for seed in (1, 2):
        torch.manual_seed(0)
        model, _ = backbones.build("efficientnet_b0", 2, pretrained=False)
        torch.manual_seed(seed)  # only the random drops differ
        adapt_bn(model, samples, default_preprocessing(32), "cpu")
        stats.append(torch.cat([m.running_var.flatten() for m in bn_layers(model)]))
    assert torch.allclose(stats[0], stats[1], rtol=1e-4, atol=1e-6)


def test_a_card_that_fails_to_save_after_adaptation_leaves_the_run_usable(image_folder, tmp_path, monkeypatch):
    """The adapted weights replaced the fine-tuned ones before the card naming them was saved: a full disk there
    left a run every later command refused ("model.safetensors does not match the sha256")."""
    import errno

    from edgetransfer.errors import EdgeTransferError

    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    before = run.load_card()
    target = make_folder(tmp_path / "target", per_class=4, seed=5)

    def full_disk(self, card):
        raise EdgeTransferError(str(OSError(errno.ENOSPC, "No space left on device")))

    monkeypatch.setattr(RunDir, "save_card", full_disk)
    with pytest.raises(EdgeTransferError, match="No space left"):
        adapt(run, FinetuneConfig(**options, adapt_bn=str(target)))
    monkeypatch.undo()
    assert run.load_card() == before and sorted(p.name for p in run.path.iterdir() if "adapted" in p.name) == []
    load_model(run, before)  # the fine-tuned weights, as the card says


def test_self_training_is_the_same_whatever_ran_before_it(image_folder, tmp_path):
    """Self-training drew its augmentation from whatever random state the process had (a resumed run adapted to
    other weights than a straight one): seeded, two adaptations from different states give the same weights."""
    import shutil

    import torch

    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    unlabeled = make_folder(tmp_path / "unlabeled", per_class=4, seed=7)
    weights = []
    for state in (1, 2):
        copy = tmp_path / f"copy{state}"
        shutil.copytree(run.path, copy)
        torch.manual_seed(state)
        config = FinetuneConfig(**{**options, "out": str(copy)}, unlabeled=str(unlabeled), pseudo_threshold=0.0)
        adapted = adapt(RunDir(copy), config)
        card = adapted.load_card()
        assert card.training["adaptation"]["self_training"], "self-training ran"
        weights.append(load_model(adapted, card).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_adaptation_of_a_set_without_a_test_split_says_so(tmp_path, capsys):
    images = make_folder(tmp_path / "tiny", per_class=2)  # too few images to split: no test split
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    options = {"data": str(images), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options, adapt_bn=str(target)))
    card = run.load_card()
    assert not run.load_splits(card).test and card.training["adaptation"]["adapt_bn_images"] == 12
    said = " ".join(capsys.readouterr().err.split())
    assert "after adaptation: no test figure" in said and "nan%" not in said and "confusion.png" not in said
    assert card.metrics["torch"]["test_top1"] is None and "test_confusion" not in card.metrics["torch"]


def test_ctrl_c_while_the_adapted_model_is_scored_is_said_and_resumable(image_folder, tmp_path, monkeypatch, capsys):
    from edgetransfer import adapt as module

    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options))
    trained = run.file("model.safetensors").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "score", interrupted)  # after AdaBN, while the adapted model is scored
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        adapt(run, FinetuneConfig(**options, adapt_bn=str(target)))
    assert "interrupted" not in capsys.readouterr().err  # the command says it, once (it read twice, reworded)
    card = run.load_card()
    assert "interrupted" in card.training["adaptation"] and run.file("model.safetensors").read_bytes() == trained
    # export (and bench) of it say the model is not adapted (a new user exported and benched one, unwarned)
    import shutil

    from typer.testing import CliRunner

    from edgetransfer.cli import app

    copy = shutil.copytree(run.path, tmp_path / "copy")
    exported = CliRunner().invoke(app, ["export", str(copy), "--no-int8"])
    assert exported.exit_code == 0, exported.output
    assert (
        f"note: {copy} was to be adapted to its target images (--adapt-bn/--unlabeled) and was not: interrupted "
        f"(Ctrl-C): not adapted; the model is the fine-tuned one; 'edgetransfer finetune --resume --out {copy}'"
    ) in " ".join(exported.stderr.split())
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 adapts again: the others leave the run to it
    assert finetune(FinetuneConfig(**options, adapt_bn=str(target), resume=True)).load_card() == card
    monkeypatch.delenv("RANK")
    monkeypatch.undo()
    adapted = finetune(FinetuneConfig(**options, adapt_bn=str(target), resume=True)).load_card()
    assert adapted.training["adaptation"]["adapt_bn_images"] == 12


def test_a_card_from_before_paths_were_absolute_resumes(image_folder, tmp_path, monkeypatch):
    """Cards written before kept --adapt-bn as typed ('tgt'): resuming an interrupted training from the same folder
    must not read the now absolute path as a changed option."""
    import json

    from edgetransfer import finetune as module
    from edgetransfer.finetune_config import resume_options

    make_folder(tmp_path / "tgt", per_class=4, seed=5)
    monkeypatch.chdir(tmp_path)
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 2, "batch_size": 8}

    def interrupted_after_epoch_1(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(module._Trainer, "_should_stop", interrupted_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        finetune(FinetuneConfig(**options, adapt_bn="tgt"))
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    card_file = tmp_path / "run" / "card.json"
    card = json.loads(card_file.read_text())
    card["training"]["config"]["adapt_bn"] = "tgt"  # as an older version wrote it
    card_file.write_text(json.dumps(card))
    adapted = finetune(FinetuneConfig(**{**resume_options(tmp_path / "run"), "resume": True})).load_card()
    assert [h["epoch"] for h in adapted.training["history"]] == [1, 2]
    assert adapted.training["adaptation"]["adapt_bn_images"] == 12


def test_a_run_stopped_between_training_and_adaptation_adapts_with_resume(image_folder, tmp_path, monkeypatch, capsys):
    """Ctrl-C after training's card was saved and before adaptation began: the card says training finished and
    nothing of adaptation; --resume said 'finished training already' (only --overwrite, a new fine-tune, helped)."""
    from edgetransfer import finetune as module

    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "adapt", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(FinetuneConfig(**options, adapt_bn=str(target)))
    monkeypatch.undo()
    card = RunDir(tmp_path / "run").load_card()
    assert card.complete["finetune"] and not card.training.get("adaptation")
    from edgetransfer.cli.finetune import say_interrupted

    say_interrupted(str(tmp_path / "run"), 0.0, resume=False)  # what the command says then: true, and what to do
    assert "keeps the fine-tuned model, not adapted (its card says so); the same command with --resume adapts it" in (
        capsys.readouterr().err
    )
    capsys.readouterr()
    adapted = finetune(FinetuneConfig(**{**options, "epochs": 6}, adapt_bn=str(target), resume=True))
    assert "note: --epochs not used: training has finished" in capsys.readouterr().err
    assert adapted.load_card().training["adaptation"]["adapt_bn_images"] == 12
    assert [h["epoch"] for h in adapted.load_card().training["history"]] == [1]
    assert adapted.file("confusion.png").is_file() and not adapted.file("confusion.adapted.png").exists()


def test_target_folders_that_hold_the_source_images_are_refused(image_folder, tmp_path, monkeypatch, capsys):
    """--target-val given the training folder judged AdaBN on source images and rolled back an adaptation that had
    lifted target top-1 from 71 % to 96 %; --adapt-bn given it adapted on the source's own test images and reported
    their top-1 as held out (a new user's trial). Any target folder holding an image of --data is refused."""
    import shutil

    from edgetransfer.adapt import target_images
    from edgetransfer.data import load_splits
    from edgetransfer.errors import DataError

    source = load_splits(image_folder)
    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    base = {"data": str(image_folder), "out": str(tmp_path / "o")}
    assert len(target_images(FinetuneConfig(**base, adapt_bn=str(target)), source.labels, source)[0]) == 12
    said = " ".join(capsys.readouterr().err.split())  # class folders read unlabelled: said (a new user's trial)
    assert f"note: --adapt-bn {target} holds class folders (class0, class1, class2): their images are read" in said
    with monkeypatch.context() as patched:  # no adaptation: the source is not hashed for it (every rank, --resume)
        patched.setattr("edgetransfer.data.file_sha256", lambda path: pytest.fail(f"hashed {path}"))
        assert target_images(FinetuneConfig(**base), source.labels, source) == ((), (), ())
    mixed = shutil.copytree(target, tmp_path / "mixed")
    shutil.copy(source.test[0].path, mixed / "class0" / "copied.png")  # one of the source's test images, renamed
    for options, option in (
        ({"adapt_bn": str(image_folder)}, "--adapt-bn"),
        ({"unlabeled": str(mixed)}, "--unlabeled"),
        ({"adapt_bn": str(target), "target_val": str(image_folder)}, "--target-val"),
    ):
        with pytest.raises(UsageError, match=rf"^{option} .* shares \d+ image\(s\) with --data .* \(by content\)"):
            target_images(FinetuneConfig(**base, **options), source.labels, source)
    high = make_folder(tmp_path / "lab" / "set", per_class=2, seed=9).parent  # one level too high: its fix names
    with pytest.raises(DataError, match=rf"pass --target-val {high / 'set'}\)$"):  # --target-val, not --data
        target_images(FinetuneConfig(**base, adapt_bn=str(target), target_val=str(high)), source.labels, source)
    missing = FinetuneConfig(**base, adapt_bn=str(target), target_val=str(tmp_path / "nosuch"))
    with pytest.raises(DataError, match="^--target-val: "):  # it read "data folder not found", as if --data were wrong
        target_images(missing, source.labels, source)


def test_bench_on_the_adaptations_own_images_says_so(image_folder, tmp_path, capsys):
    """bench --data given the run's own --target-val folder read 100 % with no word (a new user's trial): those
    images chose what the adaptation kept. Said, as for the run's training and validation images."""
    from edgetransfer.bench.config import BenchConfig
    from edgetransfer.bench.runner import _labelled

    target = make_folder(tmp_path / "target", per_class=4, seed=5)
    labelled = make_folder(tmp_path / "labelled", per_class=4, seed=6)
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "size": 32, "epochs": 1, "batch_size": 8}
    run = finetune(FinetuneConfig(**options, adapt_bn=str(target), target_val=str(labelled)))
    card = run.load_card()
    capsys.readouterr()
    samples, source = _labelled(run, card, BenchConfig(data=str(labelled)))
    said = " ".join(capsys.readouterr().err.split())
    assert f"of its 12 images, 12 the adaptation chose by (--target-val {labelled})" in said, said
    assert "not a held-out figure" in said and source.endswith(f"12 the adaptation chose by (--target-val {labelled}))")
    fresh = make_folder(tmp_path / "fresh", per_class=4, seed=7)  # other target images: nothing to say
    _labelled(run, card, BenchConfig(data=str(fresh)))
    assert "adaptation" not in capsys.readouterr().err
    # the adaptation's folders are listed and hashed, not decoded: a bad file there is not bench's to report
    (target / "class0" / "notes.png").write_text("not an image")
    _labelled(run, card, BenchConfig(data=str(labelled)))
    said = " ".join(capsys.readouterr().err.split())
    assert "the adaptation chose by" in said and "bad file" not in said and "notes.png" not in said, said
    (target / "class0" / "notes.png").unlink()
    # kept, the model adapted on the --adapt-bn images; rolled back, it never saw them (--target-val chose that);
    # failed, nothing of the adaptation is in it (this run's adaptation was rolled back: each case written here)
    record = card.training["adaptation"]
    for changed, expect in (
        ({"rolled_back_to_source": False}, ("chose by", "adapted on")),
        ({"rolled_back_to_source": True}, ("chose by",)),
        ({"failed": "boom"}, ()),
    ):
        run.save_card(dataclasses.replace(card, training={**card.training, "adaptation": {**record, **changed}}))
        for folder, what in ((target, "adapted on"), (labelled, "chose by")):
            _labelled(run, run.load_card(), BenchConfig(data=str(folder)))
            said = " ".join(capsys.readouterr().err.split())
            assert (f"the adaptation {what}" in said) == (what in expect), (changed, what, said)


def test_skip_bad_passes_over_the_adaptation_folders_bad_files(image_folder, tmp_path, capsys):
    """--skip-bad was ignored for --unlabeled (a new user's finding): its bad files stopped the run, flag or not."""
    from edgetransfer.adapt import target_images
    from edgetransfer.errors import DataError

    unlabeled = make_folder(tmp_path / "unlabeled", per_class=4, seed=5)
    (unlabeled / "class0" / "broken.png").write_bytes(b"not a png")
    options = {"data": str(image_folder), "out": str(tmp_path / "run"), "unlabeled": str(unlabeled)}
    with pytest.raises(DataError, match="--skip-bad"):
        target_images(FinetuneConfig(**options), ("class0", "class1", "class2"))
    capsys.readouterr()
    _, kept, _ = target_images(FinetuneConfig(**options, skip_bad=True), ("class0", "class1", "class2"))
    assert len(kept) == 12 and "skipped 1 bad file(s)" in capsys.readouterr().err

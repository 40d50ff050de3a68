"""Export a fine-tuned run as a chain of passes (edgetransfer/passes/): ONNX checked against PyTorch, optional fp16,
int8 (ONNX Runtime QDQ and OpenVINO via NNCF, accuracy-aware), OpenVINO IR. Every file is made in a staging
folder; the final card (with the resolved config and the passes that ran) goes inside each, and the files move
into the run together, or nothing does."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgetransfer import console
from edgetransfer.card import OPENVINO_DECODE_PATH, OPENVINO_RT_INFO_PATH, decode_json, embed_in_onnx, for_model_files
from edgetransfer.data import Splits
from edgetransfer.errors import ExportError, RunDirError, UsageError
from edgetransfer.passes import INT8_METHODS, ExportContext, Pass
from edgetransfer.passes.base import PARITY_IMAGES
from edgetransfer.passes.onnx import OnnxFp16, OnnxFp32, OnnxFp32Config
from edgetransfer.passes.openvino import OpenVinoConfig, OpenVinoInt8, OpenVinoIR
from edgetransfer.passes.tensorrt import TensorRTCalibration, require_tensorrt
from edgetransfer.quantize import Int8Config, coarse_budget_note
from edgetransfer.rundir import (
    MEASURED,
    ONNX_FP16,
    ONNX_FP32,
    ONNX_INT8,
    OPENVINO_DIR,
    OV_FP16,
    OV_FP32,
    OV_INT8,
    TENSORRT_DIR,
    RunDir,
    interrupts_deferred,
    sha256_file,
    write_errors_said,
)
from edgetransfer.telemetry import decline_without_consent

DEFAULT_OPSET = 17  # written by torch's exporter, run by ONNX Runtime and OpenVINO alike
MIN_OPSET = 13
EXPORT_METRICS = ("onnx_fp32", "onnx_fp16", "onnx_int8", "openvino_fp32", "openvino_fp16", "openvino_int8")
EXPORTED = (ONNX_FP32, ONNX_FP16, ONNX_INT8, OV_FP32, OV_FP16, OV_INT8, TENSORRT_DIR)


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how strictly to check it."""

    opset: int = DEFAULT_OPSET
    atol: float = 1e-3  # max |logit difference| allowed between PyTorch and the fp32 export
    simplify: bool = True  # onnxslim; skipped (and said) where it would break parity
    fp16: bool = False
    openvino: bool = True
    int8: Int8Config = Int8Config()
    tensorrt: bool = False
    data: str | None = None  # the labelled folder; default: the one recorded in the card

    def validate(self) -> None:
        import onnx

        newest = min(onnx.defs.onnx_opset_version(), _torch_max_opset())
        if not MIN_OPSET <= self.opset <= newest:
            raise UsageError(f"--opset {self.opset} is not supported here: choose {MIN_OPSET}..{newest}")
        if not 0 < self.atol < 1e3:  # NaN fails too: a NaN tolerance would pass any difference
            raise UsageError(f"--atol must be a positive, finite tolerance, not {self.atol}")
        self.int8.validate()


def _torch_max_opset() -> int:
    """The newest opset torch's TorchScript exporter (the one export uses) supports: past it, torch refuses after the
    checkpoint is loaded (24+) or writes with a warning that it is not supported (21-23 with torch 2.14)."""
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - export needs torch; this only keeps validate() importable without
        return 10**6
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 10**6)))


def plan(config: ExportConfig) -> list[Pass]:
    """The passes an export runs, in order, each with its own frozen config."""
    passes: list[Pass] = [OnnxFp32(OnnxFp32Config(config.opset, config.atol, config.simplify))]
    if config.fp16:
        passes.append(OnnxFp16())
    if config.int8.mode != "none":
        passes.append(INT8_METHODS.get(config.int8.mode)(config.int8))
    if config.openvino:
        passes.append(OpenVinoIR(OpenVinoConfig(config.atol, config.fp16)))
        if config.int8.mode in ("static", "auto"):  # auto: a QAT model's IR is converted from its QDQ file
            passes.append(OpenVinoInt8(config.int8))
        elif config.int8.mode == "qat":  # OpenVINO runs the QAT model's QDQ file in int8 as it is
            passes.append(OpenVinoInt8(dataclasses.replace(config.int8, openvino="qdq")))
    if config.tensorrt:
        passes.append(TensorRTCalibration())
    return passes


def run_passes(ctx: ExportContext, passes: list[Pass]) -> None:
    """Run ``passes`` in order on ``ctx``; each one's artifacts are there for the next."""
    said, bits_said = False, False
    int8 = ctx.config.int8
    for step in passes:
        missing = [name for name in step.needs if name not in ctx.artifacts]
        if missing:
            raise ExportError(f"export pass {step.name} needs {', '.join(missing)}, which no earlier pass made")
        if not bits_said and (step.calibrates or type(step) in INT8_METHODS.values()):
            # before the first int8 model (the checkpoint is read and checked by now): the bits were in the card
            # only, and a device's int8 kernels depend on them
            bits_said = True
            console.err.print(f"int8 weights: {int8.weight_bits()} bits ({int8.weights_note()})")
            warning = int8.weights_warning()
            if warning:
                console.err.print(f"[yellow]{warning}[/]")
        if step.calibrates and not said:  # before the first int8 model is judged (the checkpoint is read by now)
            said = True
            note = coarse_budget_note(len(ctx.val), ctx.config.int8.max_drop)
            if note:
                console.err.print(f"[yellow]{note}[/]")
        for artifact in step.run(ctx):
            ctx.artifacts[artifact.file] = artifact


def commit(ctx: ExportContext, passes: list[Pass]) -> RunDir:
    """Embed the final card in every file, then rename the files into the run and save card.json last."""
    import onnx

    run, made = ctx.run, ctx.artifacts
    records = {name: artifact.record for name, artifact in made.items()}
    card = dataclasses.replace(
        ctx.card,
        metrics={k: v for k, v in ctx.card.metrics.items() if k not in EXPORT_METRICS} | ctx.metrics,
        artifacts={k: v for k, v in ctx.card.artifacts.items() if k not in EXPORTED} | records,
        export={
            "config": dataclasses.asdict(ctx.config),
            "passes": [step.describe() for step in passes],
            **({"calibration_skipped_bad_files": list(ctx.calibration_skipped)} if ctx.calibration_skipped else {}),
        },
        complete={**ctx.card.complete, "export": True},
    )
    inside = for_model_files(card)  # the files carry the card without the training machine's paths
    for name in (ONNX_FP32, ONNX_FP16, ONNX_INT8):
        if name in made:
            proto = onnx.load(str(ctx.path(name)))
            embed_in_onnx(proto, inside)
            onnx.save(proto, str(ctx.path(name)))
    irs = {name: artifact for name, artifact in made.items() if artifact.ov_model is not None}
    if irs:
        import openvino as ov

        (ctx.stage / OPENVINO_DIR).mkdir(exist_ok=True)
        for name, artifact in irs.items():
            artifact.ov_model.set_rt_info(inside.to_json(), list(OPENVINO_RT_INFO_PATH))
            artifact.ov_model.set_rt_info(decode_json(), list(OPENVINO_DECODE_PATH))
            try:
                ov.save_model(artifact.ov_model, str(ctx.path(name)), compress_to_fp16=artifact.compress_to_fp16)
            except RuntimeError as exc:  # a full disk is OpenVINO's RuntimeError ("Can't open bin file"), no OSError
                said = [line.strip() for line in str(exc).splitlines() if line.strip()]
                if not any(word in str(exc) for word in ("Can't open", "Couldn't create", "write")):
                    raise  # not the disk: a bug, with its traceback
                raise RunDirError(
                    f"cannot write {run.path / name}: OpenVINO could not save it ({said[-1].split(': ')[0]}; is the "
                    "disk full?); what was there before is unchanged"
                ) from None
    for name, record in records.items():
        path = ctx.path(name)
        if path.is_file():
            record.update(sha256=sha256_file(path), bytes=_size(path))
            if name.endswith(".xml"):  # the IR's weights: swapping them alone must be noticed too
                record["bin_sha256"] = sha256_file(path.with_suffix(".bin"))
    (run.path / OPENVINO_DIR).mkdir(exist_ok=True)
    # the card is written into the stage first (a full disk stops here, nothing of the run touched); the swap then
    # moves every new file in and the card last, renames only, with a Ctrl-C or SIGTERM held until the clean-up
    # below is done too (it would leave new models beside the old card, or old files the new card does not list)
    staged_card = ctx.stage / "card.json.new"
    staged_card.write_text(dataclasses.replace(card, artifacts={**card.artifacts, **records}).to_json() + "\n")
    with interrupts_deferred():
        earlier: list[tuple[Path, Path]] = []  # (a run's file or folder, its earlier version kept in the stage)
        made: list[Path] = []  # the run's files that did not exist before
        try:
            for name in records:
                for rel in _files_of(name):
                    target, aside = run.path / rel, ctx.stage / f"earlier-{len(earlier)}"
                    if target.is_dir():  # a folder artifact (tensorrt/): the old one aside, removed with the stage
                        os.replace(target, aside)
                        earlier.append((target, aside))
                        os.replace(ctx.path(rel), target)
                    elif target.exists():  # a copy kept (a hard link): the file itself is replaced in one rename,
                        _keep_copy(target, aside)  # never missing (an .xml never points at a missing .bin)
                        os.replace(ctx.path(rel), target)
                        earlier.append((target, aside))  # (replaced: to be put back)
                    else:
                        os.replace(ctx.path(rel), target)
                        made.append(target)
            os.replace(staged_card, run.file("card.json"))
        except OSError as exc:  # a rename refused (a root-owned file, an immutable openvino/ in the run)
            kept = _put_back(earlier, made, ctx.stage)
            raise RunDirError(
                f"cannot write {run.path}: {exc.strerror} while moving the new files in; "
                + (
                    "the earlier export's files are back as they were: fix that and export again"
                    if kept is None
                    else "it now holds some of them beside the earlier card, and putting the earlier ones back failed "
                    f"too (they are kept in {kept}): fix that and export again"
                )
            ) from None
        _clean_up_earlier(run, records)
    return run


def _keep_copy(path: Path, copy: Path) -> None:
    try:
        os.link(path, copy)
    except OSError:  # a filesystem without hard links
        shutil.copy2(path, copy)


def _put_back(earlier: list[tuple[Path, Path]], made: list[Path], stage: Path) -> Path | None:
    """Return the run to the earlier export: its kept files and folders back, the new files that had none removed
    (a run half of one export and half of another was lost: its models no longer matched the card, a new user's
    trial). None when all went back; else where the earlier files are kept (the stage, renamed so that nothing
    removes it)."""
    failed = False
    for target, aside in reversed(earlier):
        try:
            if target.is_dir() and aside.is_dir():
                shutil.rmtree(target)
            os.replace(aside, target)
        except OSError:
            failed = True
    for target in made:
        try:
            target.unlink(missing_ok=True)
        except OSError:
            failed = True
    if not failed:
        return None
    kept = stage.with_name(".export-earlier-files")
    try:
        shutil.rmtree(kept, ignore_errors=True)
        os.replace(stage, kept)
    except OSError:
        return stage
    return kept


def _clean_up_earlier(run: RunDir, records: dict) -> None:
    """Remove what the earlier export made and this one did not (it would contradict the card), and the bench
    results that measured the models replaced; one that cannot be removed is said, the export stands."""
    gone = [old for old in EXPORTED if old not in records and (run.path / old).exists()]
    stale = [name for name in MEASURED if (run.path / name).exists()]
    failed = {name: _remove(run.path / name) for name in gone + stale}
    ir_dir = run.path / OPENVINO_DIR
    if ir_dir.is_dir() and not any(ir_dir.iterdir()):  # --no-openvino: no empty folder left behind
        ir_dir.rmdir()
    removed = [name for name, why in failed.items() if not why]
    kept = [f"{name} ({why})" for name, why in failed.items() if why]
    if removed:  # a re-export with fewer outputs (--no-int8) must not lose the earlier files unsaid
        console.err.print(
            f"removed {', '.join(removed)}: {'they' if len(removed) > 1 else 'it'} belonged to the earlier export and "
            f"would not match this one"
        )
    if kept:
        console.err.print(
            f"[yellow]warning: could not remove {', '.join(kept)} from {run.path}: they belong to the earlier export "
            "and do not match this one (the card does not list them); remove them by hand[/]"
        )


def _files_of(name: str) -> list[str]:
    """An artifact's files, an IR's .bin before its .xml so an .xml never points at a missing .bin."""
    return [str(Path(name).with_suffix(".bin")), name] if name.endswith(".xml") else [name]


def _size(path: Path) -> int:
    return sum((path.parent / Path(rel).name).stat().st_size for rel in _files_of(path.name))


def _remove(path: Path) -> str:
    """Remove an earlier export's file (an IR with its .bin) or folder; what went wrong, or "" when it is gone."""
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            for rel in _files_of(path.name):
                (path.parent / rel).unlink(missing_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _needs_the_images(config: ExportConfig, passes) -> tuple[list[str], list[str]]:
    """Why this export reads the run's images, each cause said, and the options that leave those steps out."""
    int8, why, without = config.int8, [], []
    if int8.mode != "none":
        if int8.mode in ("static", "auto") and not int8.calibration_dir:
            why.append("int8 is calibrated on its training images")
        if int8.mode in ("qat", "auto"):
            why.append(
                "QAT fine-tunes on its training images"
                if int8.mode == "qat"
                else "int8's auto may fine-tune QAT on its training images"
            )
        why.append("int8's accuracy is checked on its validation images")
        without.append("--no-int8")
    if any(step.name == "tensorrt" for step in passes) and not int8.calibration_dir:
        why.append("the TensorRT calibration table is made from its training images (or --calib DIR)")
        without.append("no --tensorrt")
    return why, without


def export(run: RunDir, config: ExportConfig = ExportConfig(), *, by_search: bool = False) -> RunDir:
    """Write model.onnx (+ fp16, int8, OpenVINO IR) into ``run``; each file is checked, then moved in together.
    ``by_search``: the search exports its own trial (the note to a user exporting a trial again is not for it)."""
    config.validate()
    decline_without_consent()  # NNCF and the OpenVINO converter report usage unless told no (edgetransfer.telemetry)
    with run.lock("export"):
        for stale in run.path.glob(".export.*.partial"):  # left by an export that was killed
            shutil.rmtree(stale, ignore_errors=True)
        with write_errors_said(run.path):
            stage = Path(tempfile.mkdtemp(prefix=".export.", suffix=".partial", dir=run.path))
        return _export_staged(run, config, stage, by_search=by_search)


def _export_staged(run: RunDir, config: ExportConfig, stage: Path, *, by_search: bool = False) -> RunDir:
    try:
        # a full disk mid-export is one line; the run's own files are not touched until the commit
        with write_errors_said(run.path):
            passes = plan(config)
            if config.tensorrt:
                require_tensorrt()  # before any slow work
            card = run.load_card()
            before = ((card.export or {}).get("config") or {}).get("int8", {}).get("mode")
            if before not in (None, "auto", "none", config.int8.mode) and config.int8.mode != "none":
                console.err.print(  # a search trial's QAT run exported again with the defaults became static int8
                    f"[yellow]note: the previous export of {run.path} made its int8 model with --int8-method {before}; "
                    f"this one uses {config.int8.mode}: give --int8-method {before} to make the same kind again[/]"
                )
            search = run.path.resolve().parent.parent
            if not by_search and run.path.resolve().parent.name == "trials" and (search / "search.json").is_file():
                console.err.print(  # its figures there are the earlier export's (a new user's finding)
                    f"[yellow]note: {run.path} is a trial of the search in {search}: its search.json and search.html "
                    "keep the figures measured before this export (copy the trial's folder to export it apart)[/]"
                )
            root = run.data_root(card)
            gone = config.data is None and run.data_gone(card)  # trained on another machine
            adaptation = (card.training or {}).get("adaptation") or {}
            adapted = adaptation.get("adapt_bn_images") and not adaptation.get("rolled_back_to_source")
            # with --calib too: the accuracy figures and int8's check are the source split's (without the images no
            # top-1 is measured: said below)
            if adapted and not gone:
                calibrated = (
                    ""
                    if config.int8.mode in ("none", "dynamic") or config.int8.calibration_dir
                    else "int8 is calibrated on the source training split (--calib TARGET_DIR: on target images); "
                )
                console.err.print(
                    f"[yellow]note: {run.path} was adapted to a target domain: {calibrated}the top-1 figures below "
                    "and int8's --max-drop check are measured on source images, where an adapted model can score "
                    "far lower; 'edgetransfer bench RUN --data DIR' measures on labelled target images[/]"
                )
            # the training images are read to calibrate int8 (and to fine-tune QAT); without int8 a training image
            # culled since is no reason to refuse (the parity check's images come from the validation split)
            needs_train = config.int8.mode != "none" or any(step.calibrates for step in passes)
            if gone:
                why, without = _needs_the_images(config, passes)
                if why:
                    raise UsageError(
                        f"the run's data folder {root} is gone; pass --data DIR (the folder it was trained on: "
                        f"{'; '.join(why)}), or {' and '.join(without)} for the fp32 models alone"
                    )
                console.err.print(
                    f"[yellow]note: the run's data folder {root} is not here: the models are checked against PyTorch "
                    f"on {PARITY_IMAGES} random inputs instead of its validation images, and no top-1 is measured; "
                    "--data DIR (the folder it was trained on) for both[/]"
                )
                splits = Splits(Path(root), tuple(card.labels), (), (), (), seed=0, layout="gone")
            else:
                splits = run.load_splits(card, config.data, only=None if needs_train else ("val", "test"))
                if not needs_train and not splits.val:
                    splits = run.load_splits(card, config.data)
            ctx = ExportContext(run, card, splits, stage, config)
            if any(step.calibrates for step in passes):
                ctx.calibration  # noqa: B018 - a bad --calib folder is said before any slow work
            run_passes(ctx, passes)
            return commit(ctx, passes)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

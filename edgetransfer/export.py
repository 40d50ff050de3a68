"""Export a fine-tuned run: ONNX (checked against PyTorch), int8 ONNX, OpenVINO IR; the card inside each file."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgetransfer import console
from edgetransfer.backends.base import LoadOptions
from edgetransfer.backends.openvino import compile_model
from edgetransfer.backends.ort import _OrtSession, ort_session
from edgetransfer.card import OPENVINO_RT_INFO_PATH, ModelCard, embed_in_onnx
from edgetransfer.data import Splits, load_splits
from edgetransfer.errors import ExportError, RunDirError, UsageError
from edgetransfer.evaluation import parity, top1
from edgetransfer.finetune import load_model
from edgetransfer.quantize import Int8Config, quantize_onnx
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8, OPENVINO_DIR, OV_FP32, OV_INT8, RunDir, sha256_file

DEFAULT_OPSET = 17  # written by torch's exporter, run by ONNX Runtime and OpenVINO alike
PARITY_IMAGES = 64


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how strictly to check it."""

    opset: int = DEFAULT_OPSET
    atol: float = 1e-3  # max |logit difference| allowed between PyTorch and the export
    int8: bool = True
    int8_config: Int8Config = Int8Config()
    openvino: bool = True
    data: str | None = None  # the labelled folder; default: the one recorded in the card


class _TorchReference:
    precision = "fp32"

    def __init__(self, model) -> None:
        self.model = model

    def run(self, images):
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(images)).numpy()


def _splits(card: ModelCard, data: str | None) -> Splits:
    folder = data or card.dataset.get("path")
    if not folder or not Path(folder).is_dir():
        raise RunDirError(f"the run's data folder {folder} is gone; pass --data DIR (the folder it was trained on)")
    splits = load_splits(folder, seed=card.dataset.get("seed", 0))
    if tuple(splits.labels) != tuple(card.labels):
        raise UsageError(f"{folder} has classes {list(splits.labels)}, the run was trained on {list(card.labels)}")
    return splits


def _export_onnx(model, card: ModelCard, path: Path, opset: int) -> None:
    import onnx
    import torch

    size = card.preprocessing.crop
    dummy = torch.zeros(1, 3, size, size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
    except (RuntimeError, ValueError, onnx.checker.ValidationError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ExportError(f"ONNX export at opset {opset} failed: {str(exc).splitlines()[0]}") from None


def _check_parity(name: str, figures: dict, atol: float) -> None:
    console.err.print(
        f"{name}: max |logit diff| {figures['max_abs_diff']:.2e} vs PyTorch, "
        f"top-1 agreement {figures['top1_agreement']:.2%} on {figures['images']} val images"
    )
    if figures["max_abs_diff"] > atol:
        raise ExportError(
            f"{name} disagrees with PyTorch: max |logit diff| {figures['max_abs_diff']:.3g} > --atol {atol:g}"
        )


def export(run: RunDir, config: ExportConfig = ExportConfig()) -> RunDir:
    """Write model.onnx (+ model.int8.onnx, openvino/*.xml) into ``run``; each file is checked, then moved in."""
    import onnx

    if config.atol <= 0:
        raise UsageError("--atol must be positive")
    card = run.load_card()
    if config.opset > onnx.defs.onnx_opset_version() or config.opset < 13:
        raise UsageError(f"--opset {config.opset} is not supported: choose 13..{onnx.defs.onnx_opset_version()}")
    config.int8_config.validate()
    splits = _splits(card, config.data)
    check_set = splits.val[:PARITY_IMAGES] or splits.train[:PARITY_IMAGES]
    model = load_model(run, card)
    reference = _TorchReference(model)
    pre = card.preprocessing
    metrics: dict[str, dict] = {}
    artifacts: dict[str, dict] = {}

    def measure(name: str, session) -> None:
        metrics[name] = {
            "val_top1": top1(session, splits.val, pre),
            "test_top1": top1(session, splits.test, pre),
            "precision": session.precision,
        }
        console.err.print(f"{name}: test top-1 {metrics[name]['test_top1']:.2%} (runs in {session.precision})")

    stage = Path(tempfile.mkdtemp(prefix=".export.", suffix=".partial", dir=run.path))
    try:
        with console.err.status("exporting to ONNX..."):
            _export_onnx(model, card, stage / ONNX_FP32, config.opset)
            fp32 = _OrtSession(ort_session(stage / ONNX_FP32), "fp32")
            figures = parity(reference, fp32, check_set, pre)
        _check_parity("ONNX fp32", figures, config.atol)
        measure("onnx_fp32", fp32)
        artifacts[ONNX_FP32] = {"file": ONNX_FP32, "opset": config.opset, "parity": figures}
        if config.int8:
            with console.err.status("quantizing to int8 (ONNX Runtime static, QDQ per-channel)..."):
                settings = quantize_onnx(stage / ONNX_FP32, stage / ONNX_INT8, splits.train, pre, config.int8_config)
                int8 = _OrtSession(ort_session(stage / ONNX_INT8), "int8")
            measure("onnx_int8", int8)
            drop = metrics["onnx_fp32"]["test_top1"] - metrics["onnx_int8"]["test_top1"]
            settings["test_top1_drop_points"] = round(100 * drop, 3)
            artifacts[ONNX_INT8] = {"file": ONNX_INT8, "quantization": settings}
            if drop > 0.005:
                console.err.print(f"[yellow]note: int8 loses {100 * drop:.2f} points of test top-1 against fp32[/]")
        ov_models = {}
        if config.openvino:
            import openvino as ov

            with console.err.status("converting to OpenVINO IR..."):
                ov_models[OV_FP32] = ov.convert_model(str(stage / ONNX_FP32))
                ov_check = compile_model(ov_models[OV_FP32], LoadOptions(precision="fp32"))
                figures = parity(reference, ov_check, check_set, pre)
            _check_parity("OpenVINO fp32 (f32 precision hint)", figures, config.atol)
            measure("openvino_fp32", compile_model(ov_models[OV_FP32], LoadOptions()))
            artifacts[OV_FP32] = {"file": OV_FP32, "parity": figures, "converted_from": ONNX_FP32}
            if config.int8:
                ov_models[OV_INT8] = ov.convert_model(str(stage / ONNX_INT8))
                measure("openvino_int8", compile_model(ov_models[OV_INT8], LoadOptions(), int8=True))
                artifacts[OV_INT8] = {"file": OV_INT8, "converted_from": ONNX_INT8}
        card = dataclasses.replace(
            card,
            metrics={**card.metrics, **metrics},
            artifacts={k: v for k, v in card.artifacts.items() if k not in _EXPORTED} | artifacts,
            complete={**card.complete, "export": True},
        )
        _embed_and_save(card, stage, ov_models)
        for name in artifacts:
            artifacts[name].update(sha256=sha256_file(stage / name), bytes=(stage / name).stat().st_size)
        _move_into_place(stage, run, list(artifacts))
        run.save_card(dataclasses.replace(card, artifacts={**card.artifacts, **artifacts}))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return run


_EXPORTED = (ONNX_FP32, ONNX_INT8, OV_FP32, OV_INT8)


def _embed_and_save(card: ModelCard, stage: Path, ov_models: dict) -> None:
    import onnx

    for name in (ONNX_FP32, ONNX_INT8):
        if (stage / name).is_file():
            proto = onnx.load(str(stage / name))
            embed_in_onnx(proto, card)
            onnx.save(proto, str(stage / name))
    if ov_models:
        import openvino as ov

        for name, model in ov_models.items():
            model.set_rt_info(card.to_json(), list(OPENVINO_RT_INFO_PATH))
            (stage / name).parent.mkdir(exist_ok=True)
            ov.save_model(model, str(stage / name), compress_to_fp16=False)


def _move_into_place(stage: Path, run: RunDir, names: list[str]) -> None:
    """Rename each staged file (and an IR's .bin) onto its final path in the run directory."""
    (run.path / OPENVINO_DIR).mkdir(exist_ok=True)
    for name in names:
        files = [name] + ([str(Path(name).with_suffix(".bin"))] if name.endswith(".xml") else [])
        for rel in reversed(files):  # an IR's .bin first, so an .xml never points at a missing .bin
            os.replace(stage / rel, run.path / rel)

"""Export a fine-tuned run: ONNX checked against PyTorch, optional fp16, int8 (ONNX Runtime QDQ and OpenVINO via
NNCF, accuracy-aware), OpenVINO IR; the model card inside every file. Nothing is written unless all succeed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer import console
from edgetransfer.backends.base import LoadOptions
from edgetransfer.backends.openvino import compile_model
from edgetransfer.backends.ort import _OrtSession, ort_session
from edgetransfer.backends.torch_backend import _TorchSession
from edgetransfer.card import OPENVINO_RT_INFO_PATH, embed_in_onnx
from edgetransfer.checkpoint import load_model
from edgetransfer.data import Sample, Splits, list_images
from edgetransfer.errors import BackendUnavailableError, ExportError, UsageError
from edgetransfer.evaluation import DYNAMIC_NOTE, SPEEDUP_WORTH_IT, latency_ratio, parity, top1
from edgetransfer.onnx_convert import simplify, to_fp16, torch_to_onnx
from edgetransfer.quantize import (
    Int8Config,
    calibration_subset,
    int8_budget,
    ort_settings,
    prepare,
    quantize_accuracy_aware,
    quantize_dynamic,
    quantize_static,
)
from edgetransfer.rundir import (
    BENCH_REPORTS,
    ONNX_FP16,
    ONNX_FP32,
    ONNX_INT8,
    OPENVINO_DIR,
    OV_FP16,
    OV_FP32,
    OV_INT8,
    TENSORRT_DIR,
    RunDir,
    sha256_file,
    write_errors_said,
)

DEFAULT_OPSET = 17  # written by torch's exporter, run by ONNX Runtime and OpenVINO alike
MIN_OPSET = 13
PARITY_IMAGES = 64
FP16_ATOL = 0.05  # fp16 keeps ~3 significant digits; logits of a few units move by ~1e-2
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

        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= self.opset <= newest:
            raise UsageError(f"--opset {self.opset} is not supported here: choose {MIN_OPSET}..{newest}")
        if not 0 < self.atol < 1e3:  # NaN fails too: a NaN tolerance would pass any difference
            raise UsageError(f"--atol must be a positive, finite tolerance, not {self.atol}")
        self.int8.validate()


def _calibration(splits: Splits, config: Int8Config) -> tuple[tuple[Sample, ...], str]:
    if config.calibration_dir:
        return calibration_subset(list_images(config.calibration_dir), config), str(config.calibration_dir)
    return calibration_subset(splits.train, config), "train split"


class _Exporter:
    """One export: every file is made in ``stage`` and checked; nothing touches the run until :meth:`commit`."""

    def __init__(self, run: RunDir, config: ExportConfig, stage: Path) -> None:
        self.run, self.config, self.stage = run, config, stage
        self.card = run.load_card()
        self.pre = self.card.preprocessing
        self.splits = run.load_splits(self.card, config.data)
        self.check_set = self.splits.val[:PARITY_IMAGES] or self.splits.train[:PARITY_IMAGES]
        needs_calibration = config.int8.mode == "static" or config.tensorrt
        self.calibration, self.calibration_source = (
            _calibration(self.splits, config.int8) if needs_calibration else ((), "")
        )
        self.reference = _TorchSession(load_model(run, self.card), "cpu")
        self.metrics: dict[str, dict] = {}
        self.artifacts: dict[str, dict] = {}
        self.ov_models: dict[str, tuple[Any, bool]] = {}  # file -> (ov.Model, compress to fp16)

    def measure(self, name: str, session) -> dict:
        result = {
            "val_top1": top1(session, self.splits.val, self.pre),
            "test_top1": top1(session, self.splits.test, self.pre),
            "precision": session.precision,
        }
        self.metrics[name] = result
        console.err.print(f"{name}: test top-1 {result['test_top1']:.2%} (runs in {session.precision})")
        return result

    def check(self, name: str, session, atol: float, *, fail: bool = True) -> dict:
        """Parity with PyTorch on validation images; past ``atol`` an :class:`ExportError` (or, without
        ``fail``, figures with ``ok`` False)."""
        figures = parity(self.reference, session, self.check_set, self.pre)
        console.err.print(
            f"{name}: max |logit diff| {figures['max_abs_diff']:.2e} vs PyTorch, "
            f"top-1 agreement {figures['top1_agreement']:.2%} on {figures['images']} images"
        )
        if figures["max_abs_diff"] > atol and fail:
            raise ExportError(
                f"{name} disagrees with PyTorch: max |logit diff| {figures['max_abs_diff']:.3g} > tolerance {atol:g}"
            )
        return figures

    def onnx_fp32(self) -> None:
        path = self.stage / ONNX_FP32
        with console.err.status("exporting to ONNX..."):
            torch_to_onnx(self.reference.model, self.pre.crop, path, self.config.opset)
        record: dict[str, Any] = {"file": ONNX_FP32, "opset": self.config.opset, "simplified": False}
        if self.config.simplify:
            plain = path.with_name("plain.onnx")
            shutil.copyfile(path, plain)
            try:
                removed = simplify(path)
                figures = self.check(
                    "ONNX fp32 (onnxslim)", _OrtSession(ort_session(path), "fp32"), self.config.atol, fail=False
                )
                if figures["max_abs_diff"] <= self.config.atol:
                    record.update(simplified=True, simplified_nodes_removed=removed, parity=figures)
                else:
                    console.err.print("[yellow]note: the onnxslim graph breaks parity; keeping the plain export[/]")
            except Exception as exc:  # noqa: BLE001 - a failed simplification keeps the plain export
                console.err.print(f"[yellow]note: onnxslim failed ({str(exc).splitlines()[0]}); plain export kept[/]")
            if not record["simplified"]:
                os.replace(plain, path)
            plain.unlink(missing_ok=True)
        session = _OrtSession(ort_session(path), "fp32")
        if "parity" not in record:
            record["parity"] = self.check("ONNX fp32", session, self.config.atol)
        self.measure("onnx_fp32", session)
        self.artifacts[ONNX_FP32] = record

    def onnx_fp16(self) -> None:
        to_fp16(self.stage / ONNX_FP32, self.stage / ONNX_FP16)
        session = _OrtSession(ort_session(self.stage / ONNX_FP16), "fp16")
        self.artifacts[ONNX_FP16] = {"file": ONNX_FP16, "parity": self.check("ONNX fp16", session, FP16_ATOL)}
        self.measure("onnx_fp16", session)

    def onnx_int8(self) -> None:
        config = self.config.int8
        out = self.stage / ONNX_INT8
        if config.mode == "dynamic":
            quantize_dynamic(self.stage / ONNX_FP32, out)
            settings = ort_settings(config, (), "")
        else:
            calibration = self.calibration
            settings = ort_settings(config, calibration, self.calibration_source)
            prepared = self.stage / "prepared.onnx"
            prepare(self.stage / ONNX_FP32, prepared)
            with console.err.status(f"quantizing to int8 ({settings['weights']}, {config.method} calibration)..."):
                if config.accuracy_aware and self.splits.val:
                    settings["accuracy_aware"] = quantize_accuracy_aware(
                        prepared,
                        out,
                        calibration,
                        self.splits.val,
                        self.pre,
                        config,
                        fp32_accuracy=self.metrics["onnx_fp32"]["val_top1"],
                        accuracy=lambda path: top1(_OrtSession(ort_session(path), "int8"), self.splits.val, self.pre),
                    )
                    settings["accuracy_aware"]["max_drop_points"] = config.max_drop
                    kept = settings["accuracy_aware"]["kept_in_float"]
                    if kept:
                        console.err.print(f"accuracy-aware int8: {len(kept)} layer(s) kept in float: {', '.join(kept)}")
                else:
                    quantize_static(prepared, out, calibration, self.pre, config)
            prepared.unlink()
        result = self.measure("onnx_int8", _OrtSession(ort_session(out), "int8"))
        settings["test_drop_points"] = 100 * (self.metrics["onnx_fp32"]["test_top1"] - result["test_top1"])
        settings["latency_ratio_vs_fp32"] = ratio = latency_ratio(self.stage / ONNX_FP32, out, self.pre.crop)
        self.artifacts[ONNX_INT8] = {"file": ONNX_INT8, "quantization": settings}
        settings["val_drop_points"] = int8_budget(
            "ONNX int8", self.metrics["onnx_fp32"]["val_top1"], result["val_top1"], config.max_drop
        )
        self._say_drop("ONNX int8", settings["test_drop_points"])
        if ratio >= 1 / SPEEDUP_WORTH_IT:
            note = DYNAMIC_NOTE if config.mode == "dynamic" else ""
            console.err.print(
                f"[yellow]warning: model.int8.onnx is not measurably faster than model.onnx here: {ratio:.2f}x "
                f"fp32's median latency (ONNX Runtime, one image, this CPU){note}[/]"
            )
        else:
            console.err.print(f"ONNX int8: {ratio:.2f}x fp32's median latency (ONNX Runtime, one image, this CPU)")

    def _say_drop(self, name: str, drop: float) -> None:
        """The test split decides nothing (validation does), but a larger loss there is said."""
        if drop > self.config.int8.max_drop:
            console.err.print(f"[yellow]note: {name} loses {drop:.2f} points of test top-1 against fp32[/]")

    def openvino(self) -> None:
        import openvino as ov

        with console.err.status("converting to OpenVINO IR..."):
            fp32 = ov.convert_model(str(self.stage / ONNX_FP32))
            figures = self.check(
                "OpenVINO fp32 (f32 hint)", compile_model(fp32, LoadOptions(precision="fp32")), self.config.atol
            )
        self.measure("openvino_fp32", compile_model(fp32, LoadOptions()))
        self.ov_models[OV_FP32] = (fp32, False)
        self.artifacts[OV_FP32] = {"file": OV_FP32, "parity": figures, "converted_from": ONNX_FP32}
        if self.config.fp16:
            self.ov_models[OV_FP16] = (fp32, True)
            self.artifacts[OV_FP16] = {"file": OV_FP16, "converted_from": ONNX_FP32, "weights": "fp16 compressed"}
        if self.config.int8.mode == "static":
            self.openvino_int8(fp32)

    def openvino_int8(self, fp32: Any) -> None:
        import openvino as ov

        from edgetransfer.quantize_openvino import nncf_quantize, nncf_quantize_with_accuracy_control

        config = self.config.int8
        if config.openvino == "qdq":
            model = ov.convert_model(str(self.stage / ONNX_INT8))
            record: dict[str, Any] = {"tool": "openvino.convert_model", "converted_from": ONNX_INT8}
        else:
            calibration, source = self.calibration, self.calibration_source
            with console.err.status("quantizing the OpenVINO IR with NNCF..."):
                model = nncf_quantize(fp32, calibration, self.pre)
            record = {
                "tool": "nncf.quantize",
                "fast_bias_correction": True,
                "calibration_source": source,
                "calibration_images": len(calibration),
            }
            val = top1(compile_model(model, LoadOptions(), int8=True), self.splits.val, self.pre)
            drop = 100 * (self.metrics["openvino_fp32"]["val_top1"] - val)
            if config.accuracy_aware and self.splits.val and drop > config.max_drop:
                console.err.print(f"NNCF int8 loses {drop:.2f} validation points; running NNCF accuracy control...")
                with console.err.status("NNCF accuracy control..."):
                    model = nncf_quantize_with_accuracy_control(
                        fp32, calibration, self.splits.val, self.pre, max_drop_points=config.max_drop
                    )
                record["tool"] = "nncf.quantize_with_accuracy_control"
                record["max_drop_points"] = config.max_drop
        result = self.measure("openvino_int8", compile_model(model, LoadOptions(), int8=True))
        record["test_drop_points"] = 100 * (self.metrics["openvino_fp32"]["test_top1"] - result["test_top1"])
        tried = "after NNCF accuracy control" if record["tool"] == "nncf.quantize_with_accuracy_control" else ""
        record["val_drop_points"] = int8_budget(
            "OpenVINO int8", self.metrics["openvino_fp32"]["val_top1"], result["val_top1"], config.max_drop, tried=tried
        )
        self._say_drop("OpenVINO int8", record["test_drop_points"])
        self.ov_models[OV_INT8] = (model, False)
        self.artifacts[OV_INT8] = {"file": OV_INT8, "quantization": record}

    def tensorrt(self) -> None:
        from edgetransfer.quantize import write_tensorrt_calibration

        self.artifacts[TENSORRT_DIR] = write_tensorrt_calibration(
            self.stage / ONNX_FP32, self.stage / TENSORRT_DIR, self.calibration, self.pre
        )

    def commit(self) -> RunDir:
        """Embed the final card in every file, then rename the files into the run and save card.json last."""
        import onnx

        card = dataclasses.replace(
            self.card,
            metrics={k: v for k, v in self.card.metrics.items() if k not in EXPORT_METRICS} | self.metrics,
            artifacts={k: v for k, v in self.card.artifacts.items() if k not in EXPORTED} | self.artifacts,
            complete={**self.card.complete, "export": True},
        )
        for name in (ONNX_FP32, ONNX_FP16, ONNX_INT8):
            if name in self.artifacts:
                proto = onnx.load(str(self.stage / name))
                embed_in_onnx(proto, card)
                onnx.save(proto, str(self.stage / name))
        if self.ov_models:
            import openvino as ov

            (self.stage / OPENVINO_DIR).mkdir(exist_ok=True)
            for name, (model, compress) in self.ov_models.items():
                model.set_rt_info(card.to_json(), list(OPENVINO_RT_INFO_PATH))
                ov.save_model(model, str(self.stage / name), compress_to_fp16=compress)
        for name in self.artifacts:
            path = self.stage / name
            if path.is_file():
                self.artifacts[name].update(sha256=sha256_file(path), bytes=_size(path))
                if name.endswith(".xml"):  # the IR's weights: swapping them alone must be noticed too
                    self.artifacts[name]["bin_sha256"] = sha256_file(path.with_suffix(".bin"))
        (self.run.path / OPENVINO_DIR).mkdir(exist_ok=True)
        for name in self.artifacts:
            for rel in _files_of(name):
                if (self.run.path / rel).is_dir():
                    shutil.rmtree(self.run.path / rel)
                os.replace(self.stage / rel, self.run.path / rel)
        for old in EXPORTED:  # a file of an earlier export that this one did not make would contradict the card
            if old not in self.artifacts:
                _remove(self.run.path / old)
        self.run.save_card(dataclasses.replace(card, artifacts={**card.artifacts, **self.artifacts}))
        stale = [name for name in BENCH_REPORTS if (self.run.path / name).exists()]
        for name in stale:  # they measured the models this export replaced
            _remove(self.run.path / name)
        if stale:
            console.err.print(f"removed {', '.join(stale)}: they measured the models this export replaced")
        return self.run


def require_tensorrt() -> None:
    """Fail in one line unless onnxruntime has the TensorRT execution provider and a GPU is present."""
    import onnxruntime as ort
    import torch

    available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available or not torch.cuda.is_available():
        raise BackendUnavailableError(
            "--tensorrt needs onnxruntime-gpu with the TensorRT execution provider and an NVIDIA GPU; here "
            f"onnxruntime has {', '.join(available)} and torch sees {'a' if torch.cuda.is_available() else 'no'} GPU"
        )


def _files_of(name: str) -> list[str]:
    """An artifact's files, an IR's .bin before its .xml so an .xml never points at a missing .bin."""
    return [str(Path(name).with_suffix(".bin")), name] if name.endswith(".xml") else [name]


def _size(path: Path) -> int:
    return sum((path.parent / Path(rel).name).stat().st_size for rel in _files_of(path.name))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        for rel in _files_of(path.name):
            (path.parent / rel).unlink(missing_ok=True)


def export(run: RunDir, config: ExportConfig = ExportConfig()) -> RunDir:
    """Write model.onnx (+ fp16, int8, OpenVINO IR) into ``run``; each file is checked, then moved in together."""
    config.validate()
    with run.lock("export"):
        for stale in run.path.glob(".export.*.partial"):  # left by an export that was killed
            shutil.rmtree(stale, ignore_errors=True)
        with write_errors_said(run.path):
            stage = Path(tempfile.mkdtemp(prefix=".export.", suffix=".partial", dir=run.path))
        return _export_staged(run, config, stage)


def _export_staged(run: RunDir, config: ExportConfig, stage: Path) -> RunDir:
    try:
        if config.tensorrt:
            require_tensorrt()  # before any slow work
        exporter = _Exporter(run, config, stage)
        exporter.onnx_fp32()
        if config.fp16:
            exporter.onnx_fp16()
        if config.int8.mode != "none":
            exporter.onnx_int8()
        if config.openvino:
            exporter.openvino()
        if config.tensorrt:
            exporter.tensorrt()
        return exporter.commit()
    finally:
        shutil.rmtree(stage, ignore_errors=True)

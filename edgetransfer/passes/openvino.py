"""OpenVINO passes: ``openvino_ir`` (the fp32 IR converted from model.onnx, checked, and its fp16-compressed twin,
checked and scored too) and ``openvino_int8`` (NNCF on the IR, with accuracy control past the budget, or the QDQ ONNX
model converted; under ``--int8-method auto`` the converted model where NNCF cannot hold the budget).
IRs stay in memory until the export commits, so that the final card goes inside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgetransfer import console
from edgetransfer.backends.base import LoadOptions
from edgetransfer.backends.openvino import compile_model
from edgetransfer.errors import BudgetError, UsageError
from edgetransfer.evaluation import (
    SPEEDUP_WORTH_IT,
    cpu_clock,
    evaluate,
    fp32_reference,
    points,
    session_latency_ratio,
    speed_said,
)
from edgetransfer.images import first_line
from edgetransfer.passes.base import Artifact, ExportContext, Pass, register
from edgetransfer.quantize import OTHER_PTQ_HINT, Int8Config, int8_budget, over_budget, ptq_hint
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8, OV_FP16, OV_FP32, OV_INT8

SAME_SPEED = 1.1  # two int8 IRs' latency ratios within this factor: the same speed (one run's noise)


@dataclass(frozen=True)
class OpenVinoConfig:
    atol: float  # max |logit difference| to PyTorch, with OpenVINO told to run in f32
    fp16: bool  # also the fp16-compressed IR


# NNCF's overflow fix for each weight-bits setting: 7 bits everywhere, or (8) its own default, the first layer in 7
NNCF_OVERFLOW_FIX = {7: "every layer (7-bit weights)", 8: "first layer only (NNCF's default; the rest 8-bit)"}


@register
class OpenVinoIR(Pass):
    name = "openvino_ir"
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        import openvino as ov

        config: OpenVinoConfig = self.config
        with console.err.status("converting to OpenVINO IR..."):
            model = ov.convert_model(str(ctx.path(ONNX_FP32)))
            session = compile_model(model, LoadOptions(precision="fp32"))
            figures = ctx.check("OpenVINO fp32 (f32 hint)", session, config.atol)
        _say_default_precision(ctx, "fp32", ctx.measure("openvino_fp32", compile_model(model, LoadOptions())))
        made = [Artifact(OV_FP32, {"file": OV_FP32, "parity": figures, "converted_from": ONNX_FP32}, model)]
        if config.fp16:
            record = {"file": OV_FP16, "converted_from": ONNX_FP32, "weights": "fp16 compressed"}
            record["parity"] = self._fp16_checked(ctx, model)
            made.append(Artifact(OV_FP16, record, model, compress_to_fp16=True))
        return made

    @staticmethod
    def _fp16_checked(ctx: ExportContext, model: Any) -> dict:
        """The fp16-compressed IR as it will be written (saved to a scratch folder and read back), checked against
        PyTorch with fp16's tolerance (see ``onnx_fp16``) and measured as ``openvino_fp16``."""
        import tempfile

        import openvino as ov

        from edgetransfer.passes.onnx import check_fp16

        with tempfile.TemporaryDirectory(dir=ctx.stage) as scratch:
            path = f"{scratch}/model.fp16.xml"
            ov.save_model(model, path, compress_to_fp16=True)
            compressed = ov.Core().read_model(path)
            figures = check_fp16(
                ctx, "OpenVINO fp16 (f32 hint)", compile_model(compressed, LoadOptions(precision="fp32"))
            )
            _say_default_precision(ctx, "fp16", ctx.measure("openvino_fp16", compile_model(compressed, LoadOptions())))
        return figures


def _say_default_precision(ctx: ExportContext, variant: str, measured: dict) -> None:
    """Parity was checked in f32; where OpenVINO's default here (bf16 on AVX-512 BF16 or AMX CPUs) loses more than
    the budget against PyTorch, said (a new user met it in the figures alone)."""
    torch_top1 = (ctx.card.metrics.get("torch") or {}).get("test_top1")
    drop = points(torch_top1, measured["test_top1"])
    if drop is not None and drop > ctx.config.int8.max_drop and measured["precision"] != "fp32":
        console.err.print(
            f"[yellow]note: the OpenVINO {variant} IR runs in {measured['precision']} on this CPU and loses "
            f"{drop:.2f} points of test top-1 against PyTorch; bench --precision fp32 (INFERENCE_PRECISION_HINT "
            "f32 in an app) keeps fp32 math, about 2x slower[/]"
        )


@register
class OpenVinoInt8(Pass):
    """int8 IR: ``nncf`` quantizes the fp32 IR (NNCF accuracy control when the plain result is past the budget);
    ``qdq`` converts model.int8.onnx. Judged by the same budget as ONNX Runtime's int8. With ``--int8-method auto``
    (the default), an NNCF IR that cannot hold the budget gives way to model.int8.onnx converted (which held it in
    ONNX Runtime), judged again; the card records both steps (``quantization.escalation``)."""

    name = "openvino_int8"
    calibrates = True
    needs = (OV_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        config: Int8Config = self.config
        made = ctx.artifacts.get(ONNX_INT8)
        from_qat = made is not None and str(made.record.get("quantization", {}).get("method", "")).startswith("qat")
        if from_qat and config.mode == "auto" and config.openvino != "qdq":
            return [self._qat_or_nncf(ctx, config)]
        if config.openvino == "qdq" or from_qat:  # OpenVINO runs a QAT model's QDQ file in int8 as it is
            return [self._judged(ctx, config, *self._converted(ctx))]
        model, record = self._nncf(ctx, config)
        model_tool = record["tool"]
        if config.mode != "auto" or made is None:
            return [self._judged(ctx, config, model, record)]
        try:
            done = self._judged(ctx, config, model, record)
        except BudgetError as exc:  # NNCF's IR loses too much; ONNX Runtime's int8 held the same budget
            console.err.print(
                f"[yellow]NNCF's int8 IR cannot hold the budget; converting {ONNX_INT8} (which holds it in ONNX "
                "Runtime) instead[/]"
            )
            steps = [*_before(record), {"method": "nncf", "held": False, "why": str(exc)}]
            nncf_drop = self._val_drop(ctx)
            try:
                done = self._judged(ctx, config, *self._converted(ctx))
            except BudgetError:
                raise over_budget(
                    "OpenVINO int8",
                    self._val_drop(ctx),
                    config.max_drop,
                    f"model.int8.onnx converted; NNCF's own IR loses {nncf_drop:.2f}"
                    + (" after its accuracy control" if model_tool == "nncf.quantize_with_accuracy_control" else ""),
                    ptq_hint(config),
                ) from None
        else:
            steps = []
            if done.record["quantization"]["latency_ratio_vs_fp32"] >= 1 / SPEEDUP_WORTH_IT:
                done, steps = self._faster_of(ctx, config, done)
        return [
            self._recorded(done, steps, "nncf" if done.record["quantization"]["tool"].startswith("nncf") else "qdq")
        ]

    def _faster_of(self, ctx: ExportContext, config: Int8Config, nncf: Artifact) -> tuple[Artifact, list[dict]]:
        """NNCF's IR held the budget but is not measurably faster than fp32 (its accuracy control kept 40 of 53
        layers in float: 0.85x; a new user's trial): ``model.int8.onnx`` converted, judged the same way, is kept
        where it holds the budget and is measurably faster than fp32 itself, or, no faster either, loses fewer
        validation points than NNCF's. The IR kept and the steps before it
        (NNCF's, where the converted one is kept; else none, and what was tried after NNCF's is in its record,
        ``tried_after``). A converted model OpenVINO cannot read or compile leaves NNCF's, said."""
        record = nncf.record["quantization"]
        console.err.print(
            f"[yellow]NNCF's int8 IR runs {record['latency_ratio_vs_fp32']:.2f}x fp32's latency, not under "
            f"{1 / SPEEDUP_WORTH_IT:.2f}x; trying {ONNX_INT8} converted too[/]"
        )
        kept = ctx.metrics["openvino_int8"]
        mine = {
            "method": "nncf",
            "held": True if record["val_drop_points"] is not None else None,  # None: no validation images
            "val_drop_points": record["val_drop_points"],
            "latency_ratio_vs_fp32": record["latency_ratio_vs_fp32"],
        }
        try:
            other = self._judged(ctx, config, *self._converted(ctx))
        except (BudgetError, RuntimeError, OSError, ValueError) as exc:  # OpenVINO's errors are RuntimeErrors: an
            # attempt beside a model that holds fails it no more (it failed the export), said
            ctx.metrics["openvino_int8"] = kept
            held = isinstance(exc, BudgetError)
            why = first_line(exc)
            lost = exc.drop_points if held else None
            figure = f" (validation {-lost:+.2f} points against fp32)" if lost is not None else ""
            console.err.print(
                f"[yellow]{ONNX_INT8} converted {f'cannot hold the budget{figure}' if held else f'failed: {why}'}: "
                "NNCF's IR is kept[/]"
            )
            record["tried_after"] = [{"method": "qdq", "held": False if held else None, "why": why}]
            return nncf, []
        ratio = other.record["quantization"]["latency_ratio_vs_fp32"]
        if ratio < 1 / SPEEDUP_WORTH_IT:  # measurably faster than fp32 (the two ratios are short measures: the
            # converted one is not kept for being a little faster than NNCF's, which is noise)
            console.err.print(
                f"kept {ONNX_INT8} converted: {ratio:.2f}x fp32 against NNCF's IR's "
                f"{mine['latency_ratio_vs_fp32']:.2f}x"
            )
            return other, [*_before(record), {**mine, "why": "not measurably faster than fp32"}]
        drop, theirs = other.record["quantization"]["val_drop_points"], mine["val_drop_points"]
        no_slower = ratio <= mine["latency_ratio_vs_fp32"] * SAME_SPEED  # (within one run's noise)
        if drop is not None and theirs is not None and drop < theirs and no_slower:  # neither faster: the more
            # accurate, no slower, is kept (NNCF's was, 9 points below the converted one and no faster: a trial)
            console.err.print(
                f"kept {ONNX_INT8} converted: neither is measurably faster than fp32 ({ratio:.2f}x against NNCF's "
                f"IR's {mine['latency_ratio_vs_fp32']:.2f}x) and its validation top-1 is {-drop:+.2f} points against "
                f"fp32's, NNCF's IR's {-theirs:+.2f}"
            )
            why = "not measurably faster than fp32, and less accurate on validation than model.int8.onnx converted"
            return other, [*_before(record), {**mine, "why": why}]
        ctx.metrics["openvino_int8"] = kept
        console.err.print(f"[yellow]it is not measurably faster either ({ratio:.2f}x fp32): NNCF's IR is kept[/]")
        step = {"method": "qdq", "held": drop is not None or None, "val_drop_points": drop}
        record["tried_after"] = [{**step, "latency_ratio_vs_fp32": ratio, "why": "not measurably faster than fp32"}]
        return nncf, []

    def _qat_or_nncf(self, ctx: ExportContext, config: Int8Config) -> Artifact:
        """``auto`` kept a QAT model: its QDQ file converted, or, where that IR cannot hold the budget, NNCF's
        post-training IR (judged the same way; the export fails only if both miss it, and says both)."""
        try:
            done = self._judged(ctx, config, *self._converted(ctx))
        except BudgetError as exc:
            console.err.print(
                f"[yellow]{ONNX_INT8} (quantization-aware) converted cannot hold the budget in OpenVINO; trying "
                "NNCF's post-training int8 IR instead[/]"
            )
            steps = [{"method": "qdq", "held": False, "why": str(exc)}]
            try:
                done = self._judged(ctx, config, *self._nncf(ctx, config))
            except BudgetError as nncf_exc:
                raise BudgetError(f"{nncf_exc}; {ONNX_INT8} (quantization-aware) converted: {exc}") from None
            method = "nncf"
        else:
            steps, method = [], "qdq"
        return self._recorded(done, steps, method)

    @staticmethod
    def _recorded(done: Artifact, steps: list[dict], method: str) -> Artifact:
        """``done`` with the escalation in its card: the ``steps`` tried before it, then its own (``method``)."""
        quantization = done.record["quantization"]
        drop = quantization["val_drop_points"]  # None: no validation images, not checked
        step = {"method": method, "held": True if drop is not None else None, "val_drop_points": drop}
        quantization["escalation"] = [*steps, *(_before(quantization) if method == "nncf" else []), step]
        return done

    @staticmethod
    def _val_drop(ctx: ExportContext) -> float:
        """The validation drop of the OpenVINO int8 IR measured last."""
        return points(fp32_reference(ctx.metrics)[1]["val_top1"], ctx.metrics["openvino_int8"]["val_top1"])

    @staticmethod
    def _converted(ctx: ExportContext) -> tuple[Any, dict[str, Any]]:
        import openvino as ov

        if ONNX_INT8 not in ctx.artifacts:
            raise UsageError("--openvino-int8 qdq converts model.int8.onnx, which this export does not make")
        model = ov.convert_model(str(ctx.path(ONNX_INT8)))
        onnx_record = ctx.artifacts[ONNX_INT8].record.get("quantization", {})
        keys = ("weight_bits", "weight_bits_why", "calibration_images", "ort_calibration_images")
        kept = {k: onnx_record[k] for k in keys if k in onnx_record}  # its ranges are model.int8.onnx's: explain
        # names their images (it said "(None images)") and knows a QAT model by the tool that made it
        return model, {
            "tool": "openvino.convert_model",
            "converted_from": ONNX_INT8,
            "from_tool": onnx_record.get("tool"),
            **kept,
        }

    @staticmethod
    def _judged(ctx: ExportContext, config: Int8Config, model: Any, record: dict[str, Any]) -> Artifact:
        """Measured (accuracy, latency against the fp32 IR) and judged by the budget: the artifact, or a
        :class:`BudgetError`."""
        session = compile_model(model, LoadOptions(), int8=True)
        made_by = "converted from model.int8.onnx" if record["tool"] == "openvino.convert_model" else "NNCF"
        result = ctx.measure("openvino_int8", session, shown=f"openvino_int8 ({made_by})")
        key, fp32 = fp32_reference(ctx.metrics)
        record["drop_against"] = "fp32 ONNX Runtime" if key == "onnx_fp32" else f"{fp32['precision']} IR"
        # at 1 thread, in CPU time: what else the machine runs moves it far less (see evaluation.latency_ratio)
        del session  # (its threads idle; two models of 1 thread are compiled for the measure)
        reference = compile_model(ctx.artifacts[OV_FP32].ov_model, LoadOptions(threads=1))  # as a device runs it
        timed = compile_model(model, LoadOptions(threads=1), int8=True)
        clock, clock_name = cpu_clock()
        record["latency_ratio_vs_fp32"] = ratio = session_latency_ratio(reference, timed, ctx.pre.crop, clock=clock)
        record["latency_measure"] = measure = f"OpenVINO, one image, 1 thread, {clock_name}"
        where = (
            f"({measure}, a short measure on this CPU; its fp32 runs in {reference.precision}; 'edgetransfer bench' "
            "measures it properly at the profile's threads)"
        )
        said, warning = speed_said(f"the OpenVINO int8 IR ({made_by})", "the fp32 IR", ratio, where)
        if warning:
            console.err.print(f"[yellow]warning: {said}; 'edgetransfer explain' says why[/]")
        else:
            console.err.print(f"OpenVINO int8 ({made_by}): {said}")
        record["test_drop_points"] = points(fp32["test_top1"], result["test_top1"])
        tried = "after NNCF accuracy control" if record["tool"] == "nncf.quantize_with_accuracy_control" else ""
        record["val_drop_points"] = int8_budget(  # NNCF's IR: --calib-method shapes only ONNX Runtime's model
            "OpenVINO int8", fp32["val_top1"], result["val_top1"], config.max_drop, tried=tried, hint=OTHER_PTQ_HINT
        )
        ctx.say_val_drop(f"OpenVINO int8 ({made_by})", record)  # (two IRs may be judged: which one)
        ctx.say_drop("OpenVINO int8", record["test_drop_points"])
        return Artifact(OV_INT8, {"file": OV_INT8, "quantization": record}, model)

    @staticmethod
    def _nncf(ctx: ExportContext, config: Int8Config) -> tuple[Any, dict[str, Any]]:
        from edgetransfer.quantize_openvino import nncf_quantize, nncf_quantize_with_accuracy_control

        fp32 = ctx.artifacts[OV_FP32].ov_model
        calibration, source = ctx.calibration
        with console.err.status("quantizing the OpenVINO IR with NNCF..."):
            model = nncf_quantize(fp32, calibration, ctx.pre, weight_bits=config.weight_bits())
        record: dict[str, Any] = {
            "tool": "nncf.quantize",
            "fast_bias_correction": True,
            "weight_bits": config.weight_bits(),
            "weight_bits_why": config.weights_note(),
            "nncf_overflow_fix": NNCF_OVERFLOW_FIX[config.weight_bits()],
            "calibration_source": source,
            "calibration_images": len(calibration),
        }
        val = evaluate(compile_model(model, LoadOptions(), int8=True), ctx.val)
        drop = points(fp32_reference(ctx.metrics)[1]["val_top1"], val)
        if config.accuracy_aware and len(ctx.val) and drop > config.max_drop:
            console.err.print(f"NNCF int8 loses {drop:.2f} validation points; running NNCF accuracy control...")
            with console.err.status("NNCF accuracy control..."):
                model = nncf_quantize_with_accuracy_control(
                    fp32,
                    calibration,
                    ctx.val,
                    ctx.pre,
                    max_drop_points=config.max_drop,
                    weight_bits=config.weight_bits(),
                )
            # the first attempt's drop, which the card did not keep (a new user's trial: 75 points)
            record.update(
                tool="nncf.quantize_with_accuracy_control",
                max_drop_points=config.max_drop,
                nncf_quantize_val_drop_points=drop,
            )
        return model, record


def _before(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The step before NNCF's accuracy control, where it ran: NNCF's plain int8, over the budget (the card kept only
    the controlled IR's drop; a new user's trial: the first had lost 75 points)."""
    if "nncf_quantize_val_drop_points" not in record:
        return []
    return [{"method": "nncf.quantize", "held": False, "val_drop_points": record["nncf_quantize_val_drop_points"]}]

"""``model.int8.onnx`` with ONNX Runtime: ``static`` (QDQ, calibrated on target-domain images, accuracy-aware) and
``dynamic`` (weight-only). Each is judged the same way by :func:`judge_onnx_int8`: the validation budget
(:func:`edgetransfer.quantize.int8_budget`, which raises) and its speed against fp32, measured here."""

from __future__ import annotations

from typing import Any

from edgetransfer import console
from edgetransfer.backends.ort import _OrtSession, ort_session
from edgetransfer.evaluation import (
    DYNAMIC_NOTE,
    LATENCY_MEASURE,
    evaluate,
    latency_ratio,
    points,
    speed_said,
)
from edgetransfer.passes.base import Artifact, ExportContext, Pass, int8_method, register
from edgetransfer.quantize import (
    Int8Config,
    int8_budget,
    ort_settings,
    prepare,
    ptq_hint,
    quantize_accuracy_aware,
    quantize_dynamic,
    quantize_static,
)
from edgetransfer.rundir import ONNX_FP32, ONNX_INT8


def judge_onnx_int8(
    ctx: ExportContext,
    config: Int8Config,
    settings: dict[str, Any],
    note: str = "",
    hint: str | None = None,
    label: str = "",
) -> Artifact:
    """Score ``model.int8.onnx``, hold it to the validation budget (raises past it), measure its latency ratio to
    fp32 and say when it is no faster; the artifact with ``settings`` and the figures. ``label`` follows its name in
    what is said (" (quantization-aware)": auto's QAT try read "onnx_int8: test top-1 ..." as the model kept did,
    a new user's trial)."""
    out = ctx.path(ONNX_INT8)
    result = ctx.measure("onnx_int8", _OrtSession(ort_session(out), "int8"), shown=f"onnx_int8{label}")
    fp32 = ctx.metrics["onnx_fp32"]
    settings["test_drop_points"] = points(fp32["test_top1"], result["test_top1"])
    settings["latency_ratio_vs_fp32"] = ratio = latency_ratio(ctx.path(ONNX_FP32), out, ctx.pre.crop)
    settings["latency_measure"] = LATENCY_MEASURE
    settings["val_drop_points"] = int8_budget(
        "ONNX int8", fp32["val_top1"], result["val_top1"], config.max_drop, hint=hint or ptq_hint(config)
    )
    ctx.say_val_drop(f"ONNX int8{label}", settings)
    ctx.say_drop(f"ONNX int8{label}", settings["test_drop_points"])
    where = (
        f"({LATENCY_MEASURE}, a short measure on this CPU; 'edgetransfer bench' measures it properly at the profile's "
        "threads)"
    )
    said, warning = speed_said("model.int8.onnx", "model.onnx", ratio, where)
    if warning:
        console.err.print(f"[yellow]warning: {said}{note}; 'edgetransfer explain' says why[/]")
    else:
        console.err.print(f"ONNX int8{label}: {said}")
    return Artifact(ONNX_INT8, {"file": ONNX_INT8, "quantization": settings})


@register
@int8_method("static")
class OnnxInt8Static(Pass):
    """QDQ int8 calibrated on target-domain images; with ``accuracy_aware``, the most sensitive layers stay in
    float until the validation budget holds."""

    name = "onnx_int8_static"
    calibrates = True
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        config: Int8Config = self.config
        calibration, source = ctx.calibration
        settings = ort_settings(config, calibration, source)
        prepared, out = ctx.path("prepared.onnx"), ctx.path(ONNX_INT8)
        prepare(ctx.path(ONNX_FP32), prepared)
        with console.err.status(f"quantizing to int8 ({settings['weights']}, {config.method} calibration)..."):
            if config.accuracy_aware and len(ctx.val):
                search = quantize_accuracy_aware(
                    prepared,
                    out,
                    calibration,
                    ctx.val,
                    ctx.pre,
                    config,
                    fp32_accuracy=ctx.metrics["onnx_fp32"]["val_top1"],
                    accuracy=lambda path: evaluate(_OrtSession(ort_session(path), "int8"), ctx.val),
                    latency=lambda path: latency_ratio(ctx.path(ONNX_FP32), path, ctx.pre.crop, seconds=0.5),
                )
                settings["accuracy_aware"] = {
                    **search,
                    "max_drop_points": config.max_drop,
                    "latency_measure": LATENCY_MEASURE,  # each step's latency_ratio_vs_fp32
                }
                if search["kept_in_float"]:
                    kept = search["kept_in_float"]
                    console.err.print(f"accuracy-aware int8: {len(kept)} layer(s) kept in float: {', '.join(kept)}")
            else:
                quantize_static(prepared, out, calibration, ctx.pre, config)
        prepared.unlink()
        return [judge_onnx_int8(ctx, config, settings)]


@register
@int8_method("dynamic")
class OnnxInt8Dynamic(Pass):
    """Weight-only int8, activations quantized on the fly: no calibration images."""

    name = "onnx_int8_dynamic"
    needs = (ONNX_FP32,)

    def run(self, ctx: ExportContext) -> list[Artifact]:
        # the same pre-processing as static int8 (ONNX Runtime warns on the root logger without it)
        prepared = ctx.path("prepared.onnx")
        prepare(ctx.path(ONNX_FP32), prepared)
        quantize_dynamic(
            prepared, ctx.path(ONNX_INT8), weight_bits=self.config.weight_bits(), per_channel=self.config.per_channel
        )
        prepared.unlink()
        return [judge_onnx_int8(ctx, self.config, ort_settings(self.config, (), ""), DYNAMIC_NOTE)]

"""int8 with ONNX Runtime: static post-training quantization (QDQ), calibrated on target-domain images, and an
accuracy-aware mode that keeps the most sensitive layers in float until the accuracy budget holds.

Defaults are the careful engineer's: per-channel int8 weights, uint8 activations, ``quant_pre_process`` first.
(ONNX Runtime's own default, per-tensor weights, can wreck a depthwise-separable network.)
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetransfer import console
from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample
from edgetransfer.errors import BudgetError, QuantizationError, UsageError
from edgetransfer.evaluation import SPEEDUP_WORTH_IT, Decoded, decoded, points

Calibration = Decoded | tuple[Sample, ...]  # images decoded once per export, or samples decoded where used

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
OPENVINO_INT8 = ("nncf", "qdq")
INT8_WEIGHTS = ("auto", "7bit", "8bit")
# ops whose int8 form (weights and/or output activations) can cost accuracy; candidates for staying in float
_QUANTIZED_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Concat",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Resize",
)


@dataclass(frozen=True)
class Int8Config:
    """How to quantize. ``max_drop`` is in accuracy points (1.0 = one percentage point of top-1): NNCF's
    accuracy-control default, and the budget ``edgetransfer bench --recommend`` applies. Tighter budgets trip on
    the validation split's own bias: it chose the checkpoint, so fp32 reads at its selected peak there (the digits
    demo on one machine: every int8 calibration lost 3-4 of 269 validation images and none of the test images)."""

    mode: str = "auto"
    method: str = "minmax"
    calibration_size: int = 200
    per_channel: bool = True
    calibration_dir: str | None = None  # unlabelled target-domain images; default: the run's training split
    skip_bad: bool = False  # calibration_dir's unreadable files passed over (named), not refused
    accuracy_aware: bool = True  # applies when labelled validation images exist
    max_drop: float = 1.0
    openvino: str = "nncf"  # how the OpenVINO int8 IR is made: NNCF on the IR, or converted from the QDQ ONNX
    seed: int = 0
    # int8 weights in 7 bits (ONNX Runtime's reduce_range, NNCF's overflow fix) or 8; auto: 7 where this CPU's int8
    # kernels can overflow with 8 (x86 without VNNI, see machine.int8_overflows), so the accuracy checked here holds
    # on every CPU (kernels and exact int8 arithmetic agree with 7-bit weights)
    weights: str = "auto"
    weights_why: str | None = None  # why ``weights``, where the user did not pass it (a search's recorded choice)

    def weight_bits(self) -> int:
        """7 or 8 (``weights`` resolved on this machine)."""
        from edgetransfer.machine import int8_overflows

        if self.weights == "auto":
            return 7 if int8_overflows() else 8
        return int(self.weights.removesuffix("bit"))

    def weights_note(self) -> str:
        """Why the int8 weights have the bits they have, for the card."""
        if self.weights_why:
            return self.weights_why
        if self.weights != "auto":
            return f"--int8-weights {self.weights}"
        if self.weight_bits() == 7:
            return "auto: this CPU has no VNNI, where 8-bit weights can overflow in int8 kernels"
        return (
            "auto: this CPU's int8 kernels do not overflow; on an x86 device without VNNI (AVX2 only) "
            "re-export with --int8-weights 7bit"
        )

    def weights_warning(self) -> str | None:
        """A warning where 8-bit weights were asked for on a CPU whose int8 kernels can overflow with them: the
        accuracy export measures here is then this CPU's saturated arithmetic, not a VNNI device's (a new user's
        trial: every-layer int8 lost 5 points and export escalated to QAT, unsaid; only 'explain' told why)."""
        from edgetransfer.machine import int8_overflows

        if self.mode == "none" or self.weight_bits() != 8 or not int8_overflows():
            return None
        asked = f"8-bit int8 weights ({self.weights_why})" if self.weights_why else f"--int8-weights {self.weights}"
        fix = "use 7-bit weights (--int8-weights 7bit)" if self.weights_why else "keep 7-bit weights (auto, here)"
        return (
            f"warning: {asked} on this CPU (x86 without VNNI): its int8 kernels can overflow "
            "with 8-bit weights, so the int8 accuracy measured here is this CPU's, lower than on a device with VNNI "
            f"or ARM dot-product; export for such a device on one like it, or {fix}"
        )

    def validate(self) -> None:
        from edgetransfer.passes import INT8_METHODS  # each method is an export pass that registers itself

        if self.mode != "none" and self.mode not in INT8_METHODS.names():
            names = INT8_METHODS.names()
            methods = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
            raise UsageError(f"unknown --int8-method {self.mode!r}; choose {methods} (--no-int8: none)")
        if self.method not in CALIBRATION_METHODS:
            choices = ", ".join(CALIBRATION_METHODS)
            raise UsageError(f"unknown calibration method {self.method!r}; choose one of {choices}")
        if not 1 <= self.calibration_size <= 100_000:
            raise UsageError("--calib-size must be 1..100000")
        if not 0 <= self.max_drop <= 100:  # NaN fails too: a NaN budget would pass any drop
            raise UsageError(f"--max-drop must be 0..100 points, not {self.max_drop}")
        if self.weights not in INT8_WEIGHTS:
            raise UsageError(f"unknown --int8-weights {self.weights!r}; choose one of {', '.join(INT8_WEIGHTS)}")
        if self.openvino not in OPENVINO_INT8:
            raise UsageError(f"unknown --openvino-int8 {self.openvino!r}; choose one of {', '.join(OPENVINO_INT8)}")


def calibration_subset(samples: tuple[Sample, ...], config: Int8Config) -> tuple[Sample, ...]:
    """A seeded random subset of ``calibration_size`` images."""
    if not samples:
        raise QuantizationError("no calibration images (the training split or --calib folder is empty)")
    chosen = list(samples)
    random.Random(config.seed).shuffle(chosen)
    return tuple(chosen[: config.calibration_size])


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed image batches (restartable)."""

    def __init__(self, samples: Calibration, pre: Preprocessing, input_name: str, batch_size: int = 16) -> None:
        self.data, self.input_name, self.batch_size = decoded(samples, pre), input_name, batch_size
        self.rewind()

    def rewind(self) -> None:
        self._batches = self.data.batches(self.batch_size)

    def get_next(self):
        item = next(self._batches, None)
        return None if item is None else {self.input_name: item[0]}

    def __iter__(self):
        while (item := self.get_next()) is not None:
            yield item


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def prepare(fp32: Path, out: Path) -> None:
    """ONNX Runtime's ``quant_pre_process`` (symbolic shape inference, graph optimisation) before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32), str(out))
    except Exception as exc:  # noqa: BLE001 - ORT raises plain Exceptions here
        raise QuantizationError(f"quant_pre_process failed: {str(exc).splitlines()[0]}") from None


def quantize_static(
    prepared: Path,
    out: Path,
    calibration: Calibration,
    pre: Preprocessing,
    config: Int8Config,
    *,
    exclude: tuple[str, ...] = (),
    cache: Path | None = None,
    weight_steps: dict[str, Any] | None = None,
) -> None:
    """QDQ int8 of ``prepared`` (a ``quant_pre_process``-ed model); ``exclude`` names nodes kept in float;
    ``cache`` keeps the calibrated ranges in a file, so that later calls skip calibration; ``weight_steps`` gives
    named weights their per-output-channel int8 steps (zero point 0) instead of ONNX Runtime's own."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    import contextlib
    import io

    try:
        # its histogram calibrators print their progress ("Collecting tensor data and making histogram ...") to
        # stdout, amid the files export lists there: kept out of it
        with contextlib.redirect_stdout(io.StringIO()):
            ort_quantize_static(
                str(prepared),
                str(out),
                # histogram calibrators stack every batch's outputs: they need batches of one shape
                _Reader(calibration, pre, _input_name(prepared), batch_size=16 if config.method == "minmax" else 1),
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[config.method],
                reduce_range=config.weight_bits() == 7,  # 7-bit weights (activations keep 8 bits)
                # per-batch min/max averaged: one outlier batch does not stretch a range (as observers in torch/TRT)
                extra_options={
                    "CalibMovingAverage": config.method == "minmax",
                    **({"TensorQuantOverrides": _weight_overrides(weight_steps)} if weight_steps else {}),
                },
                nodes_to_exclude=list(exclude),
                **_cache_option(ort_quantize_static, cache),
            )
    except (RuntimeError, ValueError) as exc:
        raise QuantizationError(f"ONNX Runtime quantization failed: {str(exc).splitlines()[0]}") from None


def _cache_option(quantizer: Any, cache: Path | None) -> dict[str, Any]:
    """``calibration_cache_path`` where this onnxruntime has it (from mid-2026; the project allows 1.20 on Python 3.10,
    1.25 elsewhere): older ones calibrate again on every call, slower and the same."""
    import inspect

    return (
        {"calibration_cache_path": cache} if "calibration_cache_path" in inspect.signature(quantizer).parameters else {}
    )


def _weight_overrides(steps: dict[str, Any]) -> dict[str, list[dict]]:
    """ONNX Runtime's per-channel tensor overrides (axis 0: a convolution's or a transposed Gemm's output channels)
    that fix each weight's scale and zero point."""
    import numpy as np

    return {
        name: [{"axis": 0, "scale": np.float32(step), "zero_point": np.int8(0)} for step in channel_steps]
        for name, channel_steps in steps.items()
    }


def kernel_gap(int8: Path, batches) -> dict[str, Any]:
    """The int8 model at ``int8`` run by ONNX Runtime's int8 kernels (every optimization on, as deployed) against the
    same file with every optimization off (each QuantizeLinear/DequantizeLinear pair in float: the exact int8
    arithmetic), on the image ``batches``: how many top-1s the kernels change and by how much a probability moves.
    They agree to rounding unless the kernels overflow (8-bit weights on an x86 CPU without VNNI)."""
    import numpy as np
    import onnxruntime as ort

    def session(level):
        options = ort.SessionOptions()
        options.log_severity_level, options.graph_optimization_level = 3, level
        return ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])

    def probabilities(run, images):
        logits = run.run(None, {run.get_inputs()[0].name: images})[0].astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    levels = ort.GraphOptimizationLevel
    kernels, exact = session(levels.ORT_ENABLE_ALL), session(levels.ORT_DISABLE_ALL)
    images = flips = 0
    gap = 0.0
    for batch in batches:
        a, b = probabilities(kernels, batch), probabilities(exact, batch)
        images, flips = images + len(batch), flips + int((a.argmax(1) != b.argmax(1)).sum())
        gap = max(gap, float(np.abs(a - b).max()))
    return {"images": images, "top1_changed": flips, "max_prob_diff": gap}


def ort_weight_steps(quantized: Path) -> dict[str, Any]:
    """The per-output-channel int8 steps ONNX Runtime chose for the weights of ``quantized`` (a QDQ model it wrote;
    symmetric, zero point 0), by float weight name. Given back as ``weight_steps`` to later quantizations of the same
    model, they give the same int8 weights without recomputing them: ONNX Runtime computes them channel by channel
    in Python, about half of each of the accuracy-aware search's quantizations (0.66 -> 0.35 s on MobileNetV2)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(quantized))
    initializers = {i.name: i for i in model.graph.initializer}
    steps = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith("_quantized"):
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if axis != 0 or not {node.input[1], node.input[2]} <= initializers.keys():
            continue
        scale = numpy_helper.to_array(initializers[node.input[1]])
        zero = numpy_helper.to_array(initializers[node.input[2]])
        if scale.ndim == 1 and zero.dtype == np.int8 and not zero.any():  # weights (biases are int32)
            steps[node.input[0].removesuffix("_quantized")] = scale
    return steps


def quantize_dynamic(fp32: Path, out: Path, *, weight_bits: int | None = None, per_channel: bool = True) -> None:
    """Weight-only int8 (activations quantized on the fly): no calibration data needed."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    try:
        ort_quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=(weight_bits or Int8Config().weight_bits()) == 7,  # None: auto, as export's default
        )
    except (RuntimeError, ValueError) as exc:
        raise QuantizationError(f"ONNX Runtime dynamic quantization failed: {str(exc).splitlines()[0]}") from None


def sensitivity(
    prepared: Path,
    calibration: Calibration,
    samples: Calibration,
    pre: Preprocessing,
    config: Int8Config,
    cache: Path,
    weight_steps: dict[str, Any] | None = None,
) -> list[tuple[str, float]]:
    """Quantizable nodes of ``prepared``, the most sensitive first, as (node name, error).

    A node's error is the mean |logit difference| to the float model on ``samples`` of the int8 model in which
    that node alone stays in float: the lower it is, the more quantizing that node costs. (Calibration ranges
    come from ``cache`` and the weights' steps from ``weight_steps``, so each candidate costs a graph rewrite and one
    batch of inference.)
    """
    import numpy as np
    import onnx

    from edgetransfer.backends.ort import ort_session

    images = np.concatenate([b for b, _ in decoded(samples, pre).batches(64)])
    name = _input_name(prepared)
    reference = ort_session(prepared).run(None, {name: images})[0]
    nodes = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in _QUANTIZED_OPS]
    scores = []
    with tempfile.TemporaryDirectory() as tmp, console.progress() as bar:
        task = bar.add_task("ranking layers by int8 sensitivity", total=len(nodes), status="")
        candidate = Path(tmp) / "candidate.onnx"
        for node in nodes:
            quantize_static(
                prepared, candidate, calibration, pre, config, exclude=(node,), cache=cache, weight_steps=weight_steps
            )
            logits = ort_session(candidate).run(None, {name: images})[0]
            scores.append((node, float(np.abs(logits - reference).mean())))
            bar.update(task, advance=1)
    return sorted(scores, key=lambda item: item[1])


def quantize_accuracy_aware(
    prepared: Path,
    out: Path,
    calibration: Calibration,
    validation: Calibration,
    pre: Preprocessing,
    config: Int8Config,
    *,
    fp32_accuracy: float,
    accuracy: Callable[[Path], float],
    latency: Callable[[Path], float] | None = None,
) -> dict:
    """Static int8 whose validation top-1 stays within ``config.max_drop`` points of ``fp32_accuracy``.

    Quantizes everything first; while the drop is over budget, keeps the most sensitive nodes (see
    :func:`sensitivity`) in float, 1, 2, 4, ... of them, up to half of the quantizable nodes, and, with ``latency``
    (a model file's median latency over fp32's, measured here), only while the model stays measurably faster than
    fp32: int8 that is no faster is not worth its accuracy loss. Raises :class:`QuantizationError` when the budget
    cannot hold; the error and the record list every step tried (``steps``: layers in float, validation drop,
    latency ratio).
    """
    steps: list[dict] = []

    def step(kept: tuple[str, ...]) -> dict:
        value = accuracy(out)
        figures = {"float_layers": len(kept), "val_top1": value, "val_drop_points": points(fp32_accuracy, value)}
        if latency is not None:
            figures["latency_ratio_vs_fp32"] = latency(out)
        steps.append(figures)
        return figures

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "calibration.json"
        quantize_static(prepared, out, calibration, pre, config, cache=cache)
        first = step(())
        record = {"val_top1_all_int8": first["val_top1"], "kept_in_float": [], "steps": steps, **_outcome(first)}
        if first["val_drop_points"] <= config.max_drop:
            return record
        console.err.print(
            f"int8 loses {first['val_drop_points']:.2f} points on validation (budget {config.max_drop}); "
            "ranking layers by sensitivity..."
        )
        steps_of_weights = ort_weight_steps(out)  # the same int8 weights in every later model, computed once
        ranked = sensitivity(
            prepared, calibration, decoded(validation, pre).spread(256), pre, config, cache, steps_of_weights
        )
        limit = max(1, len(ranked) // 2)
        for count in sorted({min(2**i, limit) for i in range(limit.bit_length() + 1)}):
            exclude = tuple(name for name, _ in ranked[:count])
            quantize_static(
                prepared, out, calibration, pre, config, exclude=exclude, cache=cache, weight_steps=steps_of_weights
            )
            figures = step(exclude)
            ratio = figures.get("latency_ratio_vs_fp32")
            speed = f", {ratio:.2f}x fp32's latency at 1 thread" if ratio is not None else ""
            console.err.print(
                f"  {count} layer(s) in float: validation top-1 {figures['val_top1']:.2%} "
                f"(drop {figures['val_drop_points']:.2f} points{speed})"
            )
            if ratio is not None and ratio >= NOT_FASTER:  # the loss said is the least of the steps still faster
                faster = [s["val_drop_points"] for s in steps if s["latency_ratio_vs_fp32"] < NOT_FASTER]
                drop = min(faster, default=first["val_drop_points"])  # none faster: all int8's loss, said plainly
                raise over_budget(
                    "ONNX int8", drop, config.max_drop, _tried(steps), ptq_hint(config), while_faster=bool(faster)
                )
            if figures["val_drop_points"] <= config.max_drop:
                return {**record, **_outcome(figures), "kept_in_float": list(exclude)}
    least = min(s["val_drop_points"] for s in steps)
    raise over_budget("ONNX int8", least, config.max_drop, _tried(steps), ptq_hint(config))


def _outcome(figures: dict) -> dict:
    """The chosen step's validation figures for the record's top level. Its latency ratio stays in ``steps``
    only: it is the search's short measurement, and the int8 model's own ratio is measured again after the
    search (one figure in the card, not two that differ by noise)."""
    return {k: v for k, v in figures.items() if k not in ("float_layers", "latency_ratio_vs_fp32")}


NOT_FASTER = 1 / SPEEDUP_WORTH_IT  # an int8 model at or above this fraction of fp32's latency is no win


def _tried(steps: list[dict]) -> str:
    """What the escalation tried, for the error: layers in float, drop and speed of each step."""
    parts = []
    for figures in steps:
        ratio = figures.get("latency_ratio_vs_fp32")
        speed = f" at {ratio:.2f}x fp32's latency at 1 thread" if ratio is not None else ""
        parts.append(f"{figures['float_layers']} in float: -{figures['val_drop_points']:.2f}{speed}")
    stop = steps[-1].get("latency_ratio_vs_fp32")
    why = "; more layers in float would be no faster than fp32" if stop is not None and stop >= NOT_FASTER else ""
    return "tried " + ", ".join(parts) + why


def coarse_budget_note(val_images: int, max_drop: float) -> str:
    """A note when one validation image is worth more than the int8 budget (e.g. 32 images: 3.1 points against
    1.0): the budget then allows no lost image and cannot see a smaller loss; empty otherwise."""
    if not val_images or 100 / val_images <= max_drop:
        return ""
    return (
        f"note: the validation split has {val_images} images (one image is {100 / val_images:.1f} points, more than "
        f"the {max_drop:g}-point int8 budget): int8 may lose no validation image, and a smaller loss cannot be seen; "
        "more validation images (or --max-drop) make the check meaningful"
    )


PTQ_HINT = "raise --max-drop, try --calib-method entropy or --int8-method qat, or use --no-int8"
OTHER_PTQ_HINT = "raise --max-drop or try --int8-method qat, or use --no-int8"  # where --calib-method does not apply


def ptq_hint(config: Int8Config) -> str:
    """What to try when post-training int8 misses the budget: another calibration method than the one that just
    failed (it suggested entropy after entropy), none for dynamic int8 (it calibrates nothing)."""
    if config.mode == "dynamic":
        return "raise --max-drop, try --int8-method static or qat, or use --no-int8"
    other = "percentile" if config.method == "entropy" else "entropy"
    return f"raise --max-drop, try --calib-method {other} or --int8-method qat, or use --no-int8"


QAT_HINT = "raise --max-drop, add training and validation images, or use --no-int8"  # QAT was the last step


def int8_budget(
    name: str,
    fp32_top1: float | None,
    int8_top1: float | None,
    max_drop: float,
    *,
    tried: str = "",
    hint: str = PTQ_HINT,
) -> float | None:
    """The one judge of int8 accuracy, for ONNX Runtime and NNCF alike: the validation top-1 drop in points, or a
    :class:`QuantizationError` past ``max_drop`` (``tried`` says what was done to hold it, ``hint`` what to do);
    None where there are no validation images to judge by (the caller records it as not checked)."""
    if fp32_top1 is None or int8_top1 is None:
        return None
    drop = points(fp32_top1, int8_top1)
    if not drop <= max_drop:  # NaN fails too
        raise over_budget(name, drop, max_drop, tried, hint)
    return drop


def over_budget(
    name: str, drop: float, max_drop: float, tried: str = "", hint: str = PTQ_HINT, *, while_faster: bool = False
) -> BudgetError:
    """``while_faster``: the budget was given up for speed (a step that held it ran no faster than fp32), and
    ``drop`` is the least loss of the steps that were still faster."""
    faster = " while faster than fp32" if while_faster else ""
    return BudgetError(
        f"{name} cannot hold the {max_drop}-point budget{faster}: it loses {drop:.2f} points of validation top-1"
        f"{f' ({tried})' if tried else ''}; {hint}",
        drop_points=drop,
    )


def ort_settings(config: Int8Config, calibration: Calibration, source: str) -> dict:
    """What the int8 model's card records about how it was made."""
    weights = {"weight_bits": config.weight_bits(), "weight_bits_why": config.weights_note()}
    if config.mode == "dynamic":
        return {
            "tool": "onnxruntime.quantize_dynamic",
            "weights": "int8 per-channel" if config.per_channel else "int8 per-tensor",
            **weights,
            "activations": "dynamic",
        }
    return {
        "tool": "onnxruntime.quantize_static",
        "format": "QDQ",
        "weights": "int8 per-channel" if config.per_channel else "int8 per-tensor",
        **weights,
        "activations": "uint8",
        "calibration_method": config.method
        + (" (moving average of per-batch ranges)" if config.method == "minmax" else ""),
        "calibration_images": len(calibration),
        "calibration_source": source,
    }


def write_tensorrt_calibration(fp32: Path, out_dir: Path, calibration: Calibration, pre: Preprocessing) -> dict:
    """What ONNX Runtime's TensorRT execution provider needs for int8 and fp16: a calibration table (computed
    here with ONNX Runtime on the CPU) and the provider options that point at it and at an engine cache."""
    import json

    from onnxruntime.quantization import CalibrationMethod, create_calibrator, write_calibration_table

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            str(fp32),
            [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(_Reader(calibration, pre, _input_name(fp32)))
        write_calibration_table(calibrator.compute_data(), dir=str(out_dir))
    options = {
        "trt_fp16_enable": True,
        "trt_int8_enable": True,
        "trt_int8_calibration_table_name": "calibration.flatbuffers",
        "trt_engine_cache_enable": True,
        # the TensorRT provider reads the table from the engine cache's folder (GetCachePath(cache_path, name)):
        # both in tensorrt/, relative to the run folder
        "trt_engine_cache_path": "tensorrt",
    }
    (out_dir / "provider_options.json").write_text(json.dumps(options, indent=2) + "\n")
    return {"file": out_dir.name, "calibration_images": len(calibration), "provider_options": options}

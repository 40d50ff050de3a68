"""int8: ONNX Runtime static post-training quantization (QDQ, per-channel), calibrated on target-domain images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample, batches
from edgetransfer.errors import QuantizationError, UsageError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Int8Config:
    """How to quantize: the careful defaults (per-channel S8 weights, U8 activations, QDQ)."""

    method: str = "minmax"
    calibration_size: int = 200
    per_channel: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise UsageError(
                f"unknown calibration method {self.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.calibration_size < 1:
            raise UsageError("calibration size must be at least 1")


def _reader(samples: tuple[Sample, ...], pre: Preprocessing, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = batches(samples, pre, batch_size=16)

        def get_next(self):
            item = next(self._batches, None)
            return None if item is None else {input_name: item[0]}

    return Reader()


def quantize_onnx(
    fp32: Path, out: Path, calibration: tuple[Sample, ...], pre: Preprocessing, config: Int8Config
) -> dict:
    """Write a QDQ int8 model of ``fp32`` to ``out``, calibrated on (a seeded subset of) ``calibration``."""
    import random

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config.validate()
    if not calibration:
        raise QuantizationError("no calibration images: the training split is empty")
    subset = list(calibration)
    random.Random(config.seed).shuffle(subset)
    subset = tuple(subset[: config.calibration_size])
    prepared = out.with_name(out.name + ".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared))
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(
            str(prepared),
            str(out),
            _reader(subset, pre, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[config.method],
        )
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise QuantizationError(f"ONNX Runtime quantization failed: {str(exc).splitlines()[0]}") from None
    finally:
        prepared.unlink(missing_ok=True)
    return {
        "method": "onnxruntime.quantize_static",
        "format": "QDQ",
        "per_channel": config.per_channel,
        "activations": "uint8",
        "weights": "int8",
        "calibration_method": config.method,
        "calibration_images": len(subset),
        "calibration_split": "train",
    }

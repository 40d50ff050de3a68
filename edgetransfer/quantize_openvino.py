"""OpenVINO int8 with NNCF: post-training quantization of the IR (with bias correction), and NNCF's
accuracy-control mode that reverts the most sensitive layers to float until the budget holds."""

from __future__ import annotations

from typing import Any

from edgetransfer.card import Preprocessing
from edgetransfer.errors import QuantizationError
from edgetransfer.evaluation import decoded
from edgetransfer.quantize import Calibration
from edgetransfer.telemetry import import_nncf, nncf_progress


def _items(samples: Calibration, pre: Preprocessing) -> list:
    """(one-image batch, label) pairs, preprocessed once."""
    data = decoded(samples, pre)
    return [(images[i : i + 1], int(labels[i])) for images, labels in data.batches() for i in range(len(images))]


def _advanced(weight_bits: int | None) -> Any:
    """NNCF's parameters for ``weight_bits``: 7 applies its overflow fix to every weight (8: NNCF's default, the
    first layer only)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from edgetransfer.quantize import Int8Config

    weight_bits = weight_bits or Int8Config().weight_bits()  # None: auto, as export's default
    return AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.FIRST_LAYER
    )


def nncf_quantize(model: Any, calibration: Calibration, pre: Preprocessing, *, weight_bits: int | None = None) -> Any:
    """An int8 copy of the ``ov.Model``: NNCF's default PTQ (min-max ranges, fast bias correction)."""
    nncf = import_nncf()
    items = _items(calibration, pre)
    try:
        with nncf_progress():  # NNCF's progress bars are not results (stdout is export's list)
            return nncf.quantize(
                model,
                nncf.Dataset(items, lambda item: item[0]),
                subset_size=len(items),
                fast_bias_correction=True,
                advanced_parameters=_advanced(weight_bits),
            )
    except Exception as exc:  # noqa: BLE001 - NNCF raises a wide variety; the user gets one line
        raise QuantizationError(f"NNCF quantization failed: {str(exc).splitlines()[0]}") from None


def nncf_quantize_with_accuracy_control(
    model: Any,
    calibration: Calibration,
    validation: Calibration,
    pre: Preprocessing,
    *,
    max_drop_points: float,
    weight_bits: int | None = None,
) -> Any:
    """Int8 whose validation top-1 stays within ``max_drop_points`` of the float model (NNCF accuracy control)."""
    import numpy as np

    nncf = import_nncf()
    calib_items, val_items = _items(calibration, pre), _items(validation, pre)

    def validate(compiled, data) -> float:
        output = compiled.output(0)
        hits = [int(np.argmax(compiled(image)[output]) == label) for image, label in data]
        return float(np.mean(hits))

    try:
        with nncf_progress():  # NNCF's progress bars are not results (stdout is export's list)
            return nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(calib_items, lambda item: item[0]),
                nncf.Dataset(val_items),
                validation_fn=validate,
                max_drop=max_drop_points / 100,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(calib_items),
                advanced_quantization_parameters=_advanced(weight_bits),
            )
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"NNCF accuracy-controlled quantization failed: {str(exc).splitlines()[0]}") from None

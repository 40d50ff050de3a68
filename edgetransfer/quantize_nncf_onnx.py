"""int8 of an ONNX model by NNCF's post-training quantization on the ONNX graph itself: a QDQ model that ONNX Runtime
and OpenVINO both run in int8.

Beside ONNX Runtime's ``quantize_static`` (:mod:`edgetransfer.quantize`), NNCF brings its own calibration: per-channel
symmetric weights, range estimation that ignores outliers, bias correction (each quantized layer's output mean
shifted back to its float mean, measured on the calibration images) and, for transformers only, SmoothQuant; for a
CNN NNCF leaves SmoothQuant off itself. The model's metadata (the card inside the ``.onnx``) is copied onto the
quantized model, so preprocessing still travels with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample
from edgetransfer.errors import QuantizationError
from edgetransfer.evaluation import Decoded, decoded
from edgetransfer.rundir import atomic_path
from edgetransfer.telemetry import import_nncf, nncf_progress

PRESETS = ("performance", "mixed")  # symmetric activations / asymmetric activations (weights symmetric in both)


def nncf_quantize_onnx(
    onnx_path: Path | str,
    out_path: Path | str,
    calibration_samples: Decoded | Sequence[Sample],
    pre: Preprocessing,
    *,
    preset: str = "performance",
    fast_bias_correction: bool = True,
    bias_correction: bool = True,
    weight_bits: int | None = None,
) -> dict:
    """Write an int8 QDQ copy of the fp32 ONNX model at ``onnx_path`` to ``out_path``, calibrated by NNCF on
    ``calibration_samples`` (images preprocessed with ``pre``); returns a record of how it was made.

    Args:
        onnx_path: the fp32 model (opset 13 or later: per-channel weights need it).
        out_path: where the int8 model goes; written only when quantization succeeded.
        calibration_samples: labelled samples or an already-decoded set; every image is used.
        pre: the model's preprocessing.
        preset: ``"performance"`` (symmetric int8 activations, NNCF's default for CNNs) or ``"mixed"``
            (asymmetric activations).
        fast_bias_correction: NNCF's fast bias correction (one pass); False runs the full, slower algorithm.
        bias_correction: False turns bias correction off altogether (plain min-max ranges).
        weight_bits: 7 applies NNCF's overflow fix to every weight (for x86 CPUs without VNNI); 8, NNCF's default
            (the first layer only); None: as export's ``--int8-weights auto`` on this CPU.

    Raises:
        QuantizationError: the model cannot be read or NNCF fails; nothing is written then.
    """
    import onnx

    if preset not in PRESETS:
        raise QuantizationError(f"unknown NNCF preset {preset!r}; choose one of {', '.join(PRESETS)}")
    data = decoded(calibration_samples, pre)
    if not len(data):
        raise QuantizationError("no calibration images (the training split or --calib folder is empty)")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - a missing, truncated or foreign file: one line
        raise QuantizationError(f"cannot read {onnx_path}: {str(exc).splitlines()[0]}") from None
    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    input_name = model.graph.input[0].name
    items = [images[i : i + 1] for images, _ in data.batches() for i in range(len(images))]
    from nncf.quantization.advanced_parameters import OverflowFix

    from edgetransfer.quantize import Int8Config

    weight_bits = weight_bits or Int8Config().weight_bits()  # None: auto, as export's default

    advanced = AdvancedQuantizationParameters(
        disable_bias_correction=not bias_correction,
        overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.FIRST_LAYER,
    )
    started = time.perf_counter()
    try:
        with nncf_progress():  # NNCF's progress bars are not results (stdout is export's list)
            quantized = nncf.quantize(
                model,
                nncf.Dataset(items, lambda item: {input_name: item}),
                preset=nncf.QuantizationPreset(preset),
                subset_size=len(items),
                fast_bias_correction=fast_bias_correction,
                advanced_parameters=advanced,
            )
    except Exception as exc:  # noqa: BLE001 - NNCF raises a wide variety; the user gets one line
        raise QuantizationError(
            f"NNCF quantization of {Path(onnx_path).name} failed: {str(exc).splitlines()[0]}"
        ) from None
    seconds = time.perf_counter() - started
    del quantized.metadata_props[:]
    for prop in model.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    with atomic_path(Path(out_path)) as tmp:
        onnx.save(quantized, str(tmp))
    nodes = [node.op_type for node in quantized.graph.node]
    return {
        "method": "nncf-onnx",
        "nncf": nncf.__version__,
        "preset": preset,
        "bias_correction": "off" if not bias_correction else "fast" if fast_bias_correction else "full",
        "weight_bits": weight_bits,
        "calibration_images": len(items),
        "quantize_nodes": nodes.count("QuantizeLinear"),
        "seconds": round(seconds, 1),
    }

"""quantize_openvino.py: NNCF post-training int8 of an OpenVINO IR, and NNCF accuracy control."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("nncf", reason="OpenVINO int8 needs nncf: pip install 'edgetransfer[train]'")
ov = pytest.importorskip("openvino", reason="needs openvino: pip install openvino")

from edgetransfer.backends.base import LoadOptions  # noqa: E402
from edgetransfer.backends.openvino import compile_model  # noqa: E402
from edgetransfer.errors import QuantizationError  # noqa: E402
from edgetransfer.evaluation import Decoded, evaluate  # noqa: E402
from edgetransfer.quantize_openvino import nncf_quantize, nncf_quantize_with_accuracy_control  # noqa: E402


@pytest.fixture(scope="module")
def fp32_ir(trained_run):
    card = trained_run.load_card()
    splits = trained_run.load_splits(card)
    return ov.convert_model(str(trained_run.file("model.onnx"))), card.preprocessing, splits


def _ops(model) -> set[str]:
    return {op.get_type_name() for op in model.get_ops()}


def test_nncf_quantize_makes_an_int8_model_that_agrees_with_fp32(fp32_ir):
    model, pre, splits = fp32_ir
    calibration = Decoded(splits.train[:16], pre)
    int8 = nncf_quantize(model, calibration, pre)
    assert "FakeQuantize" in _ops(int8) and "FakeQuantize" not in _ops(model)
    images = Decoded(splits.val, pre)
    fp32_logits = compile_model(model, LoadOptions(precision="fp32")).run(images.images)
    int8_logits = compile_model(int8, LoadOptions(), int8=True).run(images.images)
    agreement = float(np.mean(fp32_logits.argmax(1) == int8_logits.argmax(1)))
    assert agreement >= 0.8, agreement


def test_nncf_failure_is_one_line(fp32_ir):
    model, pre, splits = fp32_ir
    wrong = dataclasses.replace(pre, resize=48, crop=48)  # images the model cannot take
    with pytest.raises(QuantizationError, match="^NNCF quantization failed: ") as caught:
        nncf_quantize(model, Decoded(splits.train[:4], wrong), wrong)
    assert "\n" not in str(caught.value)


def test_accuracy_control_holds_the_budget_on_validation(fp32_ir):
    model, pre, splits = fp32_ir
    val = Decoded(splits.val, pre)
    fp32 = evaluate(compile_model(model, LoadOptions(precision="fp32")), val)
    int8 = nncf_quantize_with_accuracy_control(model, Decoded(splits.train[:16], pre), val, pre, max_drop_points=1.0)
    assert "FakeQuantize" in _ops(int8)
    assert 100 * (fp32 - evaluate(compile_model(int8, LoadOptions(), int8=True), val)) <= 1.0 + 1e-9

"""NNCF on the ONNX graph: a QDQ int8 model that keeps the card, runs in ONNX Runtime close to fp32, and nothing
written when it fails."""

from pathlib import Path

import numpy as np
import pytest

from edgetransfer.card import Preprocessing
from edgetransfer.data import Sample
from edgetransfer.errors import QuantizationError
from edgetransfer.evaluation import Decoded

pytest.importorskip("nncf", reason="nncf (a dependency) is not installed")

PRE = Preprocessing(resize=32, crop=32)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    """A small trained-looking CNN (random but fixed weights) as ONNX with a card in its metadata, and images."""
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16),
        nn.ReLU6(),
        nn.Conv2d(16, 32, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 5),
    ).eval()
    path = tmp_path_factory.mktemp("nncf") / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    proto.metadata_props.add(key="edgetransfer.card", value='{"labels": ["a"]}')
    onnx.save(proto, str(path))
    images = np.random.default_rng(0).normal(0, 1, (48, 3, 32, 32)).astype(np.float32)
    data = Decoded([Sample(Path(f"{i}.png"), i % 5) for i in range(48)], PRE, images=images)
    return path, data


def test_quantized_model_is_qdq_keeps_the_card_and_agrees_with_fp32(fp32_model, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgetransfer.quantize_nncf_onnx import nncf_quantize_onnx

    path, data = fp32_model
    out = tmp_path / "int8.onnx"
    record = nncf_quantize_onnx(path, out, data, PRE)
    assert record["method"] == "nncf-onnx" and record["calibration_images"] == 48
    assert record["bias_correction"] == "fast" and record["preset"] == "performance"
    proto = onnx.load(str(out))
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") == record["quantize_nodes"] >= 3 and "DequantizeLinear" in ops
    assert {p.key: p.value for p in proto.metadata_props} == {"edgetransfer.card": '{"labels": ["a"]}'}
    x = data.images[:16]
    fp32 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    int8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    err = np.abs(int8 - fp32).max() / np.abs(fp32).max()
    assert 0 < err < 0.1, f"int8 differs from fp32 by {err:.3f} of the output range"


def test_failures_leave_nothing_behind(fp32_model, tmp_path):
    from edgetransfer.quantize_nncf_onnx import nncf_quantize_onnx

    path, data = fp32_model
    out = tmp_path / "int8.onnx"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(path.read_bytes()[:500])
    with pytest.raises(QuantizationError, match="broken.onnx"):
        nncf_quantize_onnx(broken, out, data, PRE)
    with pytest.raises(QuantizationError, match="preset"):
        nncf_quantize_onnx(path, out, data, PRE, preset="fastest")
    with pytest.raises(QuantizationError, match="no calibration images"):
        nncf_quantize_onnx(path, out, data.head(0), PRE)
    assert list(tmp_path.iterdir()) == [broken]

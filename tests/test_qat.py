"""Quantization-aware fine-tuning: a QDQ ONNX model with int8 convolutions, the same bytes for the same seed, and
clear errors with nothing written."""

import numpy as np
import pytest

from edgetransfer.errors import QuantizationError

pytest.importorskip("nncf", reason="nncf (a dependency) is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qat_run(trained_run):
    card = trained_run.load_card()
    return trained_run, card, trained_run.load_splits(card)


def test_qat_writes_an_int8_qdq_model_deterministically(qat_run, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgetransfer.qat import QatConfig, qat_to_onnx

    run, card, splits = qat_run
    lines: list[str] = []
    config = QatConfig(epochs=1, batch_size=8, calibration_size=4, seed=3)
    first = qat_to_onnx(run, splits.train, tmp_path / "a.onnx", config, progress=lines.append)
    assert [line.split()[:3] for line in lines] == [["QAT", "epoch", "1/1"]]
    assert first["epochs"] == 1 and len(first["losses"]) == 1 and all(np.isfinite(first["losses"]))
    ops = [node.op_type for node in onnx.load(str(tmp_path / "a.onnx")).graph.node]
    assert ops.count("QuantizeLinear") >= 10 and "BatchNormalization" not in ops
    # the engine really runs the convolutions in int8: ONNX Runtime fuses them into QLinearConv
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(tmp_path / "a.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert optimized.count("QLinearConv") >= 10, optimized
    x = np.zeros((2, 3, card.preprocessing.crop, card.preprocessing.crop), np.float32)
    assert session.run(None, {"input": x})[0].shape == (2, card.num_classes)
    second = qat_to_onnx(run, splits.train, tmp_path / "b.onnx", config)
    assert second["losses"] == first["losses"]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_qat_errors_write_nothing(qat_run, tmp_path):
    from edgetransfer.errors import RunDirError
    from edgetransfer.qat import QatConfig, qat_to_onnx

    run, _, splits = qat_run
    with pytest.raises(QuantizationError, match="training images"):
        qat_to_onnx(run, (), tmp_path / "x.onnx")
    with pytest.raises(QuantizationError, match="epochs"):
        qat_to_onnx(run, splits.train, tmp_path / "x.onnx", QatConfig(epochs=0))
    with pytest.raises(RunDirError):
        qat_to_onnx(tmp_path / "no-run", splits.train, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()

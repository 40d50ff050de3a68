"""int8: the accuracy-aware loop, dynamic quantization, calibration folders, TensorRT calibration files."""

import shutil

import numpy as np
import onnx
import pytest
from conftest import make_folder
from hardware import run_if

from edgetransfer.data import list_images
from edgetransfer.errors import BackendUnavailableError, DataError, QuantizationError, UsageError
from edgetransfer.export import ExportConfig, export
from edgetransfer.quantize import Int8Config, prepare, quantize_accuracy_aware, write_tensorrt_calibration
from edgetransfer.rundir import RunDir


def float_convs(path) -> int:
    """Conv nodes whose weight is not dequantized from int8, i.e. kept in float."""
    model = onnx.load(str(path))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type == "Conv" and n.input[1] not in dequantized)


@pytest.fixture
def prepared(trained_run, tmp_path):
    path = tmp_path / "prepared.onnx"
    prepare(trained_run.file("model.onnx"), path)
    return path


def test_accuracy_aware_keeps_layers_in_float_until_the_budget_holds(trained_run, prepared, tmp_path):
    from edgetransfer.data import load_splits

    card = trained_run.load_card()
    splits = load_splits(card.dataset["path"], seed=0)
    calls = []

    def accuracy(path):  # pretend: int8 costs 3 points unless at least 3 convs stay in float
        calls.append(float_convs(path))
        return 0.90 if calls[-1] >= 3 else 0.87

    record = quantize_accuracy_aware(
        prepared,
        tmp_path / "q.onnx",
        splits.train[:8],
        splits.val,
        card.preprocessing,
        Int8Config(),
        fp32_accuracy=0.90,
        accuracy=accuracy,
    )
    assert calls == [0, 1, 2, 4]  # all int8, then 1, 2, 4 layers kept in float
    assert len(record["kept_in_float"]) == 4 and record["val_drop_points"] == pytest.approx(0)
    assert float_convs(tmp_path / "q.onnx") == 4
    with pytest.raises(QuantizationError, match="cannot hold the 1.0-point budget"):
        quantize_accuracy_aware(
            prepared,
            tmp_path / "q.onnx",
            splits.train[:8],
            splits.val,
            card.preprocessing,
            Int8Config(),
            fp32_accuracy=0.90,
            accuracy=lambda path: 0.5,
        )


@pytest.fixture
def run_copy(trained_run, tmp_path):
    shutil.copytree(trained_run.path, tmp_path / "run")
    return RunDir.open(tmp_path / "run")


def test_fp16_dynamic_int8_and_a_calibration_folder(run_copy, tmp_path):
    calib = make_folder(tmp_path / "calib", per_class=2, classes=2)
    export(run_copy, ExportConfig(fp16=True, int8=Int8Config(mode="static", calibration_dir=str(calib))))
    card = run_copy.load_card()
    assert card.artifacts["model.int8.onnx"]["quantization"]["calibration_source"] == str(calib)
    assert card.artifacts["model.int8.onnx"]["quantization"]["calibration_images"] == 4
    assert card.artifacts["model.fp16.onnx"]["parity"]["top1_agreement"] >= 0.95
    fp16 = onnx.load(str(run_copy.file("model.fp16.onnx")))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    assert run_copy.file("openvino/model.fp16.xml").is_file()
    assert card.artifacts["openvino/model.int8.xml"]["quantization"]["tool"].startswith("nncf")

    export(run_copy, ExportConfig(int8=Int8Config(mode="dynamic"), openvino=False))
    card = run_copy.load_card()
    assert card.artifacts["model.int8.onnx"]["quantization"]["tool"] == "onnxruntime.quantize_dynamic"
    assert not run_copy.file("model.fp16.onnx").exists(), "a stale fp16 file would contradict the card"
    assert "onnx_fp16" not in card.metrics and "openvino_fp32" not in card.metrics
    assert not run_copy.file("openvino/model.xml").exists()
    import onnxruntime as ort

    session = ort.InferenceSession(str(run_copy.file("model.int8.onnx")))
    assert session.run(None, {"input": np.zeros((2, 3, 32, 32), np.float32)})[0].shape == (2, 3)


def test_empty_calibration_folder(run_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        export(run_copy, ExportConfig(int8=Int8Config(calibration_dir=str(tmp_path / "empty"))))
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "missing")


def test_bad_int8_options(run_copy):
    for bad in (Int8Config(mode="int4"), Int8Config(max_drop=-1), Int8Config(openvino="tflite")):
        with pytest.raises(UsageError):
            export(run_copy, ExportConfig(int8=bad))


@run_if(nvidia_gpu=False)
def test_tensorrt_needs_a_gpu_and_says_so(run_copy):
    with pytest.raises(BackendUnavailableError, match="TensorRT execution provider"):
        export(run_copy, ExportConfig(tensorrt=True))


def test_tensorrt_calibration_table_is_written(trained_run, tmp_path):
    card = trained_run.load_card()
    images = list_images(trained_run.load_card().dataset["path"])[:4]
    record = write_tensorrt_calibration(trained_run.file("model.onnx"), tmp_path / "trt", images, card.preprocessing)
    assert (tmp_path / "trt" / "calibration.flatbuffers").stat().st_size > 0
    assert record["provider_options"]["trt_int8_enable"]

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetransfer.errors import UsageError
from edgetransfer.safety import check_onnx_external_data


def model_with_external_data(folder, location):
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    path = folder / "m.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(path))
    return path


def test_external_data_inside_the_folder_is_fine(tmp_path):
    check_onnx_external_data(model_with_external_data(tmp_path, "m.data"))


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../escape.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    with pytest.raises(UsageError, match="outside its folder"):
        check_onnx_external_data(model_with_external_data(tmp_path, location))


def test_a_corrupt_model_is_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all \x00\x01")
    with pytest.raises(UsageError, match="not a readable ONNX model") as info:
        check_onnx_external_data(tmp_path / "bad.onnx")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("version", "refused"), [("1.23.2", True), ("1.20.1", True), ("1.25.0", False), ("1.32.0", False)]
)
def test_an_onnxruntime_that_loads_escaping_external_data_is_refused_without_onnx(
    tmp_path, monkeypatch, version, refused
):
    """Without the onnx package (a runtime-only install) the paths are left to onnxruntime, which refuses escapes
    from 1.25 on; 1.20 and 1.23 (the last for Python 3.10) loaded ``../secret.bin`` when tried: refused by name."""
    import sys

    import onnxruntime

    path = model_with_external_data(tmp_path, "m.data")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError, as on a device
    monkeypatch.setitem(sys.modules, "onnx.external_data_helper", None)
    monkeypatch.setattr(onnxruntime, "__version__", version)
    if refused:
        with pytest.raises(UsageError, match=f"onnxruntime {version} loads .* pip install onnx, or onnxruntime>=1.25"):
            check_onnx_external_data(path)
    else:
        check_onnx_external_data(path)

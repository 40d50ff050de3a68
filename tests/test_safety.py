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

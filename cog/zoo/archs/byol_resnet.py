"""BYOL's ResNet-50 (Grill et al.) as converted from the JAX/Haiku release by byol-convert.

byol-convert (github.com/chigur/byol-convert, resnet.py + convert.py) stores a torchvision
ResNet-50 state dict (same key names, no `num_batches_tracked`) whose convolutions and max
pool have padding 0; its forward pads every conv and the max pool with TensorFlow "SAME"
padding computed from the input size (extra pixel at the bottom/right, zeros). Here the
torchvision modules are swapped for SAME-padding versions, so the keys stay torchvision's.
The feature is the average-pooled layer4 output (2048-d); the linear-eval classifier
(`fc`, trained during BYOL pre-training) is dropped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from cog.zoo.archs._common import StateDict, convert_state_dict, headless_resnet

WEIGHTS_URL = "https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl"
DROPPED = ("fc.*",)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TF "SAME": output ceil(size/stride), odd pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """Zero-pad an NCHW tensor so a padding-0 window op reproduces TF "SAME"."""
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1], dilation[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom))
    return x


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed per input (its own padding is 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size, self.stride, self.dilation))


class SameMaxPool2d(nn.MaxPool2d):
    """MaxPool2d after zero "SAME" padding, as byol-convert does (inputs are post-ReLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = nn.modules.utils._pair(self.kernel_size), nn.modules.utils._pair(self.stride)
        return super().forward(pad_same(x, k, s))


def _same_conv(conv: nn.Conv2d) -> SameConv2d:
    same = SameConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        padding=0,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    same.weight, same.bias = conv.weight, conv.bias  # keep torchvision's initialisation
    return same


def tf_same_resnet(model: nn.Module) -> nn.Module:
    """Swap every Conv2d / MaxPool2d of a torchvision ResNet for its SAME-padding twin."""
    for name, module in list(model.named_modules()):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(module, nn.Conv2d) and not isinstance(module, SameConv2d):
            setattr(parent, attr, _same_conv(module))
        elif isinstance(module, nn.MaxPool2d) and not isinstance(module, SameMaxPool2d):
            setattr(parent, attr, SameMaxPool2d(module.kernel_size, module.stride, padding=0))
    return model


def byol_resnet50() -> nn.Module:
    """torchvision ResNet-50 with TF-SAME padding and fc = identity; feature 2048-d."""
    return headless_resnet(tf_same_resnet(resnet50(weights=None)))


def convert_byol_resnet50(ckpt: Any) -> tuple[StateDict, list[str]]:
    """byol-convert output (`pretrain_res50x1.pth.tar`, a plain state dict) -> byol_resnet50."""
    return convert_state_dict(
        ckpt,
        arch="byol_resnet50",
        builder=byol_resnet50,
        entries=("state_dict",),
        dropped=DROPPED,
    )

"""NAT-M4 (Lu et al., Neural Architecture Transfer), a MobileNetV3-like net with mish.

Rebuilt from the released `subnets/imagenet/NAT-M4/net.config` of
github.com/human-analysis/neural-architecture-transfer (NATNet in
codebase/networks/natnet.py, layers in codebase/modules/layers.py). Module names follow that
code so the released `net.weights` (a plain state dict) loads without renaming. The feature
is the output of `feature_mix_layer` (1x1 conv + mish on the globally pooled map): 1536-d.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cog import CogError
from cog.zoo.archs._common import StateDict, convert_state_dict

DROPPED = ("classifier.*",)
WEIGHTS_URL = (
    "https://www.zhichaolu.com/assets/neural-architecture-transfer/pretrained/imagenet/"
    "net-img@240-flops@600-top1@80.5/net.weights"
)


@dataclass(frozen=True)
class MBBlock:
    """One MobileInvertedResidualBlock of a net.config."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    expand: float
    mid: int | None
    se: bool
    skip: bool  # shortcut is an IdentityLayer
    act: str = "mish"


# (in, out, kernel, stride, expand_ratio, mid_channels, use_se, identity shortcut), in the
# order of `blocks` in subnets/imagenet/NAT-M4/net.config.
NAT_M4_BLOCKS = tuple(
    MBBlock(*row)
    for row in (
        (24, 24, 3, 1, 1, None, False, True),
        (24, 32, 3, 2, 3, 72, False, False),
        (32, 32, 5, 1, 4, 128, False, True),
        (32, 32, 3, 1, 3, 96, False, True),
        (32, 48, 5, 2, 4, 128, True, False),
        (48, 48, 5, 1, 4, 192, True, True),
        (48, 48, 3, 1, 6, 288, True, True),
        (48, 48, 5, 1, 3, 144, True, True),
        (48, 96, 7, 2, 6, 288, False, False),
        (96, 96, 5, 1, 6, 576, False, True),
        (96, 96, 3, 1, 3, 288, False, True),
        (96, 96, 5, 1, 4, 384, False, True),
        (96, 136, 3, 1, 6, 576, True, False),
        (136, 136, 5, 1, 6, 816, True, True),
        (136, 136, 7, 1, 6, 816, True, True),
        (136, 136, 3, 1, 4, 544, True, True),
        (136, 192, 3, 2, 6, 816, True, False),
        (192, 192, 3, 1, 6, 1152, True, True),
        (192, 192, 5, 1, 6, 1152, True, True),
        (192, 192, 3, 1, 3, 576, True, True),
    )
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of `divisor`, never more than 10% below (the TF MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _act(name: str | None) -> nn.Module | None:
    acts = {
        "mish": nn.Mish,
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "h_swish": nn.Hardswish,
        "swish": nn.SiLU,
    }
    if name is None:
        return None
    if name not in acts:
        raise CogError(f"NATNet: activation {name!r} is not supported (known: {sorted(acts)})")
    return acts[name]()


class ConvLayer(nn.Sequential):
    """conv -> [bn] -> [act], the `weight_bn_act` ConvLayer of the NAT code (`same` padding)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int = 1,
        stride: int = 1,
        bn: bool = True,
        act: str | None = "mish",
        groups: int = 1,
    ) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False))
        ]
        if bn:
            layers.append(("bn", nn.BatchNorm2d(c_out)))
        activation = _act(act)
        if activation is not None:
            layers.append(("act", activation))
        super().__init__(OrderedDict(layers))


class SEModule(nn.Module):
    """Squeeze-excitation with a hard-sigmoid gate, reduction 4 rounded to a multiple of 8."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = make_divisible(channels // 4)
        self.fc = nn.Sequential(
            OrderedDict(
                [
                    ("reduce", nn.Conv2d(channels, mid, 1)),
                    ("relu", nn.ReLU()),
                    ("expand", nn.Conv2d(mid, channels, 1)),
                    ("h_sigmoid", nn.Hardsigmoid()),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class MBInvertedConvLayer(nn.Module):
    """Optional 1x1 expansion, depthwise kxk (+SE), linear 1x1 projection."""

    def __init__(self, b: MBBlock) -> None:
        super().__init__()
        act = b.act
        mid = b.mid if b.mid is not None else round(b.in_ch * b.expand)
        self.inverted_bottleneck = None if b.expand == 1 else ConvLayer(b.in_ch, mid, 1, act=act)
        depth = ConvLayer(mid, mid, b.kernel, b.stride, act=act, groups=mid)
        if b.se:
            depth.add_module("se", SEModule(mid))
        self.depth_conv = depth
        self.point_linear = ConvLayer(mid, b.out_ch, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class MobileInvertedResidualBlock(nn.Module):
    def __init__(self, b: MBBlock) -> None:
        super().__init__()
        self.mobile_inverted_conv = MBInvertedConvLayer(b)
        self.skip = b.skip  # the IdentityLayer shortcut has no parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mobile_inverted_conv(x)
        return out + x if self.skip else out


class NATNet(nn.Module):
    """NATNet without its classifier: forward returns the pooled feature_mix output."""

    def __init__(
        self,
        blocks: Sequence[MBBlock],
        stem_ch: int = 24,
        expand_ch: int = 1152,
        feature_ch: int = 1536,
        acts: Sequence[str | None] = ("mish",) * 3,
        bn_eps: float = 1e-5,
    ) -> None:
        """`acts`: activations of first_conv, final_expand_layer and feature_mix_layer."""
        super().__init__()
        self.first_conv = ConvLayer(3, stem_ch, 3, 2, act=acts[0])
        self.blocks = nn.ModuleList(MobileInvertedResidualBlock(b) for b in blocks)
        self.final_expand_layer = ConvLayer(blocks[-1].out_ch, expand_ch, 1, act=acts[1])
        self.feature_mix_layer = ConvLayer(expand_ch, feature_ch, 1, bn=False, act=acts[2])
        self.feature_dim = feature_ch
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = bn_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.final_expand_layer(x).mean((2, 3), keepdim=True)
        return self.feature_mix_layer(x).flatten(1)


def natnet_from_config(config: Mapping[str, Any]) -> NATNet:
    """Build any NAT subnet from its released net.config (parsed JSON)."""
    try:
        blocks = [
            MBBlock(
                c["in_channels"],
                c["out_channels"],
                c["kernel_size"],
                c["stride"],
                c["expand_ratio"],
                c.get("mid_channels"),
                bool(c.get("use_se", False)),
                (b.get("shortcut") or {}).get("name") == "IdentityLayer",
                c.get("act_func", "relu6"),
            )
            for b in config["blocks"]
            for c in [b["mobile_inverted_conv"]]
        ]
        layers = [config[k] for k in ("first_conv", "final_expand_layer", "feature_mix_layer")]
        if [layer.get("use_bn", True) for layer in layers] != [True, True, False]:
            raise CogError(
                "NAT net.config: only BatchNorm in first_conv and final_expand_layer "
                "(not in feature_mix_layer) is supported, as in all released subnets"
            )
        return NATNet(
            blocks,
            stem_ch=layers[0]["out_channels"],
            expand_ch=layers[1]["out_channels"],
            feature_ch=layers[2]["out_channels"],
            acts=[layer.get("act_func") for layer in layers],
            bn_eps=config.get("bn", {}).get("eps", 1e-5),
        )
    except (KeyError, TypeError) as exc:
        raise CogError(
            f"NAT net.config: missing or malformed field {exc}; pass the released "
            "net.config JSON of a NAT subnet"
        ) from exc


def nat_m4() -> NATNet:
    """NAT-M4 (9.1M params with its classifier, trained at 240 px); feature 1536-d."""
    return NATNet(NAT_M4_BLOCKS)


def convert_nat_m4(ckpt: Any) -> tuple[StateDict, list[str]]:
    """`net.weights` (plain state dict; a `state_dict` entry is also accepted) -> nat_m4."""
    return convert_state_dict(
        ckpt, arch="nat_m4", builder=nat_m4, entries=("state_dict",), dropped=DROPPED
    )

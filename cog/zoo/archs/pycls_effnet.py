"""EfficientNet-B1/B4 as trained by FAIR's pycls (Radosavovic et al., "Designing Network
Design Spaces" baselines), mapped onto timm's `efficientnet_b1` / `efficientnet_b4`.

pycls' EffNet (pycls/models/effnet.py; configs/dds_baselines/effnet/EN-B{1,4}_dds_8gpu.yaml)
is block for block the timm architecture: symmetric (k-1)//2 padding, BN eps 1e-5, SiLU, SE
with int(w_in * 0.25) channels gated by a sigmoid, skip iff stride 1 and w_in == w_out, the
same widths and depths. Only the key names differ, hence the key map below (proven value by
value in tests/test_archs.py). pycls models were trained on BGR input: forward flips the
channels of the (RGB, ImageNet-normalized) input first, as the CoG authors did.
The feature is the pooled output of the head conv + BN + SiLU (B1 1280, B4 1792).
"""

from __future__ import annotations

import re
from typing import Any

import timm
import torch
from torch import nn

from cog.zoo.archs._common import StateDict, convert_state_dict

WEIGHTS_URLS = {
    "b1": "https://dl.fbaipublicfiles.com/pycls/dds_baselines/161304979/EN-B1_dds_8gpu.pyth",
    "b4": "https://dl.fbaipublicfiles.com/pycls/dds_baselines/161305098/EN-B4_dds_8gpu.pyth",
}

# EN.* of the pycls configs (train IM_SIZE 240 / 380, test 274 / 434).
PYCLS_CONFIGS = {
    "b1": dict(
        stem_w=32,
        depths=(2, 3, 3, 4, 4, 5, 2),
        widths=(16, 24, 40, 80, 112, 192, 320),
        exp_ratios=(1, 6, 6, 6, 6, 6, 6),
        kernels=(3, 3, 5, 3, 5, 5, 3),
        strides=(1, 2, 2, 2, 1, 2, 1),
        head_w=1280,
        train_size=240,
    ),
    "b4": dict(
        stem_w=48,
        depths=(2, 4, 4, 6, 6, 8, 2),
        widths=(24, 32, 56, 112, 160, 272, 448),
        exp_ratios=(1, 6, 6, 6, 6, 6, 6),
        kernels=(3, 3, 5, 3, 5, 5, 3),
        strides=(1, 2, 2, 2, 1, 2, 1),
        head_w=1792,
        train_size=380,
    ),
}

DROPPED = ("head.fc.*",)

_FIXED = {
    "stem.conv": "conv_stem",
    "stem.bn": "bn1",
    "head.conv": "conv_head",
    "head.conv_bn": "bn2",
}
# pycls MBConv member -> timm member, for blocks without (DS) and with (IR) an expansion conv
_DS = {"dwise": "conv_dw", "dwise_bn": "bn1", "lin_proj": "conv_pw", "lin_proj_bn": "bn2"}
_IR = {
    "exp": "conv_pw",
    "exp_bn": "bn1",
    "dwise": "conv_dw",
    "dwise_bn": "bn2",
    "lin_proj": "conv_pwl",
    "lin_proj_bn": "bn3",
}
_SE = {"se.f_ex.0": "se.conv_reduce", "se.f_ex.2": "se.conv_expand"}
_BLOCK = re.compile(r"s(\d+)\.b(\d+)\.(.+)\.(\w+)$")
_OTHER = re.compile(r"(.+)\.(\w+)$")


class PyclsEfficientNet(nn.Module):
    """timm EfficientNet without classifier, fed BGR: forward returns the pooled head output.

    `flip_to_bgr=True`: forward takes RGB-ordered normalized images and flips them itself.
    Pass False when the preprocessing already flips (then forward expects BGR); never both.
    """

    def __init__(self, variant: str, flip_to_bgr: bool = True) -> None:
        super().__init__()
        self.net = timm.create_model(f"efficientnet_{variant}", pretrained=False, num_classes=0)
        self.feature_dim = self.net.num_features
        self.flip_to_bgr = flip_to_bgr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flip(1) if self.flip_to_bgr else x)


def pycls_effnet_b1(flip_to_bgr: bool = True) -> PyclsEfficientNet:
    """pycls EfficientNet-B1 (train size 240); feature 1280-d."""
    return PyclsEfficientNet("b1", flip_to_bgr)


def pycls_effnet_b4(flip_to_bgr: bool = True) -> PyclsEfficientNet:
    """pycls EfficientNet-B4 (train size 380); feature 1792-d."""
    return PyclsEfficientNet("b4", flip_to_bgr)


def pycls_to_timm_key(key: str, exp_ratios: tuple[int, ...]) -> str:
    """One pycls EffNet key -> the `PyclsEfficientNet` key (unknown keys come back as is)."""
    m = _BLOCK.match(key)
    if m:
        stage, block, member, leaf = int(m[1]), int(m[2]), m[3], m[4]
        if not 1 <= stage <= len(exp_ratios) or block < 1:
            return key
        table = {**(_DS if exp_ratios[stage - 1] == 1 else _IR), **_SE}
        if member not in table:
            return key
        return f"net.blocks.{stage - 1}.{block - 1}.{table[member]}.{leaf}"
    m = _OTHER.match(key)
    if m and m[1] in _FIXED:
        return f"net.{_FIXED[m[1]]}.{m[2]}"
    return key


def _converter(variant: str):
    builder = {"b1": pycls_effnet_b1, "b4": pycls_effnet_b4}[variant]
    exp_ratios = PYCLS_CONFIGS[variant]["exp_ratios"]

    def convert(ckpt: Any) -> tuple[StateDict, list[str]]:
        return convert_state_dict(
            ckpt,
            arch=f"pycls_effnet_{variant}",
            builder=builder,
            entries=("model_state",),
            dropped=DROPPED,
            rename=lambda k: pycls_to_timm_key(k, exp_ratios),
        )

    convert.__doc__ = f"pycls EN-{variant.upper()} `model_state` -> pycls_effnet_{variant}."
    return convert


convert_pycls_effnet_b1 = _converter("b1")
convert_pycls_effnet_b4 = _converter("b4")

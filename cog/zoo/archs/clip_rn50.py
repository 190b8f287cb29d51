"""CLIP RN50 image encoder (Radford et al.), mapped onto timm's `resnet50_clip`.

OpenAI's ModifiedResNet (github.com/openai/CLIP, clip/model.py) has a 3-conv stem (3x3/2,
3x3, 3x3, each BN+ReLU) with a 2x2 average pool, bottlenecks that downsample by 2x2 average
pooling (after the 3x3 conv, and before the 1x1 shortcut conv), and an attention pool:
the mean token is prepended, a learned positional embedding added, 32-head attention
(head width 64) of that token over all 50 tokens, then `c_proj` to 1024-d. timm's
`resnet50_clip` is that network (same 32 heads, scale head_dim ** -0.5, token pooling);
`openai_to_timm_key` renames the `visual.*` keys of the OpenAI state dict. The feature is
`encode_image`: the attention-pooled, projected 1024-d embedding.

OpenAI runs the encoder in fp16 on CUDA (conv/linear weights half, BatchNorm kept fp32), as
the CoG authors did; `precision="fp16"` approximates that with fp16 autocast on the input's
device (the feature is returned as float32); the default is fp32.
"""

from __future__ import annotations

import re
from typing import Any

import timm
import torch
from torch import nn

from cog import CogError
from cog.zoo.archs._common import StateDict, convert_state_dict

# Keys of the OpenAI state dict that are not the image encoder (text tower, logit scale,
# and the metadata buffers of the TorchScript archive).
DROPPED = (
    "positional_embedding",
    "text_projection",
    "logit_scale",
    "token_embedding.*",
    "transformer.*",
    "ln_final.*",
    "input_resolution",
    "context_length",
    "vocab_size",
)

_STAGE = re.compile(r"visual\.layer([1-4])\.(\d+)\.(conv|bn)([1-3])\.(\w+)$")
_DOWN = re.compile(r"visual\.layer([1-4])\.(\d+)\.downsample\.([01])\.(\w+)$")
_STEM = re.compile(r"visual\.(conv|bn)([1-3])\.(\w+)$")
_POOL = {
    "positional_embedding": "pos_embed",
    "q_proj.weight": "q.weight",
    "q_proj.bias": "q.bias",
    "k_proj.weight": "k.weight",
    "k_proj.bias": "k.bias",
    "v_proj.weight": "v.weight",
    "v_proj.bias": "v.bias",
    "c_proj.weight": "proj.weight",
    "c_proj.bias": "proj.bias",
}
_CONV_NAMES = {"1": "conv1_1x1", "2": "conv2_kxk", "3": "conv3_1x1"}


def openai_to_timm_key(key: str) -> str:
    """One OpenAI CLIP `visual.*` key -> the `ClipRN50` key (unknown keys unchanged)."""
    if m := _STAGE.match(key):
        layer = "conv" if m[3] == "conv" else "bn"
        return f"net.stages.{int(m[1]) - 1}.{m[2]}.{_CONV_NAMES[m[4]]}.{layer}.{m[5]}"
    if m := _DOWN.match(key):
        layer = "conv" if m[3] == "0" else "bn"
        return f"net.stages.{int(m[1]) - 1}.{m[2]}.shortcut.conv.{layer}.{m[4]}"
    if m := _STEM.match(key):
        return f"net.stem.conv{m[2]}.{m[1]}.{m[3]}"
    if key.startswith("visual.attnpool.") and key[len("visual.attnpool.") :] in _POOL:
        return "net.head." + _POOL[key[len("visual.attnpool.") :]]
    return key


class ClipRN50(nn.Module):
    """timm resnet50_clip with its attention pool projecting to 1024: `encode_image`."""

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in ("fp32", "fp16"):
            raise CogError(f"clip_rn50: precision must be 'fp32' or 'fp16', not {precision!r}")
        self.net = timm.create_model("resnet50_clip", pretrained=False, num_classes=1024)
        self.feature_dim = 1024
        self.precision = precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp16":
            with torch.autocast(x.device.type, dtype=torch.float16):
                return self.net(x).float()
        return self.net(x)


def clip_rn50(precision: str = "fp32") -> ClipRN50:
    """CLIP RN50 image encoder; feature = encode_image (1024-d)."""
    return ClipRN50(precision)


def convert_clip_rn50(ckpt: Any) -> tuple[StateDict, list[str]]:
    """OpenAI CLIP RN50 state dict (or its TorchScript archive) -> clip_rn50."""
    return convert_state_dict(
        ckpt,
        arch="clip_rn50",
        builder=clip_rn50,
        entries=("state_dict",),
        dropped=DROPPED,
        rename=openai_to_timm_key,
    )

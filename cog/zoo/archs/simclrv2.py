"""SimCLR-v2 ResNet-50 (1x, no selective kernels) as converted by SimCLRv2-Pytorch,
mapped onto torchvision's resnet50.

github.com/Separius/SimCLRv2-Pytorch (resnet.py `get_resnet(50, 1, 0)`, convert.py) builds
a ResNet-50 v1.5 whose modules are nested Sequentials: stem `net.0` (7x7/2 conv, BN+ReLU,
3x3/2 max pool, symmetric padding), stages `net.1`..`net.4` of `blocks.j` with
`net.{0,2,4}` convs, `net.{1,3,5}.0` BNs (eps 1e-5) and a `projection` (1x1 strided conv +
BN) on the first block. That is torchvision's resnet50 exactly (stride on the 3x3 conv), so
only the key names differ: see `separius_to_torchvision_key`. The converter writes
{"resnet": state_dict, "head": contrastive head}; only "resnet" is read and its supervised
`fc` is dropped. Forward with apply_fc=False is `net(x).mean([2, 3])`: the pooled 2048-d
feature, i.e. torchvision's avgpool output. The TF weights expect raw [0, 1] RGB input.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from torchvision.models import resnet50

from cog.zoo.archs._common import StateDict, convert_state_dict, headless_resnet

DROPPED = ("fc.*",)

_BLOCK = re.compile(r"net\.([1-4])\.blocks\.(\d+)\.(.+)$")
_MEMBERS = {
    "net.0.": "conv1.",
    "net.1.0.": "bn1.",
    "net.2.": "conv2.",
    "net.3.0.": "bn2.",
    "net.4.": "conv3.",
    "net.5.0.": "bn3.",
    "projection.shortcut.": "downsample.0.",
    "projection.bn.0.": "downsample.1.",
}
_STEM = {"net.0.0.": "conv1.", "net.0.1.0.": "bn1."}


def _swap(rest: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if rest.startswith(old) and rest.count(".") == old.count("."):
            return new + rest[len(old) :]
    return None


def separius_to_torchvision_key(key: str) -> str:
    """One SimCLRv2-Pytorch ResNet key -> torchvision resnet50 key (unknown keys unchanged)."""
    m = _BLOCK.match(key)
    if m:
        member = _swap(m[3], _MEMBERS)
        return f"layer{m[1]}.{m[2]}.{member}" if member else key
    return _swap(key, _STEM) or key


def simclrv2_resnet50() -> nn.Module:
    """torchvision ResNet-50 with fc = identity; feature = spatial mean of layer4 (2048-d)."""
    return headless_resnet(resnet50(weights=None))


def convert_simclrv2_resnet50(ckpt: Any) -> tuple[StateDict, list[str]]:
    """`r50_1x_sk0.pth` ({"resnet": ..., "head": ...}) -> simclrv2_resnet50."""
    return convert_state_dict(
        ckpt,
        arch="simclrv2_resnet50",
        builder=simclrv2_resnet50,
        entries=("resnet",),
        dropped=DROPPED,
        rename=separius_to_torchvision_key,
    )

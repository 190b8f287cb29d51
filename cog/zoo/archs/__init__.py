"""Architectures timm and torchvision lack, each with a converter from its original checkpoint.

Registry (timm-like, declarative): `SPECS[name]` is an `ArchSpec`; the flat views used by
`cog.zoo` are

- `ARCHS[name](**kwargs) -> nn.Module`: forward maps preprocessed images [B, 3, H, W] to the
  paper's feature [B, D]; the module has `feature_dim` (= D).
- `CONVERTERS[name](ckpt) -> state_dict`: `ckpt` is the ORIGINAL checkpoint object as
  returned by `torch.load` (nested entries such as `state_dict_ema`, `model_state`, `resnet`
  are found automatically); the result loads with `strict=True` into `ARCHS[name]()`.
  Anything missing, unexpected or mis-shaped raises `CogError` listing the keys.
- `DROPPED[name]`: fnmatch patterns of the original keys deliberately dropped (heads).
- `convert(name, ckpt) -> (state_dict, dropped_keys)` when the dropped keys are wanted.

Where the network equals a timm/torchvision one, the module IS that network and the
converter renames keys (pycls EfficientNet -> timm efficientnet, SimCLR-v2 -> torchvision
resnet50, OpenAI CLIP -> timm resnet50_clip); NAT-M4 and T2T-ViT_t-14 are implemented here
with the original module names; BYOL's ResNet-50 is torchvision's with TF "SAME" padding.
tests/test_archs.py checks every key map value by value and every forward against a
functional restatement of the original code.

Builder options: `pycls_effnet_b*(flip_to_bgr=True)` flips RGB -> BGR inside forward (pass
False only if the preprocessing flips already); `clip_rn50(precision="fp32"|"fp16")` (fp16
autocast, as OpenAI ran it on GPU); `t2t_vit_t_14(qk_scale=None)` (attention scale, see
cog.zoo.archs.t2t_vit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from cog import CogError
from cog.zoo.arch_names import ARCH_NAMES
from cog.zoo.archs import byol_resnet, clip_rn50, nat, pycls_effnet, simclrv2, t2t_vit
from cog.zoo.archs._common import StateDict


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: how to build it, how to read its original checkpoint, where from."""

    builder: Callable[..., nn.Module]
    convert: Callable[[Any], tuple[StateDict, list[str]]]
    feature_dim: int
    input_size: int
    dropped: tuple[str, ...]
    checkpoint: str  # the original checkpoint and the entry holding its weights
    source: str  # the original code this module reproduces (repository + path)

    @property
    def name(self) -> str:
        """The builder's name: cog.zoo.arch_names.ARCH_NAMES lists them all."""
        return self.builder.__name__


SPECS: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        ArchSpec(
            nat.nat_m4,
            nat.convert_nat_m4,
            1536,
            224,
            nat.DROPPED,
            f"{nat.WEIGHTS_URL}: plain state dict",
            "human-analysis/neural-architecture-transfer: codebase/networks/natnet.py, "
            "codebase/modules/layers.py, subnets/imagenet/NAT-M4/net.config",
        ),
        ArchSpec(
            t2t_vit.t2t_vit_t_14,
            t2t_vit.convert_t2t_vit_t_14,
            384,
            224,
            t2t_vit.DROPPED,
            "Google Drive file 1WdUT-3qq3duhECKk1CabXGktvd24p3Ti (manual download): timm "
            "training checkpoint, EMA weights under 'state_dict_ema' (else 'state_dict')",
            "yitu-opensource/T2T-ViT: models/t2t_vit.py, models/token_transformer.py, "
            "models/transformer_block.py",
        ),
        ArchSpec(
            pycls_effnet.pycls_effnet_b1,
            pycls_effnet.convert_pycls_effnet_b1,
            1280,
            240,
            pycls_effnet.DROPPED,
            f"{pycls_effnet.WEIGHTS_URLS['b1']}: weights under 'model_state'",
            "facebookresearch/pycls: pycls/models/effnet.py, pycls/models/blocks.py, "
            "configs/dds_baselines/effnet/EN-B1_dds_8gpu.yaml",
        ),
        ArchSpec(
            pycls_effnet.pycls_effnet_b4,
            pycls_effnet.convert_pycls_effnet_b4,
            1792,
            380,
            pycls_effnet.DROPPED,
            f"{pycls_effnet.WEIGHTS_URLS['b4']}: weights under 'model_state'",
            "facebookresearch/pycls: pycls/models/effnet.py, pycls/models/blocks.py, "
            "configs/dds_baselines/effnet/EN-B4_dds_8gpu.yaml",
        ),
        ArchSpec(
            byol_resnet.byol_resnet50,
            byol_resnet.convert_byol_resnet50,
            2048,
            224,
            byol_resnet.DROPPED,
            f"{byol_resnet.WEIGHTS_URL} converted by byol-convert's convert.py: plain "
            "torchvision-keyed state dict without num_batches_tracked",
            "chigur/byol-convert: resnet.py (pad_same), convert.py",
        ),
        ArchSpec(
            simclrv2.simclrv2_resnet50,
            simclrv2.convert_simclrv2_resnet50,
            2048,
            224,
            simclrv2.DROPPED,
            "r50_1x_sk0.pth from SimCLRv2-Pytorch's convert.py: weights under 'resnet' "
            "('head' = contrastive head, not read)",
            "Separius/SimCLRv2-Pytorch: resnet.py (get_resnet), convert.py",
        ),
        ArchSpec(
            clip_rn50.clip_rn50,
            clip_rn50.convert_clip_rn50,
            1024,
            224,
            clip_rn50.DROPPED,
            "OpenAI RN50.pt (TorchScript archive; its state_dict(), or a plain state dict): "
            "image encoder under 'visual.*'",
            "openai/CLIP: clip/model.py (ModifiedResNet, AttentionPool2d)",
        ),
    )
}

if tuple(SPECS) != ARCH_NAMES:  # a builder added here must be named in the one list too
    raise ImportError(f"cog.zoo.archs builds {tuple(SPECS)} but ARCH_NAMES lists {ARCH_NAMES}")
ARCHS: dict[str, Callable[..., nn.Module]] = {n: s.builder for n, s in SPECS.items()}
DROPPED: dict[str, list[str]] = {n: list(s.dropped) for n, s in SPECS.items()}
FEATURE_DIMS: dict[str, int] = {n: s.feature_dim for n, s in SPECS.items()}
INPUT_SIZES: dict[str, int] = {n: s.input_size for n, s in SPECS.items()}


def _state_dict_only(spec: ArchSpec) -> Callable[[Any], StateDict]:
    def convert_checkpoint(ckpt: Any) -> StateDict:
        return spec.convert(ckpt)[0]

    convert_checkpoint.__doc__ = spec.convert.__doc__
    convert_checkpoint.__name__ = f"convert_{spec.name}"
    return convert_checkpoint


CONVERTERS: dict[str, Callable[[Any], StateDict]] = {
    n: _state_dict_only(s) for n, s in SPECS.items()
}


def get_spec(name: str) -> ArchSpec:
    """The spec of `name`; CogError listing the known architectures otherwise."""
    if name not in SPECS:
        raise CogError(f"unknown cog architecture {name!r}; known: {', '.join(sorted(SPECS))}")
    return SPECS[name]


def convert(name: str, ckpt: Any) -> tuple[StateDict, list[str]]:
    """Original checkpoint -> (strict state dict for ARCHS[name](), original keys dropped)."""
    return get_spec(name).convert(ckpt)


__all__ = [
    "ARCHS",
    "CONVERTERS",
    "DROPPED",
    "FEATURE_DIMS",
    "INPUT_SIZES",
    "SPECS",
    "ArchSpec",
    "convert",
    "get_spec",
]

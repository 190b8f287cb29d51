"""Named checkpoint converters: an original checkpoint layout -> the architecture's state dict.

Each released checkpoint wraps its weights differently (a `module.encoder_q.` prefix, a
nested `state_dict`/`model`/`network` entry, projection heads, an attacker copy...). A card
names the converter for its original layout; the converter returns a flat state dict whose
keys are the architecture's, and `cog.zoo` then loads it strictly. Converters keep only what
their layout documents and never guess: a checkpoint in another layout fails loudly in the
strict load instead of leaving random weights in place.

`cog.archs.CONVERTERS` (architectures timm/torchvision lack) is merged in lazily.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from cog import CogError

Converter = Callable[[Mapping[str, Any]], dict[str, torch.Tensor]]

CONVERTERS: dict[str, Converter] = {}
DOCS: dict[str, str] = {}

# Converters that cog.archs provides; cards may name them before cog.archs is importable.
ARCH_CONVERTERS = (
    "nat_m4",
    "t2t_vit_t_14",
    "pycls_effnet_b1",
    "pycls_effnet_b4",
    "byol_resnet50",
    "simclrv2_resnet50",
    "clip_rn50",
)


def register_converter(*names: str) -> Callable[[Converter], Converter]:
    """Register a converter under one or more names (the layout's release names)."""

    def deco(fn: Converter) -> Converter:
        for name in names:
            if name in CONVERTERS:
                raise ValueError(f"converter {name!r} registered twice")
            CONVERTERS[name] = fn
            DOCS[name] = (fn.__doc__ or "").strip().splitlines()[0]
        return fn

    return deco


def _archs_converters() -> dict[str, Converter]:
    try:
        archs = importlib.import_module("cog.archs")
    except ImportError:
        return {}
    return dict(getattr(archs, "CONVERTERS", {}))


def available() -> dict[str, Converter]:
    """Every converter: cog's own plus those of `cog.archs` (when importable)."""
    out = dict(CONVERTERS)
    for name, fn in _archs_converters().items():
        out.setdefault(name, fn)
    return out


def known_names() -> set[str]:
    """Names a card may use: registered ones and the reserved `cog.archs` names."""
    return set(available()) | set(ARCH_CONVERTERS)


def get_converter(name: str) -> Converter:
    """The converter called `name`; CogError naming close matches if unknown."""
    conv = available()
    if name in conv:
        return conv[name]
    if name in ARCH_CONVERTERS:
        raise CogError(
            f"converter {name!r} is provided by cog.archs, which is not importable here; "
            "install the full cog package (cog/archs/)"
        )
    close = difflib.get_close_matches(name, sorted(conv), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CogError(f"unknown converter {name!r}{hint} (known: {', '.join(sorted(conv))})")


def convert(name: str, checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Apply converter `name` and check the result is a flat name -> tensor mapping."""
    if not isinstance(checkpoint, Mapping):
        raise CogError(
            f"converter {name!r} expects a dict-like checkpoint, got {type(checkpoint).__name__}"
        )
    out = get_converter(name)(checkpoint)
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CogError(
            f"converter {name!r} left non-tensor entries {_short(bad)}: the checkpoint is not "
            f"in the {name!r} layout ({DOCS.get(name, '')}); pick the card's converter for "
            "this file's layout"
        )
    return dict(out)


# ----------------------------------------------------------------------------- helpers


def _short(keys: Iterable[str], n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def nested(ckpt: Mapping[str, Any], key: str, *, required: bool = True) -> Mapping[str, Any]:
    """`ckpt[key]` when the checkpoint wraps its weights under `key`.

    With `required=False` a checkpoint without `key` is returned as is (layouts that were
    released both wrapped and bare).
    """
    if key in ckpt and isinstance(ckpt[key], Mapping):
        return ckpt[key]
    if required:
        raise CogError(
            f"expected the weights under the key {key!r}, found top-level keys "
            f"{_short(map(str, ckpt))}; this file is not in the layout the card's "
            "converter reads"
        )
    return ckpt


def take_prefix(
    sd: Mapping[str, Any], prefix: str, *, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Keys under `prefix` with it stripped, minus those whose stripped name starts `exclude`."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        short = k[len(prefix) :]
        if short.startswith(exclude):
            continue
        out[short] = v
    if not out:
        raise CogError(
            f"no key starts with {prefix!r} (keys look like {_short(map(str, sd), 4)}); this "
            "file is not in the layout the card's converter reads"
        )
    return out


def strip_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove `prefix` where present (DataParallel's `module.`); other keys pass unchanged."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in sd.items()}


def drop(sd: Mapping[str, Any], *starts: str) -> dict[str, Any]:
    """Remove keys starting with any of `starts` (projection heads, prototypes...)."""
    return {k: v for k, v in sd.items() if not k.startswith(starts)}


# ----------------------------------------------------------------------------- layouts


@register_converter("plain", "torchvision", "timm")
def plain(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The file is already the architecture's state dict (torchvision, timm hub, DINO, Barlow)."""
    return dict(ckpt)


@register_converter("moco", "mochi")
def moco(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """MoCo/MoCHi: `state_dict`, keep `module.encoder_q.` minus its `fc` head, strip prefix."""
    return take_prefix(nested(ckpt, "state_dict"), "module.encoder_q.", exclude=("fc.",))


@register_converter("infomin")
def infomin(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """InfoMin: `model`, keep `module.encoder.` with the prefix stripped (heads dropped)."""
    return take_prefix(nested(ckpt, "model"), "module.encoder.")


@register_converter("swav")
def swav(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """SwAV: raw state dict, strip `module.`, drop `projection_head.` and `prototypes.`."""
    sd = strip_prefix(nested(ckpt, "state_dict", required=False), "module.")
    return drop(sd, "projection_head.", "prototypes.")


@register_converter("obow")
def obow(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """OBoW: `network`, delete the 8K->2K `fc` mapping."""
    return drop(nested(ckpt, "network"), "fc.")


@register_converter("compress")
def compress(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """CompReSS: `model`, drop every key containing `fc` (8192-d head), strip `module.`."""
    sd = nested(ckpt, "model")
    return strip_prefix({k: v for k, v in sd.items() if "fc" not in k}, "module.")


@register_converter("cutmix", "mixup", "manifold_mixup", "relabel", "dataparallel")
def dataparallel(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """CutMix/MixUp/Manifold MixUp/ReLabel: `state_dict` if present, strip `module.`."""
    return strip_prefix(nested(ckpt, "state_dict", required=False), "module.")


@register_converter("mealv2")
def mealv2(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """MEAL-V2: every key carries `module.`; strip it (a key without it is an error)."""
    sd = nested(ckpt, "state_dict", required=False)
    bare = [k for k in sd if not k.startswith("module.")]
    if bare:
        raise CogError(f"MEAL-V2 keys all start with 'module.'; these do not: {_short(bare)}")
    return strip_prefix(sd, "module.")


@register_converter("advrobust")
def advrobust(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Robustness lib: `model`, keep `module.model.` (drops attacker copy and normalizer)."""
    return take_prefix(nested(ckpt, "model"), "module.model.")


@register_converter("mopro")
def mopro(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """MoPro: `state_dict`, `module.encoder_q.` minus `fc.`, `classifier.` renamed `fc.`."""
    sd = take_prefix(nested(ckpt, "state_dict"), "module.encoder_q.", exclude=("fc.",))
    return {
        ("fc." + k[len("classifier.") :] if k.startswith("classifier.") else k): v
        for k, v in sd.items()
    }


@register_converter("deit", "mae")
def deit(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """DeiT/DeiT-III/MAE releases: weights under `model` (bare hub files pass unchanged)."""
    return dict(nested(ckpt, "model", required=False))


@register_converter("tv_vgg")
def tv_vgg(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """torchvision VGG -> timm VGG: `classifier.0/3/6` become `pre_logits.fc1/fc2`, `head.fc`."""
    from timm.models.vgg import _filter_fn

    return _filter_fn(dict(ckpt))


@register_converter("mocov3_vit")
def mocov3_vit(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """MoCo v3 ViT: `state_dict`, keep `module.base_encoder.` minus the `head.` projector."""
    return take_prefix(nested(ckpt, "state_dict"), "module.base_encoder.", exclude=("head.",))


@register_converter("ibot")
def ibot(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """iBOT teacher: `state_dict`, strip `module.`/`backbone.`, drop `head.` and `masked_embed`."""
    sd = strip_prefix(strip_prefix(nested(ckpt, "state_dict"), "module."), "backbone.")
    return drop(sd, "head.", "masked_embed")


@register_converter("cog_mochi")
def cog_mochi(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Checkpoints written by `cog-train-mochi`: MoCo layout, `module.` optional."""
    sd = nested(ckpt, "state_dict")
    prefix = "module.encoder_q." if any(k.startswith("module.") for k in sd) else "encoder_q."
    return take_prefix(sd, prefix, exclude=("fc.",))

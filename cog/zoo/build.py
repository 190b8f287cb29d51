"""Cards -> modules: build the architecture, load weights strictly, wrap as `Backbone`.

Loading is strict: every architecture tensor must come from the checkpoint, and every
checkpoint tensor must land somewhere or be one of the card's documented dropped heads;
anything else is a CogError listing the keys. Random weights only with `random_init=True`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cog import CogError
from cog.zoo.lazy import nn, torch
from cog.zoo.registry import get_card
from cog.zoo.schema import ModelCard, WeightSource
from cog.zoo.weights import (
    _hub_blob_sha,
    file_sha256,
    load_checkpoint,
    projection_file,
    resolve_weights,
    trust_requested,
    verify_sha256,
)

if TYPE_CHECKING:
    from cog.zoo.backbone import Backbone


def __getattr__(name: str) -> Any:
    if name == "Backbone":  # defined with torch, in cog.zoo.backbone
        from cog.zoo.backbone import Backbone

        return Backbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- building


def build_arch(card: ModelCard) -> nn.Module:
    """The card's architecture with random weights and its classifier removed."""
    arch = card.arch
    if arch.source == "timm":
        import timm

        net = timm.create_model(arch.name, pretrained=False, num_classes=0, **arch.kwargs)
    elif arch.source == "torchvision":
        import torchvision

        net = torchvision.models.get_model(arch.name, weights=None, **arch.kwargs)
    else:
        try:
            from cog.zoo.archs import ARCHS
        except ImportError as e:
            raise CogError(
                f"model {card.name!r} needs cog.zoo.archs ({arch.name}), "
                f"which is not importable ({e})"
            ) from e
        if arch.name not in ARCHS:
            raise CogError(
                f"model {card.name!r}: cog.zoo.archs has no architecture "
                f"{arch.name!r} (known: {sorted(ARCHS)})"
            )
        net = ARCHS[arch.name](**arch.kwargs)
    for path in arch.identity:
        parent_path, _, leaf = path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        setattr(parent, leaf, nn.Identity())
    return net


def timm_hub_filter(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the timm module's `checkpoint_filter_fn`, as timm does for its hub weights.

    Identity on files already in timm's layout; it adapts the few hub files timm stores in
    their original layout. The strict load still checks the result.
    """
    import sys

    fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if fn is None or not type(net).__module__.startswith("timm."):
        return state
    return dict(fn(dict(state), net))


def _dropped(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _listing(keys: list[str], n: int = 20) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(sorted(keys)[:n]) + more


def load_strict(
    net: nn.Module, state: Mapping[str, torch.Tensor], card: ModelCard, where: str
) -> None:
    """Fill every tensor of `net` from `state`; anything missing/unexpected is a CogError.

    Keys matching the card's `dropped_keys` (classifier and projection heads) are removed
    first; they are the only keys allowed not to land in the architecture.
    """
    state = {k: v for k, v in state.items() if not _dropped(k, card.dropped_keys)}
    own = net.state_dict()
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs architecture {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        raise CogError(
            f"{where}: shape mismatch loading {card.name!r}: "
            + "; ".join(shapes[:10])
            + ". The checkpoint is for another architecture or layout."
        )
    result = net.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing (would stay random): {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected (not used by the architecture): {_listing(unexpected)}")
        raise CogError(
            f"{where}: strict load of {card.name!r} (converter {card.converter!r}) failed; "
            + "; ".join(parts)
            + f". Documented dropped keys: {list(card.dropped_keys)}. "
            "Check the file is the card's checkpoint, or pick the converter for its layout."
        )


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load(
    name: str,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    device: str = "cpu",
    trust_checkpoint: bool | None = None,
) -> Backbone:
    """Build model `name` with its weights loaded strictly; a frozen `Backbone` in eval mode.

    `checkpoint` (a local file in the card's original layout, or the hub file) overrides
    the card's sources. Without weights this raises; random weights only with
    `random_init=True`. `trust_checkpoint` (default: $COG_TRUST_CHECKPOINT) allows full
    unpickling of a checkpoint holding Python objects; a card's full sha256 also does.
    How the file was read is `Backbone.checkpoint_load` (written into feature caches).
    """
    card = get_card(name)
    dev = _pick_device(device)
    if card.base is not None:
        return _load_composite(card, checkpoint, random_init, dev, trust_checkpoint)
    net = build_arch(card)
    how = "random-init"
    if random_init:
        if checkpoint is not None:
            raise CogError("pass either checkpoint=PATH or random_init=True, not both")
        digest = "random-init"
    else:
        if checkpoint is not None:
            path, source = Path(checkpoint).expanduser(), None
            if not path.is_file():
                raise CogError(f"{path}: checkpoint for {card.name!r} not found; check the path")
        else:
            path, source = resolve_weights(card)
        if source is not None and source.kind != "hub":
            digest = verify_sha256(path, source, card)
        else:
            digest = file_sha256(path)
            blob = _hub_blob_sha(path) if source is not None else None
            if blob and blob != digest:
                raise CogError(
                    f"{path}: sha256 {digest} differs from the hub's {blob}; "
                    "delete the file from the Hugging Face cache and load again"
                )
        if source is not None:
            converters = [source.converter or card.converter]
        else:  # a local file may be any of the card's releases: try each one's converter
            names = (card.converter, *(w.converter for w in card.weights))
            converters = list(dict.fromkeys(c for c in names if c))
        # pinned: the full sha256 of this source, or, for a local file, of any of the
        # card's releases (a copy of a pinned file is as trusted as the download)
        pinned = {w.sha256 for w in ([source] if source else card.weights) if w.sha256}
        trust = None
        if trust_checkpoint or (trust_checkpoint is None and trust_requested()):
            trust = "--trust-checkpoint"
        elif digest in {h for h in pinned if len(h) == 64}:
            trust = "sha256 pinned by the card"
        how = _load_converted(net, card, path, source, converters, trust)
    # timm's pre-logits width (VGG's fc7: 4096) differs from num_features (its 512 channels)
    declared = next(
        (
            getattr(net, a)
            for a in ("feature_dim", "head_hidden_size", "num_features")
            if isinstance(getattr(net, a, None), int)
        ),
        None,
    )
    if card.feature_pool == "head" and isinstance(declared, int) and declared != card.feature_dim:
        raise CogError(
            f"{card.source_file}: feature.dim is {card.feature_dim} but {card.arch.source}:"
            f"{card.arch.name} gives {declared}-d features; fix the card"
        )
    for p in net.parameters():
        p.requires_grad_(False)
    net = net.to(dev)
    if card.precision == "float16" and dev.type == "cuda":
        net = net.half()
    from cog.zoo.backbone import Backbone

    backbone = Backbone(net, card, digest).to(dev)
    backbone.checkpoint_load = how
    return backbone


def _load_converted(
    net: nn.Module,
    card: ModelCard,
    path: Path,
    source: WeightSource | None,
    converters: list,
    trust: str | None = None,
) -> str:
    """Convert and load strictly with the first converter that fills every tensor; when
    none does, raise an error with each converter's reason. Returns how the file was read."""
    from cog.zoo.convert import convert

    raw, how = load_checkpoint(path, trust)
    home = Path(card.source_file).parent if card.source_file else None
    errors: list[tuple[str, CogError]] = []
    for converter in converters:
        try:
            state = convert(converter, raw, card_dir=home)
            if source is not None and source.kind == "hub":
                state = timm_hub_filter(net, state)
            load_strict(net, state, dataclasses.replace(card, converter=converter), str(path))
            return how
        except CogError as e:
            errors.append((converter, e))
    if len(errors) == 1:
        e = errors[0][1]
        raise e if str(path) in str(e) else CogError(f"{path}: {e}")
    reasons = "\n".join(
        f"- converter {c!r}: {str(e).replace(str(path) + ': ', '')}" for c, e in errors
    )
    raise CogError(f"{path}: no release layout of {card.name!r} fits this file:\n{reasons}")


def _load_composite(
    card: ModelCard, checkpoint, random_init: bool, dev: torch.device, trust: bool | None
) -> Backbone:
    base = load(card.base, checkpoint, random_init, str(dev), trust)
    proj_path, digest = projection_file(
        card.name, card.source_file, card.projection.path, card.projection.sha256
    )
    from cog.compress.files import load_projection

    proj = load_projection(proj_path).eval()
    for p in proj.parameters():
        p.requires_grad_(False)
    combined = f"{base.weights_sha256}+{digest}"
    from cog.zoo.backbone import Backbone

    backbone = Backbone(base, card, combined, projection=proj.to(dev)).to(dev)
    backbone.checkpoint_load = base.checkpoint_load
    return backbone


def n_params(module: nn.Module) -> float:
    """Parameter count in millions (for `cog-models show`)."""
    return math.fsum(p.numel() for p in module.parameters()) / 1e6

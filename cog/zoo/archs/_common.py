"""Strict checkpoint conversion shared by every architecture in `cog.zoo.archs`.

A converter must never let a mis-keyed checkpoint leave random weights in place, so every
conversion ends with a full comparison against the architecture's own state dict (built once
on the meta device: no memory, no random init): missing, unexpected and mis-shaped tensors
all raise a `CogError` that lists them.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cog import CogError

StateDict = dict[str, torch.Tensor]

# Counters that BatchNorm keeps for training only; some converters (byol-convert) leave them
# out, and an evaluation forward never reads them, so absent ones are filled with 0.
OPTIONAL_SUFFIX = ".num_batches_tracked"
_SHOWN = 12


def _listing(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def select_state_dict(ckpt: Any, entries: Sequence[str], arch: str) -> tuple[StateDict, str | None]:
    """The tensor dict inside `ckpt`: the first of `entries` present, else `ckpt` itself.

    TorchScript archives (OpenAI CLIP) and modules are accepted through `.state_dict()`.
    """
    if not isinstance(ckpt, Mapping) and callable(getattr(ckpt, "state_dict", None)):
        ckpt = ckpt.state_dict()
    if not isinstance(ckpt, Mapping):
        raise CogError(
            f"{arch}: the checkpoint is a {type(ckpt).__name__}, not a dict of tensors; "
            "pass the object returned by torch.load on the original checkpoint file"
        )
    chosen: str | None = None
    for entry in entries:
        if entry in ckpt:
            chosen, ckpt = entry, ckpt[entry]
            break
    if not isinstance(ckpt, Mapping):
        raise CogError(f"{arch}: checkpoint entry {chosen!r} is not a dict of tensors")
    bad = [str(k) for k, v in ckpt.items() if not isinstance(v, torch.Tensor)]
    if bad:
        wanted = " or ".join(repr(e) for e in entries) or "a plain state dict"
        raise CogError(
            f"{arch}: checkpoint entries {_listing(bad)} are not tensors; expected {wanted} "
            f"holding the weights (top-level entries: {_listing([str(k) for k in ckpt])}). "
            "Is this the original checkpoint of this model?"
        )
    return dict(ckpt), chosen


def strip_prefix(sd: StateDict, prefix: str) -> StateDict:
    """Remove `prefix` (e.g. DataParallel's `module.`) when every key carries it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


@functools.cache
def expected_shapes(builder: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the module `builder()` makes, built on the meta device (no weights)."""
    with torch.device("meta"):
        model = builder()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_state_dict(
    ckpt: Any,
    *,
    arch: str,
    builder: Callable[[], nn.Module],
    entries: Sequence[str] = (),
    dropped: Sequence[str] = (),
    rename: Callable[[str], str] | None = None,
    prefixes: Sequence[str] = ("module.",),
) -> tuple[StateDict, list[str]]:
    """Original checkpoint -> (state dict for `builder()`, original keys dropped as heads).

    `dropped` holds fnmatch patterns on the original keys (after prefix stripping); `rename`
    maps an original key to the architecture's key (unknown keys pass through unchanged and
    are then reported as unexpected).
    """
    sd, _ = select_state_dict(ckpt, entries, arch)
    for prefix in prefixes:
        sd = strip_prefix(sd, prefix)
    expected = expected_shapes(builder)
    out: StateDict = {}
    origin: dict[str, str] = {}
    dropped_keys: list[str] = []
    for key, value in sd.items():
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in dropped):
            dropped_keys.append(key)
            continue
        new = rename(key) if rename else key
        if new in out:
            raise CogError(
                f"{arch}: checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}"
            )
        out[new], origin[new] = value, key
    missing = [k for k in expected if k not in out and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [origin[k] for k in out if k not in expected]
    wrong = [
        f"{origin[k]} {tuple(v.shape)} (expected {expected[k]})"
        for k, v in out.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape: {_listing(wrong)}")
        raise CogError(
            f"{arch}: the checkpoint does not match the architecture ({'; '.join(parts)}). "
            "Pass the unmodified original checkpoint of this model (see cog.zoo.archs.SPECS"
            f"[{arch!r}].checkpoint for the expected layout)."
        )
    for key in expected:
        if key not in out:  # only optional BatchNorm counters can remain here
            out[key] = torch.zeros((), dtype=torch.long)
    return {k: out[k] for k in expected}, sorted(dropped_keys)


def headless_resnet(model: nn.Module) -> nn.Module:
    """A torchvision ResNet whose forward stops at the pooled layer4 output (2048-d)."""
    model.fc = nn.Identity()
    model.feature_dim = model.layer4[-1].conv3.out_channels
    return model

"""Reference-output fingerprints: does a loaded model compute what its card says it computes?

Strict key loading cannot tell architecture variants with the same tensors apart (timm's
`efficientnet_lite0` loads `tf_efficientnet_lite0` weights "strictly" and gives other
features). A card may therefore record the features of a canonical input that cog itself
generates (three integer-arithmetic RGB images: landscape, portrait, square, passed through
the card's own transform), summarised per image as the feature norm and the unit feature
vector projected on 32 fixed +-1/sqrt(32) directions (a Johnson-Lindenstrauss sketch: the
distance between two sketches approximates the distance between the unit features, so
`1 - d^2/2` approximates their cosine). `verify` refuses a model whose sketch or norm is
further than the card's tolerance from the recorded one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch only where features are computed: cards are read without it
    import torch

from cog import CogError

CANONICAL = "cog-canonical-v1"
PROBES = 32
DEFAULT_TOLERANCE = 0.02  # sketch distance; about cosine >= 0.9998 and norm within 2%
SIZES = ((320, 240), (240, 320), (288, 288))  # (width, height): landscape, portrait, square
FIELDS = {"input", "tolerance", "images", "recorded_with"}


def canonical_images() -> list[Image.Image]:
    """The canonical input: smooth gradients, rings and blocks from integer arithmetic only,
    so every platform generates exactly the same pixels."""
    out = []
    for k, (w, h) in enumerate(SIZES):
        y, x = np.mgrid[0:h, 0:w].astype(np.int64)
        cx, cy = w // 2 + 17 * k, h // 2 - 11 * k
        rings = ((x - cx) ** 2 + (y - cy) ** 2) // (61 + 20 * k)
        blocks = ((x // (24 + 8 * k)) + (y // (32 - 4 * k))) % 2
        r = (255 * x) // (w - 1)
        g = (rings * 7) % 256
        b = (255 * y) // (h - 1) // 2 + 127 * blocks
        img = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
        out.append(Image.fromarray(img, "RGB"))
    return out


def _directions(dim: int) -> torch.Tensor:
    """[dim, PROBES] of +-1/sqrt(PROBES): signs from PCG64's raw stream (stable across
    numpy versions, unlike Generator methods)."""
    import torch

    raw = np.random.PCG64(20240).random_raw(dim * PROBES)
    signs = np.where(raw & 1, 1.0, -1.0).reshape(dim, PROBES)
    return torch.from_numpy(signs / math.sqrt(PROBES))


def features(backbone) -> torch.Tensor:
    """The backbone's float64 features [3, D] of the canonical images (its own transform,
    float32 forward pass, no autocast)."""
    import torch

    dev = next(backbone.parameters()).device
    batch = torch.stack([backbone.transform(im) for im in canonical_images()]).to(dev)
    with torch.inference_mode():
        return backbone(batch).double().cpu()


def sketch(feats: torch.Tensor) -> list[dict[str, Any]]:
    """Per image: the feature norm and the 32-number sketch of the unit feature vector."""
    norms = feats.norm(dim=1)
    probes = (feats / norms.clamp_min(1e-30)[:, None]) @ _directions(feats.shape[1])
    return [
        {"norm": float(f"{float(n):.6g}"), "probe": [float(f"{float(v):.6g}") for v in p]}
        for n, p in zip(norms, probes, strict=True)
    ]


def record(backbone, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The `fingerprint` field of `backbone`'s card, computed from the loaded model."""
    import torch

    return {
        "input": CANONICAL,
        "tolerance": tolerance,
        "recorded_with": f"torch {torch.__version__.split('+')[0]}, "
        f"weights sha256 {backbone.weights_sha256}",
        "images": sketch(features(backbone)),
    }


def validate(d: Any, where: str) -> dict[str, Any]:
    """Check a card's `fingerprint` field; CogError naming the problem."""

    def bad(msg: str) -> CogError:
        return CogError(
            f"{where} fingerprint: {msg}; re-record it with `cog-models check NAME --record`"
        )

    if not isinstance(d, Mapping):
        raise bad("must be a mapping")
    extra = sorted(set(d) - FIELDS)
    if extra:
        raise bad(f"unknown field(s) {extra}; allowed: {sorted(FIELDS)}")
    if d.get("input") != CANONICAL:
        raise bad(f"input {d.get('input')!r} is not {CANONICAL!r}")
    tol = d.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tol, int | float) or not 0 < tol < 1:
        raise bad(f"tolerance must be a number in (0, 1), got {tol!r}")
    images = d.get("images")
    ok = isinstance(images, list) and len(images) == len(SIZES)
    for im in images if ok else []:
        ok = ok and isinstance(im, Mapping) and isinstance(im.get("norm"), int | float)
        probe = im.get("probe") if ok else None
        ok = ok and isinstance(probe, list) and len(probe) == PROBES
        ok = ok and all(isinstance(v, int | float) for v in probe)
    if not ok:
        raise bad(f"images must be {len(SIZES)} entries of {{norm, probe: {PROBES} numbers}}")
    return {**dict(d), "tolerance": float(tol)}


def differences(expected: Mapping[str, Any], got: list[dict[str, Any]]) -> list[str]:
    """What differs between a recorded fingerprint and a computed sketch (empty: agree)."""
    tol = float(expected.get("tolerance", DEFAULT_TOLERANCE))
    out = []
    for k, (e, g) in enumerate(zip(expected["images"], got, strict=True)):
        w, h = SIZES[k]
        dist = float(np.linalg.norm(np.subtract(e["probe"], g["probe"])))
        rel = abs(g["norm"] - e["norm"]) / max(abs(e["norm"]), 1e-30)
        if dist > tol or rel > tol:
            out.append(
                f"canonical image {k} ({w}x{h}): feature direction off by {dist:.4f} "
                f"(about cosine {1 - dist * dist / 2:.4f}), norm {g['norm']:.5g} vs "
                f"{e['norm']:.5g} recorded (tolerance {tol})"
            )
    return out


def verify(backbone) -> str:
    """Check `backbone` against its card's fingerprint. Returns what was done (for the cache
    attributes); raises CogError saying what differs. Random weights are not checked."""
    card = backbone.card
    fp = getattr(card, "fingerprint", None)
    if backbone.weights_sha256 == "random-init" or "random-init" in str(backbone.weights_sha256):
        return "not checked (random weights)"
    if not fp:
        return "none on the card"
    diffs = differences(fp, sketch(features(backbone)))
    if diffs:
        raise CogError(
            f"{card.source_file}: model {card.name!r} (weights sha256 "
            f"{backbone.weights_sha256}) does not reproduce its card's reference outputs: "
            + "; ".join(diffs)
            + ". The architecture variant, converter, preprocessing or weights differ from "
            "those the fingerprint was recorded with; fix the card (or re-record it with "
            "`cog-models check NAME --record` if the change is intended)"
        )
    return f"verified ({CANONICAL}, tolerance {fp['tolerance']})"

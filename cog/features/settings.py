"""What a feature cache was made with: settings, cache paths, attributes, atomic HDF5.

A cache is reused only when its recorded settings match the request; a mismatch says which
setting differs and how to rebuild.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py

from cog import CogError
from cog.features.images import ImageList
from cog.features.integrity import ATTR as SEAL
from cog.features.options import DECODES, DTYPES, PRECISIONS  # noqa: F401 (re-exported)
from cog.io import cog_home

MODES = ("fast", "exact", "fast+jpeg-draft")
#: measured with real weights (README, "Fast and exact modes"); written into draft caches
DRAFT_NOTE = (
    "JPEG draft decoding (opt-in): JPEGs whose shorter side is >= 2x the resize target are "
    "decoded at 1/2, 1/4 or 1/8 DCT scale, so their pixels are not the protocol's. Measured "
    "with real weights (EfficientNet-Lite0/1/2, benchmarks/bench_real.py, 48 real photos, 6 "
    "of them reduced): cosine to the exact features down to 0.9905 / 0.9912 / 0.9822, top-1 "
    "class changed on 0 / 0 / 2 of 48 images; the default fast path: cosine >= 0.9999998, "
    "no change"
)
#: attributes that must match for a cache (or a partial run) to be reused
STRICT = (
    "model",
    "card",
    "weights_sha256",
    "preprocess",
    "mode",
    "dtype",
    "dataset",
    "split",
    "images_sha256",
    "decode",
)
#: values a cache made before a setting existed holds implicitly
IMPLICIT = {"decode": "cpu"}
#: what kind of features a cache holds, beyond whose they are: a projection fitted on one
#: kind is never applied to, nor reused for, another
FEATURE_KIND = ("mode", "dtype", "decode")
#: the kind assumed for a projection written before cog recorded it (the defaults then)
DEFAULT_KIND = {"mode": "fast", "dtype": "float16", "decode": "cpu"}


def feature_kind(attrs: dict) -> dict[str, str]:
    """The FEATURE_KIND attributes of a cache (older caches: decode cpu)."""
    return {k: str(attrs.get(k, IMPLICIT.get(k))) for k in FEATURE_KIND}


def features_seal(attrs: dict) -> str | None:
    """The sha256 of a cache's stored arrays (its seal, cog.features.integrity) as one hex
    digest; None for a cache written without one."""
    import hashlib

    seal = attrs.get(SEAL)
    return hashlib.sha256(str(seal).encode()).hexdigest() if seal else None


RANDOM_INIT_SUFFIX = "+random-init"  # as cog.bench.leaderboard's (pandas-free import here)


def cache_path(model: str, dataset: str, split: str, cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/<model>/<dataset>_<split>.h5`; cache_dir defaults to $COG_HOME/features."""
    base = Path(cache_dir) if cache_dir is not None else cog_home() / "features"
    return base / model / f"{dataset}_{split}.h5"


# ------------------------------------------------------------------ settings and checks


def _jsonable(obj) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return json.loads(json.dumps(obj, default=str))


def _settings(
    backbone, images: ImageList, exact: bool | str, dtype: str, decode: str = "cpu"
) -> dict[str, str]:
    s = _card_settings(backbone.card, backbone.weights_sha256, images, exact, dtype, decode)
    s["checkpoint_load"] = str(getattr(backbone, "checkpoint_load", "weights_only"))
    return s


def _card_settings(
    card,
    weights_sha256: str,
    images: ImageList,
    exact: bool | str,
    dtype: str,
    decode: str = "cpu",
) -> dict[str, str]:
    """`exact`: a mode name of MODES, or a bool (True: exact, False: fast); `decode`: the
    decode path taken (cpu or gpu, cog.features.decode), part of the key: paths never mix."""
    card_d = card.to_dict()
    if isinstance(card_d, dict):  # recording a fingerprint does not change the features
        card_d.pop("fingerprint", None)
    pre = card_d.get("preprocess") if isinstance(card_d, dict) else None
    return {
        "model": str(card.name),
        "card": json.dumps(card_d, sort_keys=True),
        "weights_sha256": str(weights_sha256),
        "preprocess": json.dumps(
            pre if pre is not None else _jsonable(card.preprocess), sort_keys=True
        ),
        "mode": exact if isinstance(exact, str) else ("exact" if exact else "fast"),
        "dtype": dtype,
        "dataset": images.name,
        "split": images.split,
        "images_sha256": images.sha256(),
        "decode": decode,
    }


def _short(v: object) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _mismatch(old: dict, new: dict, precision: str | None = None) -> list[str]:
    diff = [
        f"{k}: {_short(old.get(k))} here, {_short(new[k])} asked"
        for k in STRICT
        if str(old.get(k, IMPLICIT.get(k))) != str(new[k])
    ]
    if precision and old.get("precision") not in (None, precision):
        diff.append(f"precision: {old.get('precision')} here, {precision} asked")
    return diff


def _stale_error(where: Path, diff: list[str], what: str) -> CogError:
    return CogError(
        f"{where}: {what} made with other settings ({'; '.join(diff)}); pass --overwrite "
        "(cog-eval and cog-tldr: --overwrite-features; overwrite=True) to replace it, or "
        "write to another path (--cache-dir / --out)"
    )


def _existing_attrs(path: Path) -> dict | None:
    """Attributes as stored (JSON ones kept as text, to compare with `_settings`)."""
    try:
        with h5py.File(path, "r") as h5:
            return {k: v.decode() if isinstance(v, bytes) else v for k, v in h5.attrs.items()}
    except OSError:
        return None

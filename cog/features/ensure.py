"""The feature cache of (model, dataset, split), extracting what is missing: the one
entry point evaluation and compression use. Composite cards project the base model's cache.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import cog
from cog import CogError
from cog.features.extract import _atomic_h5, _write_lists, extract
from cog.features.images import dataset_images
from cog.features.integrity import ATTR as SEAL
from cog.features.integrity import verify_file
from cog.features.options import ExtractOptions, FeatureSource, updated
from cog.features.settings import (
    IMPLICIT,
    RANDOM_INIT_SUFFIX,
    STRICT,
    _card_settings,
    _existing_attrs,
    _mismatch,
    _stale_error,
    cache_path,
    feature_kind,
)

# ------------------------------------------------------------------ from model names


def ensure_features(
    model: str,
    dataset: str,
    split: str,
    source: FeatureSource | None = None,
    *,
    overwrite: bool = False,
    **settings: Any,
) -> Path:
    """The cache of zoo model `model` on (dataset, split), extracting (or resuming) it if
    needed. `source` (cog.features.options.FeatureSource) says where the data and caches
    are, which weights and how to extract; keyword `settings` name its fields or those of
    its bundles for a one-off call (`in1k_root=...`, `exact=True`, `cache_dir=...`).
    Composite cards (card.base) project the base model's cache, never re-decoding."""
    from cog import zoo

    src = updated(source, settings, "ensure_features")
    card = zoo.get_card(model)
    # random weights get their own folder (named like their leaderboard rows), so that a
    # smoke run never sits beside, or is mistaken for, the trained model's cache
    folder = f"{card.name}{RANDOM_INIT_SUFFIX}" if src.random_init else card.name
    out = cache_path(folder, dataset, split, src.cache_dir)
    if getattr(card, "base", None):
        src = _fitted_kind(card, src)
        base = ensure_features(card.base, dataset, split, src, overwrite=overwrite)
        return project_features(card, base, out, dtype=src.options.dtype, overwrite=overwrite)
    images = dataset_images(dataset, split, src.roots)
    # a complete cache is checked without loading the model when the weights' digest is
    # known beforehand: random init, a checkpoint file, or the card's weights already on
    # disk (zoo.load hashes the same file, so the digests agree)
    if src.random_init:
        known = "random-init"
    elif src.checkpoint:
        ckpt = src.checkpoint
        known = zoo.file_sha256(ckpt) if ckpt.is_file() else None  # load() names a bad path
    else:
        known = zoo.cached_weights_sha256(card)
    options = src.options
    # (a matching cache is kept with `overwrite` too: it only replaces other settings')
    if known and out.exists() and _reusable(out, card, known, images, options):
        return out
    backbone = zoo.load(
        card.name, checkpoint=src.checkpoint, random_init=src.random_init, device="cpu"
    )
    return extract(backbone, images, out, options, overwrite=overwrite)


def _reusable(out: Path, card, known: str, images, options: ExtractOptions) -> bool:
    """Whether the complete cache `out` was made with these settings (and is undamaged:
    a damaged cache is an error, never reused), judged without loading the model."""
    old = _existing_attrs(out)
    path = options.decode
    if path == "auto":  # cpu without CUDA; on CUDA either checked path is accepted
        cuda = options.device != "cpu" and torch.cuda.is_available()
        path = str((old or {}).get("decode", IMPLICIT["decode"])) if cuda else "cpu"
    settings = _card_settings(card, known, images, options.mode, options.dtype, path)
    asked = None if options.precision == "auto" else options.precision
    if old and old.get("complete") and not _mismatch(old, settings, asked):
        verify_file(out)
        return True
    return False


def project_features(
    card,
    base: str | Path,
    out: str | Path,
    *,
    dtype: str = "float16",
    overwrite: bool = False,
    chunk: int = 65536,
) -> Path:
    """Write the cache of a composite card:
    `cog.compress.files.load_projection(card.projection.path)`
    applied chunk by chunk to the base model's cache `base` (no image is decoded)."""
    from cog import zoo
    from cog.compress.files import load_projection
    from cog.features.cache import open_features

    out = Path(out)
    proj = card.projection
    field = proj.get if isinstance(proj, dict) else lambda k: getattr(proj, k, None)
    proj_path, proj_sha = zoo.projection_file(
        card.name, card.source_file, field("path"), field("sha256")
    )
    with open_features(base) as fs:
        attrs = _existing_attrs(Path(base)) or {}
        fitted_on = (card.training or {}).get("base_weights_sha256")
        if fitted_on and str(attrs.get("weights_sha256")) != str(fitted_on):
            raise CogError(
                f"{card.name}: its projection was fitted on {card.base} features of weights "
                f"{fitted_on}, but {base} holds features of weights "
                f"{attrs.get('weights_sha256')}; refit it on these features with "
                f"`cog-tldr fit {card.base} ...` (random-init and trained weights never mix)"
            )
        fitted_kind = (card.training or {}).get("base_features")
        if fitted_kind and dict(fitted_kind) != feature_kind(attrs):
            raise CogError(
                f"{card.name}: its projection was fitted on {card.base} features of kind "
                f"{_kind(fitted_kind)}, but {base} holds {_kind(feature_kind(attrs))}; "
                f"extract with the options it was fitted with, or refit it on these features "
                f"with `cog-tldr fit {card.base} ...` and the same options"
            )
        settings = {k: str(attrs.get(k, IMPLICIT.get(k))) for k in STRICT}
        settings.update(
            model=str(card.name), card=json.dumps(card.to_dict(), sort_keys=True), dtype=dtype
        )
        settings["weights_sha256"] = f"{attrs.get('weights_sha256')}+projection:{proj_sha}"
        base_seal = str(attrs.get(SEAL) or "")
        if out.exists():
            old = _existing_attrs(out)
            diff = (
                ["unreadable or incomplete file"]
                if not old or not old.get("complete")
                else (_mismatch(old, settings))
            )
            if not diff and str(old.get("base_sha256_datasets") or "") == base_seal:
                verify_file(out)
                return out
            if diff and not overwrite:
                raise _stale_error(out, diff, "a feature cache")
            # else: the base features were extracted again (their seal changed), so their
            # projection replaces this derived cache; no image is decoded
        module = load_projection(proj_path).eval()
        with _atomic_h5(out) as h5, torch.inference_mode():
            feats = None
            pos = 0
            for x in tqdm(
                fs.iter_chunks(chunk),
                total=math.ceil(len(fs) / chunk),
                desc=f"{card.name}: projecting {card.base}",
                unit="chunk",
            ):
                y = module(torch.from_numpy(x)).float().numpy()
                if feats is None:
                    feats = h5.create_dataset(
                        "features",
                        shape=(len(fs), y.shape[1]),
                        dtype=dtype,
                        chunks=(min(len(fs), 1024), y.shape[1]),
                    )
                feats[pos : pos + len(y)] = y
                pos += len(y)
            if feats is None:
                raise CogError(f"{base}: the base cache holds no features to project")
            _write_lists(h5, fs.labels, fs.paths, fs.classes, fs.failed, fs.repaired)
            for k, v in {**attrs, **settings}.items():
                if k != "complete":
                    h5.attrs[k] = v
            h5.attrs["base_model"] = str(card.base)
            h5.attrs["base_weights_sha256"] = str(attrs.get("weights_sha256"))
            h5.attrs["projection_sha256"] = proj_sha
            h5.attrs["base_sha256_datasets"] = base_seal
            h5.attrs["cog_version"] = cog.__version__
    return out


def _kind(kind: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(dict(kind).items()))


def _fitted_kind(card, src: FeatureSource) -> FeatureSource:
    """`src` for the base of a composite card: the decode path its projection was fitted
    on when `auto` was asked (so the base is extracted that way, never the other and then
    refused); options that cannot give the fitted kind are refused before any extraction."""
    fitted = dict((card.training or {}).get("base_features") or {})
    fitted = {k: str(v) for k, v in fitted.items()}
    options, path = src.options, fitted.get("decode")
    if options.decode == "auto" and (path == "cpu" or (path == "gpu" and options.mode == "fast")):
        options = dataclasses.replace(options, decode=path)
    asked = {"mode": options.mode, "dtype": options.dtype}
    if options.decode != "auto":
        asked["decode"] = options.decode
    differ = {k: v for k, v in asked.items() if k in fitted and fitted[k] != v}
    if differ:
        want = {k: fitted[k] for k in differ}
        raise CogError(
            f"{card.name}: its projection was fitted on {card.base} features of kind "
            f"{_kind(fitted)}, but {_kind(differ)} was asked; pass {_flags(want)} (the options "
            f"it was fitted with), or refit it with `cog-tldr fit {card.base} ...` and yours"
        )
    return dataclasses.replace(src, options=options)


def _flags(kind: dict) -> str:
    """The options that give features of `kind`."""
    modes = {"fast": "no --exact/--jpeg-draft", "exact": "--exact"}
    flags = [
        modes.get(v, f"--{v.split('+')[-1]}") if k == "mode" else f"--{k} {v}"
        for k, v in sorted(kind.items())
    ]
    return ", ".join(flags)

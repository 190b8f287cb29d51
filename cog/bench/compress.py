"""`cog-tldr compress`: fit a projection on a model's cached features and publish it
as a composite zoo card (base model + projection), so it is evaluated like any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cog import CogError
from cog.compress.base import _plain, _Projector
from cog.compress.files import load_estimator, make_estimator
from cog.features.options import FeatureSource, updated
from cog.features.settings import DEFAULT_KIND, feature_kind, features_seal


def projection_dir() -> Path:
    """Where `cog-tldr fit` keeps fitted projections: $COG_HOME/projections."""
    from cog.io import cog_home

    return cog_home() / "projections"


def composite_name(base: str, method: str, dim: int) -> str:
    """`<base>+tldr128` / `<base>+pcaw128`: the zoo name of a compressed backbone."""
    return f"{base}+{method}{int(dim)}"


def parse_fit_on(text: str) -> tuple[str, str]:
    """ "in1k/train" -> ("in1k", "train"). Test splits are refused: a projection fitted on
    the data it is evaluated on would leak the test set into the benchmark."""
    dataset, sep, split = text.partition("/")
    if not sep or not dataset or split not in ("train", "test"):
        raise CogError(f"--fit-on {text!r}: write DATASET/SPLIT, e.g. in1k/train or cog_l1/train")
    if split == "test":
        raise CogError(
            f"--fit-on {text!r}: fitting on a test split leaks it into the evaluation; "
            "fit on a train split (in1k/train by default)"
        )
    return dataset, split


def _reusable(
    path: Path, est: _Projector, weights: str, images: str, kind: dict, seal: str
) -> bool:
    """An existing projection file made with the same parameters from the same features:
    same weights, images, kind (mode, dtype, decode path) and bytes (the cache's seal;
    files written before cog recorded it match on the rest)."""
    try:
        old = load_estimator(path)
    except CogError:
        return False
    info = getattr(old, "fit_info_", {})
    return (
        type(old) is type(est)
        and _plain(old.get_params()) == _plain({**est.get_params(), "verbose": old.verbose})
        and info.get("base_weights_sha256") == weights
        and info.get("images_sha256") == images
        and dict(info.get("features") or DEFAULT_KIND) == kind
        and info.get("features_sha256") in (None, seal)
    )


def compress_model(
    model: str,
    dim: int,
    *,
    method: str = "tldr",
    fit_on: str = "in1k/train",
    params: dict[str, Any] | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    overwrite_features: bool = False,
    register: bool = True,
    echo: Any = print,
    source: FeatureSource | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Fit a TLDR / PCA-w projection on `model`'s cached features of `fit_on`, save it under
    $COG_HOME/projections/ and register the composite zoo card `<model>+<method><dim>`.

    The cache is made (or resumed) by cog.features.ensure.ensure_features from `source`
    (cog.features.options.FeatureSource; keyword `settings` name its fields).
    A projection already fitted with the same parameters on the same cache is reused, and
    an interrupted TLDR fit resumes from its checkpoint.
    Returns {name, path, sha256, card, reused, fit_info}.
    """
    from cog import zoo
    from cog.features.cache import open_features
    from cog.features.ensure import ensure_features
    from cog.io import sha256_file

    card = zoo.get_card(model)
    if card.base is not None:
        raise CogError(
            f"{card.name!r} is already a compressed model (base {card.base!r}); "
            f"fit the projection on {card.base!r} instead"
        )
    dataset, split = parse_fit_on(fit_on)
    params = dict(params or {})
    source = updated(source, settings, "compress_model")
    device = source.options.device
    est = make_estimator(method, int(dim), device=device, **params)
    name = name or composite_name(card.name, method, dim)
    path = Path(out) if out is not None else projection_dir() / f"{name}.pt"
    cache = ensure_features(card.name, dataset, split, source, overwrite=overwrite_features)
    with open_features(cache) as fs:
        weights = str(fs.attrs.get("weights_sha256"))
        images = str(fs.attrs.get("images_sha256"))
        kind = feature_kind(fs.attrs)
        seal = features_seal(fs.attrs)
        if fs.dim < int(dim):
            raise CogError(
                f"{cache}: {card.name} features have D={fs.dim}, fewer than --dim {dim}; "
                f"choose a dimension <= {fs.dim}"
            )
        reused = (
            not overwrite
            and path.is_file()
            and _reusable(path, est, weights, images, kind, seal)
        )
        if not reused:
            if path.is_file() and not overwrite:
                raise CogError(
                    f"{path}: a projection fitted with other settings or features exists; "
                    "pass --overwrite to replace it, or --name to keep both"
                )
            echo(f"{name}: fitting {method} ({fs.dim} -> {dim}) on {len(fs)} {fit_on} features")
            est.set_params(verbose=source.options.progress)
            ckpt = path.with_name(f".{path.name}.ckpt")
            if method == "tldr":  # the kNN graph is shared by fits at other d (study)
                est.fit(fs.features, checkpoint=ckpt, knn_cache=path.parent / ".knn")
            else:
                est.fit(fs.features)
            est.fit_info_.update(
                base=card.name,
                fit_on=fit_on,
                base_weights_sha256=weights,
                images_sha256=images,
                features=kind,
                features_sha256=seal,
                cache=str(cache),
            )
            est.set_params(verbose=False)
            est.save(path)
            ckpt.unlink(missing_ok=True)
        else:
            echo(f"{name}: reusing {path} (same parameters and features)")
    digest = sha256_file(path)
    info = load_estimator(path).fit_info_
    random = weights == "random-init"
    entry = {
        "name": name,
        "base": card.name,
        "group": card.group,
        "title": f"{card.title or card.name} compressed to {dim}-d by {method.upper()}"
        + (" (fitted on RANDOM-INIT features)" if random else ""),
        "projection": {
            "kind": method,
            "path": str(path.resolve()),
            "sha256": digest,
            "dim": int(dim),
        },
        "training": {
            "fit_on": fit_on,
            "n_samples": info.get("n_samples"),
            "base_weights_sha256": weights,
            "base_features": dict(info.get("features") or DEFAULT_KIND),
            "params": _plain(
                {k: v for k, v in est.get_params().items() if k not in ("verbose", "device")}
            ),
        },
    }
    # a reused projection keeps the card that names it: rewriting it (new fields) would make
    # every composite cache made from it look stale
    try:
        known = zoo.get_card(name)
    except CogError:
        known = None
    same = known is not None and known.base == card.name and known.projection.sha256 == digest
    if reused and same:
        card_path = known.source_file if register else None
    else:
        card_path = zoo.register_card(entry, overwrite=True) if register else None
    return {
        "name": name,
        "path": path,
        "sha256": digest,
        "card": card_path,
        "reused": reused,
        "fit_info": info,
    }


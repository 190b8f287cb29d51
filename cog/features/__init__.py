"""Images in, features out: image lists, decoding, the extractor, the cache.

The package itself imports nothing heavy: `cog.features.options` (the option bundles) is
read by the CLIs before --help answers; the cache readers load on first use."""

from __future__ import annotations

from typing import Any

__all__ = ["FeatureSet", "open_features", "read_attrs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cog.features import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'cog.features' has no attribute {name!r}")

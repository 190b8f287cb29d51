"""Images in, features out: image lists, decoding, the extractor, the cache."""

from cog.features.cache import FeatureSet, open_features, read_attrs

__all__ = ["FeatureSet", "open_features", "read_attrs"]

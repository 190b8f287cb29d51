"""Deprecated alias of `cog.features.photos` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.features.photos"
warnings.warn(
    "cog.photos is deprecated: import cog.features.photos instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

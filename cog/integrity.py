"""Deprecated alias of `cog.features.integrity` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.features.integrity"
warnings.warn(
    "cog.integrity is deprecated: import cog.features.integrity instead "
    "(the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

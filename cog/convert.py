"""Deprecated alias of `cog.zoo.convert` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.zoo.convert"
warnings.warn(
    "cog.convert is deprecated: import cog.zoo.convert instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

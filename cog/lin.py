"""Deprecated alias of `cog.concepts.lin` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.concepts.lin"
warnings.warn(
    "cog.lin is deprecated: import cog.concepts.lin instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

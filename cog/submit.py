"""Deprecated alias of `cog.bench.submit` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.bench.submit"
warnings.warn(
    "cog.submit is deprecated: import cog.bench.submit instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

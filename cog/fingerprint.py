"""Deprecated alias of `cog.zoo.fingerprint` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.zoo.fingerprint"
warnings.warn(
    "cog.fingerprint is deprecated: import cog.zoo.fingerprint instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

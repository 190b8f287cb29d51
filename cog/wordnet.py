"""Deprecated alias of `cog.concepts.wordnet` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.concepts.wordnet"
warnings.warn(
    "cog.wordnet is deprecated: import cog.concepts.wordnet instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

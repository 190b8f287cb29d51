"""Deprecated alias of `cog.bench.leaderboard` (moved by issue 15; removed in cog 0.3)."""

import importlib
import sys
import warnings

__deprecated_alias__ = "cog.bench.leaderboard"
warnings.warn(
    "cog.leaderboard is deprecated: import cog.bench.leaderboard instead "
    "(the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module(__deprecated_alias__)

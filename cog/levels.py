"""Deprecated alias of `cog.concepts.levels` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.concepts.levels"
warnings.warn(
    "cog.levels is deprecated: import cog.concepts.levels instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.concepts.levels import (  # noqa: E402, F401
    BINS_ROUNDING,
    CUT_RULES,
    DEFAULT_OUT,
    DEFAULT_POOL,
    DEFAULT_SEEN,
    FILTERS,
    IC_SOURCES,
    MAPPING_FILE,
    SHIPPED_LEVELS,
    SPLITS_DIR,
    LevelsComparison,
    LevelsConfig,
    LevelsResult,
    Step,
    _cut,
    _file_record,
    _load_ic,
    _steps_line,
    bin_edges,
    build_levels,
    compare_levels,
    compare_with_official,
    read_levels,
)
from cog.concepts.levels_report import (  # noqa: E402, F401
    _bins_section,
    _comparison_section,
    _cut_record,
    _ic_record,
    _md_table,
    _show,
    _versions,
    level_summary,
    render_report,
    write_levels,
)

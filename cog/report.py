"""Deprecated alias of `cog.bench.report` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.bench.report"
warnings.warn(
    "cog.report is deprecated: import cog.bench.report instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.bench.figures import (  # noqa: E402, F401
    Plot,
    _empty,
    _errorbars,
    _grid,
    _percent,
    _suptitle,
    plot_absolute,
    plot_few_shot,
    plot_relative,
    save_figure,
)
from cog.bench.report import (  # noqa: E402, F401
    ReportResult,
    _note_selection,
    _ranking_caption,
    _rel,
    html_page,
    make_report,
    render_page,
)
from cog.bench.style import (  # noqa: E402, F401
    DATASETS,
    FAMILIES,
    LEVEL_RE,
    MARKERS,
    METRIC_LABELS,
    ModelStyle,
    dataset_label,
    dataset_order,
    family_order,
    family_title,
    model_style,
)
from cog.bench.tables import (  # noqa: E402, F401
    KEY,
    LEFT_COLUMNS,
    NUMERIC_COLUMNS,
    OPTIONAL_COLUMNS,
    RANDOM_NAME,
    REQUIRED_COLUMNS,
    _close,
    _long,
    _pm,
    _says_random,
    _seed_map,
    _sort,
    _split,
    chance_levels,
    choose_models,
    coverage_table,
    data_table,
    format_ranking,
    mark_random_init,
    markdown_table,
    missing_results,
    ranking_table,
    read_leaderboard,
    recorded_levels,
    relative_table,
    resolve_model,
    run_facts,
    run_path,
    select,
)
from cog.concepts.plots import (  # noqa: E402, F401
    LEVEL_COLORS,
    STYLE,
    concept_path,
    level_similarity_table,
    plot_level_similarity,
    read_level_similarity,
)

"""Deprecated alias of `cog.bench.evaluate` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.bench.evaluate"
warnings.warn(
    "cog.evaluate is deprecated: import cog.bench.evaluate instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.bench.config import (  # noqa: E402, F401
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    KNN_K,
    KNN_TEMPERATURE,
    PAIR_SEED,
    SCHEMA_VERSION,
    SPLITS,
    VERSIONED_PACKAGES,
    EvalConfig,
    Split,
    _few,
    _file_record,
    _now,
    _partial_path,
    _pick,
    _stats,
    check_finite,
    check_pair,
    check_roots,
    check_shots,
    check_weights,
    level_count,
    levels_file,
    open_split,
    resolve_datasets,
    run_name,
    run_path,
    splits_file,
    versions,
)
from cog.bench.evaluate import (  # noqa: E402, F401
    Evaluator,
    _fingerprint,
    _jsonable,
    _load_previous,
    _write_json,
    evaluate,
    feature_metrics,
    leaderboard_rows,
    probe_seed,
    summary_table,
)

"""Deprecated alias of `cog.protocols.probe` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.protocols.probe"
warnings.warn(
    "cog.probe is deprecated: import cog.protocols.probe instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.device import resolve_device  # noqa: E402, F401
from cog.protocols.lbfgs import (  # noqa: E402, F401
    _effective,
    _evaluate,
    _lbfgs,
    _logits_blocks,
    _matmul_precision,
    _Objective,
    fit_l2,
)
from cog.protocols.probe import DEFAULT_L2_GRID, PROTOCOLS, LogRegProbe  # noqa: E402, F401
from cog.protocols.sampling import (  # noqa: E402, F401
    FEW_SHOT_N,
    REFERENCE_LR_RANGE,
    REFERENCE_WD_RANGE,
    SEEDS,
    VAL_FRACTION,
    _class_label,
    _per_class,
    check_class_sets,
    check_labels,
    few_shot_indices,
    reference_lr,
    source_name,
    validation_size,
    validation_split,
)
from cog.protocols.store import (  # noqa: E402, F401
    CHUNK_BYTES,
    FeatureStore,
    _fits,
    _memory_available,
    _storage_dtype,
    load_features,
    peak_memory,
    row_blocks,
)

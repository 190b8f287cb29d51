"""Deprecated alias of `cog.features.extract` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.features.extract"
warnings.warn(
    "cog.extract is deprecated: import cog.features.extract instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.features.ensure import ensure_features, project_features  # noqa: E402, F401
from cog.features.extract import (  # noqa: E402, F401
    CPU_BATCH,
    CUDA_BATCH,
    SEGMENT_IMAGES,
    _atomic_h5,
    _done_segments,
    _extract,
    _Forward,
    _lock,
    _merge,
    _new_buffer,
    _part_name,
    _plan,
    _print_summary,
    _remove_stale_temporaries,
    _run,
    _write_lists,
    _write_part,
    extract,
)
from cog.features.pipeline import (  # noqa: E402, F401
    _Bytes,
    _checked_pipeline,
    _decode_first,
    _decode_path,
    _device,
    _Dist,
    _dist_setup,
    _Images,
    _Pipeline,
    _precision,
    _ResizeCrop,
    default_workers,
    guard_sample,
)
from cog.features.settings import (  # noqa: E402, F401
    DECODES,
    DRAFT_NOTE,
    DTYPES,
    IMPLICIT,
    MODES,
    PRECISIONS,
    RANDOM_INIT_SUFFIX,
    STRICT,
    _card_settings,
    _existing_attrs,
    _jsonable,
    _mismatch,
    _settings,
    _short,
    _stale_error,
    cache_path,
)

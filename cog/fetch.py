"""Deprecated alias of `cog.zoo.fetch` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.zoo.fetch"
warnings.warn(
    "cog.fetch is deprecated: import cog.zoo.fetch instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.zoo.fetch import (  # noqa: E402, F401
    CHUNK,
    RETRIES,
    Fetched,
    _fetch_source,
    _offline,
    _verify,
    download,
    fetch,
    fetch_model,
)
from cog.zoo.lock import (  # noqa: E402, F401
    LOCK_NAME,
    LOCK_VERSION,
    check_lock,
    lock_path,
    read_lock,
    record_lock,
    source_key,
)

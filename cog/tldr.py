"""Deprecated alias of `cog.compress.tldr` (moved by issue 15; removed in cog 0.3)."""

import warnings

__deprecated_alias__ = "cog.compress.tldr"
warnings.warn(
    "cog.tldr is deprecated: import cog.compress.tldr instead (the alias goes in cog 0.3)",
    DeprecationWarning,
    stacklevel=2,
)
from cog.bench.compress import (  # noqa: E402, F401
    _reusable,
    composite_name,
    compress_model,
    parse_fit_on,
    projection_dir,
)
from cog.bench.study import (  # noqa: E402, F401
    DEFAULT_STUDY_DIMS,
    STUDY_METRICS,
    _markdown,
    _score,
    _study_table,
    _write_study,
    study,
)
from cog.compress.base import FORMAT, FORMAT_VERSION, KINDS, _plain, _Projector, _read_blob  # noqa: E402, F401
from cog.compress.files import _CLASSES, METHODS, load_estimator, load_projection, make_estimator  # noqa: E402, F401
from cog.compress.knn_graph import (  # noqa: E402, F401
    KNN_METHODS,
    KNN_METRICS,
    _cached_graph,
    _faiss,
    _fingerprint,
    _knn_exact,
    _knn_faiss,
    knn_graph,
)
from cog.compress.matrix import (  # noqa: E402, F401
    _CHUNK_ROWS,
    _iter_rows,
    _raise_on_nonfinite,
    load_matrix,
    project,
    resolve_device,
)
from cog.compress.nets import (  # noqa: E402, F401
    ENCODERS,
    LARS,
    OPTIMIZERS,
    Projection,
    _hidden,
    _lr_at,
    _param_groups,
    _Whitening,
    barlow_twins_loss,
    build_encoder,
    build_projector,
    parse_projector,
)
from cog.compress.pcaw import PCAW  # noqa: E402, F401
from cog.compress.tldr import TLDR  # noqa: E402, F401

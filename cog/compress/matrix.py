"""Feature matrices in row blocks: what TLDR and PCA-w read and how projections apply.

Arrays, memory maps, HDF5 datasets and `FeatureSet`s are read block by block with their shape
checked and non-finite rows named, so a projection never materialises a whole cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cog import CogError
from cog.device import resolve_device
from cog.protocols.sampling import source_name
from cog.protocols.store import feature_rows, iter_rows

_CHUNK_ROWS = 65536


# --------------------------------------------------------------------------- inputs


def _iter_rows(src: Any, rows: int = _CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 chunk) over the rows of an array from `feature_rows`."""
    return iter_rows(src, rows, np.float32)


def _raise_on_nonfinite(bad: np.ndarray, name: str) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if rows.size > 10 else "")
        raise CogError(
            f"{name}: {rows.size} row(s) hold NaN or infinite values (rows {shown}); "
            "re-extract those images or drop the rows before fitting"
        )


def load_matrix(X: Any, name: str | None = None, *, progress: bool = False) -> np.ndarray:
    """Read X whole as a C-contiguous float32 [N, D] array, refusing NaN/inf rows.

    HDF5 datasets are read in chunks (with progress when asked), so that a float16 cache
    does not pass through a float64 copy.
    """
    name = name or source_name(X)
    src, n, dim = feature_rows(X, name)
    if isinstance(src, np.ndarray) and src.dtype == np.float32 and src.flags.c_contiguous:
        out = src
    else:
        out = np.empty((n, dim), dtype=np.float32)
        chunks = _iter_rows(src)
        if progress and not isinstance(src, np.ndarray):
            chunks = tqdm(chunks, total=math.ceil(n / _CHUNK_ROWS), desc="read", unit="chunk")
        for start, chunk in chunks:
            out[start : start + len(chunk)] = chunk
    bad = np.zeros(n, dtype=bool)
    for start in range(0, n, _CHUNK_ROWS):
        bad[start : start + _CHUNK_ROWS] = ~np.isfinite(out[start : start + _CHUNK_ROWS]).all(1)
    _raise_on_nonfinite(bad, name)
    return out


def project(
    module: nn.Module,
    X: Any,
    batch_size: int = 65536,
    device: str | torch.device = "cpu",
    *,
    name: str | None = None,
) -> np.ndarray:
    """Apply a loaded projection to [N, D] features (array, HDF5 dataset or FeatureSet) in
    batches; NaN/inf rows raise CogError rather than poisoning the output."""
    name = name or source_name(X)
    src, n, _ = feature_rows(X, name)
    dev = resolve_device(device)
    module = module.to(dev).eval()
    out: np.ndarray | None = None
    bad = np.zeros(n, dtype=bool)
    with torch.inference_mode():
        for start, chunk in _iter_rows(src, batch_size):
            bad[start : start + len(chunk)] = ~np.isfinite(chunk).all(1)
            z = module(torch.from_numpy(chunk).to(dev)).cpu().numpy()
            if out is None:
                out = np.empty((n, z.shape[1]), dtype=np.float32)
            out[start : start + len(chunk)] = z
    _raise_on_nonfinite(bad, name)
    assert out is not None
    return out

"""Features on the device, streamed in chunks: float32 when they fit the memory budget,
float16 otherwise, so ImageNet-1K train (1.28M x 2048) fits a 24 GB machine or one GPU.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cog import CogError
from cog.device import resolve_device
from cog.protocols.sampling import source_name

# One chunk of float32 features or logits is kept near this many bytes.
CHUNK_BYTES = 1 << 28


def _memory_available() -> int:
    """Bytes of RAM available now (Linux /proc/meminfo), or 8 GiB when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def peak_memory(device: torch.device | None = None) -> dict[str, int]:
    """Peak resident memory of this process and, on CUDA, peak bytes torch allocated."""
    out = {"cpu_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device is not None and device.type == "cuda":
        out["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out


# --------------------------------------------------------------------------------------
# feature storage
# --------------------------------------------------------------------------------------


class FeatureStore:
    """L2-normalised features held on the device, read once from any row-sliceable array.

    `data` is [N, D] float32 or float16; `chunks` yields float32 blocks so no float32 copy of
    a float16 store ever exists beyond one chunk.
    """

    def __init__(self, data: torch.Tensor, source: str):
        self.data = data
        self.source = source

    @property
    def n(self) -> int:
        return self.data.shape[0]

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    @property
    def device(self) -> torch.device:
        return self.data.device

    def chunk_rows(self, width: int | None = None) -> int:
        return max(256, CHUNK_BYTES // (4 * max(self.dim, width or 0)))

    def chunks(
        self, idx: torch.Tensor | None = None, width: int | None = None
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """(position, float32 block) over all rows or over the rows `idx`, in order."""
        n = self.n if idx is None else len(idx)
        step = self.chunk_rows(width)
        for a in range(0, n, step):
            s = slice(a, min(a + step, n))
            block = self.data[s] if idx is None else self.data[idx[s]]
            yield s, block.float()

    def stats(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and 1/std (float64 sums), for standardising inside the solver."""
        s1 = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        s2 = torch.zeros_like(s1)
        n = 0
        for _, x in self.chunks(idx):
            s1 += x.sum(0, dtype=torch.float64)
            s2 += (x * x).sum(0, dtype=torch.float64)
            n += x.shape[0]
        mu = s1 / max(n, 1)
        var = (s2 / max(n, 1) - mu * mu).clamp_min(0)
        sd = var.sqrt()
        inv = torch.where(sd > 1e-8, 1.0 / sd.clamp_min(1e-8), torch.ones_like(sd))
        return mu.float(), inv.float()


def _storage_dtype(n: int, d: int, device: torch.device, dtype: str) -> torch.dtype:
    if dtype != "auto":
        table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in table:
            raise CogError(f"storage dtype {dtype!r} unknown; use auto, {', '.join(table)}")
        return table[dtype]
    need = n * d * 4
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 2
    else:
        budget = min(_memory_available() // 3, 8 << 30)
    return torch.float32 if need <= budget else torch.float16


def _real(dtype: Any) -> bool:
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point or (not dtype.is_complex and dtype != torch.bool)
    dt = np.dtype(dtype)
    return bool(np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating))


def feature_rows(X: Any, what: str) -> tuple[Any, int, int]:
    """(array, rows, dim): the row-sliceable [N, D] array behind X (ndarray, memmap, tensor,
    h5py dataset or FeatureSet), shape and dtype checked, nothing read yet.

    The one reader behind `load_features` and cog.compress's `load_matrix`, so both accept
    the same inputs and refuse bad ones with the same message."""
    if isinstance(X, FeatureStore):
        raise TypeError("already a FeatureStore")
    if hasattr(X, "features") and not hasattr(X, "shape"):  # a cog.features.cache.FeatureSet
        X = X.features
    if isinstance(X, torch.Tensor) and X.device.type == "cpu" and X.dtype != torch.bfloat16:
        X = X.detach().numpy()  # a view; tensors elsewhere are copied block by block
    elif getattr(X, "shape", None) is None or getattr(X, "dtype", None) is None:
        X = np.asarray(X)
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise CogError(
            f"{what}: features must be a 2-D [N, D] matrix (one row per image), got shape {shape}"
        )
    n, d = int(shape[0]), int(shape[1])
    if n == 0 or d == 0:
        raise CogError(f"{what}: empty feature matrix {shape}; extract features first")
    if not _real(X.dtype):
        raise CogError(f"{what}: features must be real numbers, got dtype {X.dtype}")
    return X, n, d


def iter_rows(src: Any, step: int, dtype: Any = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, block) over the rows of an array from `feature_rows`, `step` rows at a time."""
    n = src.shape[0]
    for a in range(0, n, step):
        block = src[a : min(a + step, n)]
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu()
            block = (block.float() if block.dtype == torch.bfloat16 else block).numpy()
        yield a, np.asarray(block, dtype=dtype)


def row_blocks(X: Any, what: str) -> tuple[int, int, Iterator[tuple[int, np.ndarray]]]:
    """(rows, dim, iterator of (start, block)) for ndarray, memmap, h5py or torch input."""
    src, n, d = feature_rows(X, what)
    return n, d, iter_rows(src, max(256, CHUNK_BYTES // (4 * d)))


def load_features(
    X: Any, device: str | torch.device = "auto", dtype: str = "auto", what: str | None = None
) -> FeatureStore:
    """Stream `X` in chunks, check it is finite, L2-normalise rows, keep it on `device`.

    Non-finite rows raise CogError with their count and first indices: a NaN would
    otherwise poison every gradient without a trace.
    """
    if isinstance(X, FeatureStore):
        return X
    dev = resolve_device(device)
    what = what or source_name(X)
    n, d, blocks = row_blocks(X, what)
    store_dtype = _storage_dtype(n, d, dev, dtype)
    data = torch.empty((n, d), dtype=store_dtype, device=dev)
    bad_count, bad_first = 0, []
    for a, block in blocks:
        t = torch.from_numpy(np.ascontiguousarray(block)).to(dev).float()
        finite = torch.isfinite(t).all(1)
        if not bool(finite.all()):
            rows = (~finite).nonzero().flatten()
            bad_count += len(rows)
            bad_first.extend((rows[: 10 - len(bad_first)] + a).tolist())
            t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        data[a : a + t.shape[0]] = torch.nn.functional.normalize(t, dim=1).to(store_dtype)
    if bad_count:
        raise CogError(
            f"{what}: {bad_count} of {n} feature rows hold NaN or inf (first rows: "
            f"{bad_first}); re-extract those images or drop the rows with their labels"
        )
    return FeatureStore(data, what)


def _fits(nbytes: int, device: torch.device) -> bool:
    """Whether an extra working copy of `nbytes` leaves ample room on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 3
    return nbytes <= min(_memory_available() // 4, 4 << 30)

"""The k-nearest-neighbour graph TLDR trains on, exact or with faiss, cached on disk."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cog import CogError
from cog.device import resolve_device

KNN_METHODS = ("auto", "exact", "faiss")
KNN_METRICS = ("euclidean", "cosine")


def _cached_graph(path: Path | None, n: int, k: int) -> np.ndarray | None:
    """A cached kNN graph, used only when it reads back whole with the expected shape."""
    if path is None or not path.is_file():
        return None
    try:
        g = np.load(path)
    except (OSError, ValueError):
        return None
    ok = g.shape == (n, k) and int(g.min()) >= 0 and int(g.max()) < n
    return g.astype(np.int64) if ok else None


def _fingerprint(X: np.ndarray) -> str:
    """A cheap identity of a training matrix (shape + a strided sample) for resuming."""
    h = hashlib.sha256(repr(X.shape).encode())
    step = max(1, X.shape[0] // 2048)
    h.update(np.ascontiguousarray(X[::step]).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- kNN positives


def _faiss():
    try:
        import faiss  # optional dependency
    except ImportError:
        return None
    return faiss


def knn_graph(
    X: np.ndarray | torch.Tensor,
    k: int,
    *,
    metric: str = "euclidean",
    method: str = "exact",
    device: str | torch.device = "auto",
    query_chunk: int = 4096,
    base_chunk: int = 65536,
    nprobe: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Indices [N, k] of each row's k nearest other rows (the point itself excluded).

    Exact search runs blockwise (query_chunk x base_chunk similarities at a time, a running
    top-k), so memory stays bounded on CPU and GPU. Self matches are removed by index, not by
    dropping the first hit, which is only right when no two points coincide and the metric
    ranks a point first against itself. `method="faiss"` uses an inverted-file index
    (approximate; nprobe lists searched); "auto" does so for more than 200k points on the
    CPU when faiss is installed, and searches exactly otherwise (on a GPU exact is fast).
    """
    if metric not in KNN_METRICS:
        raise CogError(f"knn metric {metric!r} unknown; choose one of {', '.join(KNN_METRICS)}")
    if method not in KNN_METHODS:
        raise CogError(f"knn method {method!r} unknown; choose one of {', '.join(KNN_METHODS)}")
    n = X.shape[0]
    if k < 1 or k >= n:
        raise CogError(
            f"n_neighbors={k} needs at least {k + 1} points, got {n}; "
            "fit on more points or lower n_neighbors"
        )
    faiss = _faiss()
    if method == "faiss" and faiss is None:
        raise CogError("knn method 'faiss' needs faiss: pip install faiss-cpu (or faiss-gpu)")
    dev = resolve_device(device)
    big_on_cpu = dev.type == "cpu" and n > 200_000
    if method == "faiss" or (method == "auto" and faiss is not None and big_on_cpu):
        Xn = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        return _knn_faiss(faiss, np.ascontiguousarray(Xn, dtype=np.float32), k, metric, nprobe)
    return _knn_exact(X, k, metric, dev, query_chunk, base_chunk, progress)


def _knn_exact(
    X: np.ndarray | torch.Tensor,
    k: int,
    metric: str,
    device: torch.device,
    query_chunk: int,
    base_chunk: int,
    progress: bool,
) -> np.ndarray:
    base = torch.as_tensor(X).to(device=device, dtype=torch.float32)
    if metric == "cosine":
        base = F.normalize(base, dim=1)
    sq = (base * base).sum(1)
    n = base.shape[0]
    out = torch.empty((n, k), dtype=torch.int64)
    starts = range(0, n, query_chunk)
    bar = tqdm(starts, desc="kNN", unit="chunk", disable=not progress)
    for qs in bar:
        q = base[qs : qs + query_chunk]
        rows = torch.arange(qs, qs + q.shape[0], device=device)
        best_s = torch.full((q.shape[0], k), -math.inf, device=device)
        best_i = torch.zeros((q.shape[0], k), dtype=torch.int64, device=device)
        for bs in range(0, n, base_chunk):
            b = base[bs : bs + base_chunk]
            # higher is nearer: -||q-b||^2 up to the per-query constant ||q||^2
            s = q @ b.T
            if metric == "euclidean":
                s = 2 * s - sq[bs : bs + b.shape[0]]
            local = rows - bs
            mine = (local >= 0) & (local < b.shape[0])
            if mine.any():
                s[mine.nonzero().squeeze(1), local[mine]] = -math.inf
            kk = min(k, s.shape[1])
            top_s, top_i = s.topk(kk, dim=1)
            cat_s = torch.cat([best_s, top_s], 1)
            cat_i = torch.cat([best_i, top_i + bs], 1)
            best_s, sel = cat_s.topk(k, dim=1)
            best_i = cat_i.gather(1, sel)
        out[qs : qs + q.shape[0]] = best_i.cpu()
    return out.numpy()


def _knn_faiss(faiss, X: np.ndarray, k: int, metric: str, nprobe: int) -> np.ndarray:
    n, dim = X.shape
    if metric == "cosine":
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
    rng = np.random.default_rng(0)
    train = X[rng.choice(n, size=min(n, 256 * nlist), replace=False)]
    index.train(train)
    index.add(X)
    index.nprobe = min(nprobe, nlist)
    _, idx = index.search(X, k + 1)
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = idx[i][(idx[i] != i) & (idx[i] >= 0)][:k]
        if row.size < k:  # fewer hits than asked in the probed lists: pad with the last one
            row = np.concatenate([row, np.full(k - row.size, row[-1] if row.size else i)])
        out[i] = row
    return out

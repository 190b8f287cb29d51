"""Label-light scores of frozen features: weighted kNN, alignment and uniformity.

kNN follows DINO's evaluation (mochi_tldr.md section 5): cosine similarity, the k = 20
nearest training rows vote with weight exp(s / T), T = 0.07. Similarities are computed in
(test chunk x train chunk) blocks with a running top-k, so memory stays bounded for
ImageNet-1K train. Alignment and uniformity (Wang & Isola 2020; mochi_tldr.md section 4)
are estimated on random pairs of L2-normalised rows, reproducible from `seed`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cog import CogError
from cog.device import resolve_device
from cog.protocols.sampling import check_class_sets, check_labels, source_name
from cog.protocols.store import load_features, row_blocks

DEFAULT_PAIRS = 100_000


@torch.no_grad()
def knn_scores(
    train_X: Any,
    train_y: Any,
    test_X: Any,
    test_y: Any,
    k: int = 20,
    temperature: float = 0.07,
    device: str = "auto",
    test_chunk: int = 1024,
    train_chunk: int = 65536,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy in [0, 1] of the temperature-weighted cosine kNN vote.

    k is capped at the number of training rows; the train and test class sets must match.
    """
    if int(k) != k or k < 1:
        raise CogError(f"kNN k must be a positive integer, got {k!r}")
    if not temperature > 0:
        raise CogError(f"kNN temperature must be positive, got {temperature!r}")
    dev = resolve_device(device)
    train = load_features(train_X, dev)
    test = load_features(test_X, dev)
    if train.dim != test.dim:
        raise CogError(
            f"{test.source}: test features have {test.dim} dims, training features "
            f"({train.source}) {train.dim}; use one model's features for both"
        )
    ytr = check_labels(train_y, train.n, f"{train.source} labels")
    yte = check_labels(test_y, test.n, f"{test.source} labels")
    classes, ytr_enc = np.unique(ytr, return_inverse=True)
    check_class_sets(classes, yte, what=f"{test.source} labels")
    ytr_t = torch.from_numpy(ytr_enc).to(dev)
    yte_t = torch.from_numpy(np.searchsorted(classes, yte)).to(dev)
    k = min(int(k), train.n)
    n_top = min(5, len(classes))
    hit1 = hit5 = 0
    for a in range(0, test.n, test_chunk):
        q = test.data[a : a + test_chunk].float()
        best_s = torch.full((len(q), k), -torch.inf, device=dev)
        best_i = torch.zeros((len(q), k), dtype=torch.long, device=dev)
        for b in range(0, train.n, train_chunk):
            sims = q @ train.data[b : b + train_chunk].float().T
            top = sims.topk(min(k, sims.shape[1]), dim=1)
            cand_s = torch.cat([best_s, top.values], 1)
            cand_i = torch.cat([best_i, top.indices + b], 1)
            keep = cand_s.topk(k, dim=1).indices
            best_s, best_i = cand_s.gather(1, keep), cand_i.gather(1, keep)
        votes = torch.zeros((len(q), len(classes)), device=dev)
        votes.scatter_add_(1, ytr_t[best_i], torch.exp(best_s / temperature))
        top = votes.topk(n_top, dim=1).indices == yte_t[a : a + len(q), None]
        hit1 += int(top[:, 0].sum())
        hit5 += int(top.any(1).sum())
    return {"top1": hit1 / test.n, "top5": hit5 / test.n, "k": k, "temperature": temperature}


def knn_accuracy(
    train_X: Any,
    train_y: Any,
    test_X: Any,
    test_y: Any,
    k: int = 20,
    temperature: float = 0.07,
    **kwargs: Any,
) -> float:
    """Top-1 accuracy in [0, 1] of the weighted cosine kNN classifier (k=20, T=0.07).

    Other keywords (device, chunk sizes) go to `knn_scores`.
    """
    return knn_scores(train_X, train_y, test_X, test_y, k, temperature, **kwargs)["top1"]


def _rows(X: Any, rows: np.ndarray, what: str) -> tuple[torch.Tensor, np.ndarray]:
    """L2-normalised float32 copies of the unique `rows`, read in one streaming pass.

    Returns the rows and, for each requested row, its position among them.
    """
    n, _, blocks = row_blocks(X, what)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise CogError(f"{what}: row index out of range for {n} rows")
    uniq, inverse = np.unique(rows, return_inverse=True)
    parts = []
    for a, block in blocks:
        lo, hi = np.searchsorted(uniq, [a, a + len(block)])
        if hi > lo:
            parts.append(np.asarray(block[uniq[lo:hi] - a], dtype=np.float32))
    x = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros((0, 1))
    bad = int((~torch.isfinite(x).all(1)).sum())
    if bad:
        raise CogError(
            f"{what}: {bad} sampled feature rows hold NaN or inf; re-extract those images "
            "or drop the rows with their labels"
        )
    return torch.nn.functional.normalize(x, dim=1), inverse


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None) or getattr(getattr(X, "features", None), "shape", None)
    if shape is None:
        shape = np.asarray(X).shape
    return int(shape[0])


def alignment(
    X: Any, y: Any, n_pairs: int = DEFAULT_PAIRS, seed: int = 0, alpha: float = 2.0
) -> float:
    """Mean ||f(a) - f(b)||^alpha over random same-class pairs of distinct rows (lower: tighter).

    Pairs are uniform over all ordered same-class pairs (a class is drawn in proportion
    to n_c (n_c - 1)); classes with one row give none.
    """
    what = source_name(X)
    y = check_labels(y, _n_rows(X), f"{what} labels")
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    weight = counts.astype(np.float64) * (counts - 1)
    if weight.sum() == 0:
        raise CogError(f"{what}: no class has two rows, so there is no positive pair")
    rng = np.random.default_rng(seed)
    cls = rng.choice(len(counts), size=n_pairs, p=weight / weight.sum())
    i = rng.integers(0, counts[cls])
    j = rng.integers(0, counts[cls] - 1)
    j = j + (j >= i)  # a distinct partner
    a, b = order[starts[cls] + i], order[starts[cls] + j]
    x, pos = _rows(X, np.concatenate([a, b]), what)
    d = (x[pos[:n_pairs]] - x[pos[n_pairs:]]).norm(dim=1)
    return float(d.pow(alpha).mean())


def uniformity(X: Any, n_pairs: int = DEFAULT_PAIRS, seed: int = 0, t: float = 2.0) -> float:
    """log mean exp(-t ||f(a) - f(b)||^2) over random pairs of distinct rows (lower: more
    uniform on the sphere)."""
    what = source_name(X)
    n = _n_rows(X)
    if n < 2:
        raise CogError(f"{what}: uniformity needs at least two rows, got {n}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=n_pairs)
    b = rng.integers(0, n - 1, size=n_pairs)
    b = b + (b >= a)
    x, pos = _rows(X, np.concatenate([a, b]), what)
    sq = (x[pos[:n_pairs]] - x[pos[n_pairs:]]).pow(2).sum(1).double()
    return float(torch.logsumexp(-t * sq, 0) - np.log(n_pairs))

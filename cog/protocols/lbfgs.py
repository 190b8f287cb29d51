"""The fast protocol's solver: multinomial logistic loss on standardised features,
full-batch L-BFGS, evaluation in chunks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cog import CogError
from cog.device import resolve_device
from cog.protocols.sampling import check_labels
from cog.protocols.store import FeatureStore, _fits, load_features

# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------


def _logits_blocks(
    store: FeatureStore, coef: torch.Tensor, intercept: torch.Tensor
) -> Iterator[tuple[slice, torch.Tensor]]:
    for s, x in store.chunks(width=coef.shape[0]):
        yield s, x @ coef.T + intercept


# --------------------------------------------------------------------------------------
# fast solver internals
# --------------------------------------------------------------------------------------


def fit_l2(
    X: Any,
    y: Any,
    l2: float,
    *,
    device: str = "cpu",
    tol: float = 1e-8,
    max_iter: int = 1000,
    history_size: int = 20,
) -> dict[str, Any]:
    """The fast solver at one fixed L2 strength on all rows (no validation, no path).

    Minimises mean cross-entropy + l2/2 ||W||^2 with W acting on standardised L2-normalised
    features and an unpenalised bias: scikit-learn's LogisticRegression at C = 1 / (l2 * n)
    on the same standardised rows. Returns W, b (standardised space), mu, inv (the
    standardisation), coef/intercept (on L2-normalised rows), the objective and iterations;
    the parity test and benchmarks/bench_sklearn.py compare it with scikit-learn."""
    if not l2 > 0:
        raise CogError(f"l2 must be positive, got {l2!r}")
    dev = resolve_device(device)
    store = load_features(X, dev, "float32")
    y = check_labels(y, store.n)
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise CogError(f"{store.source}: labels hold {len(classes)} class; need two")
    idx = torch.arange(store.n, device=dev)
    y_t = torch.from_numpy(y_enc).to(dev)
    with _matmul_precision("highest"):
        mu, inv = store.stats()
        obj = _Objective(store, idx, y_t, mu, inv, len(classes))
        W = torch.zeros((len(classes), store.dim), device=dev)
        b = torch.zeros(len(classes), device=dev)
        gtol = tol * obj.max_grad(W, b)
        n_iter, n_eval = _lbfgs(obj, W, b, float(l2), max_iter, gtol, history_size)
        loss, _, _ = obj(W, b)
    coef, icpt = _effective(W, b, mu, inv)
    return {
        "classes": classes,
        "W": W,
        "b": b,
        "mu": mu,
        "inv": inv,
        "coef": coef,
        "intercept": icpt,
        "objective": loss + 0.5 * float(l2) * float((W.double() ** 2).sum()),
        "n_iter": n_iter,
        "n_eval": n_eval,
    }


@contextlib.contextmanager
def _matmul_precision(value: str) -> Iterator[None]:
    """Set torch's float32 matmul precision for the block, then restore it."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _effective(W, b, mu, inv):
    """Weights acting on raw normalised features from weights on standardised ones."""
    coef = W * inv
    return coef, b - coef @ mu


@torch.no_grad()
def _evaluate(store, idx, y_t, coef, icpt) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy on rows `idx`."""
    if not torch.isfinite(coef).all() or not torch.isfinite(icpt).all():
        return 0.0, math.inf  # a diverged run scores nothing
    hits, loss = 0, 0.0
    for s, x in store.chunks(idx, width=coef.shape[0]):
        z = x @ coef.T + icpt
        yc = y_t[idx[s]]
        hits += int((z.argmax(1) == yc).sum())
        loss += float(torch.nn.functional.cross_entropy(z, yc, reduction="sum"))
    return hits / len(idx), loss / len(idx)


class _Objective:
    """Mean cross-entropy of a linear layer on standardised rows `idx` (no penalty).

    The gradient is p^T x minus the per-class sums of x, which are fixed, so they are
    computed once. When a float32 copy of the standardised rows fits the memory budget it
    is built once too; otherwise each evaluation gathers and standardises chunk by chunk.
    """

    def __init__(self, store, idx, y_t, mu, inv, n_classes):
        self.store, self.idx, self.mu, self.inv = store, idx, mu, inv
        self.n = len(idx)
        self.y = y_t[idx]
        dim = store.dim
        self.class_sum = torch.zeros((n_classes, dim), device=store.device)
        self.count = torch.bincount(self.y, minlength=n_classes).float()
        dense = None
        if _fits(self.n * dim * 4, store.device):
            dense = torch.empty((self.n, dim), device=store.device)
        for s, x in self._standardised_from_store():
            self.class_sum.index_add_(0, self.y[s], x)
            if dense is not None:
                dense[s] = x
        self.dense = dense

    def _standardised_from_store(self):
        for s, x in self.store.chunks(self.idx, width=len(self.count)):
            yield s, (x - self.mu) * self.inv

    def _chunks(self):
        if self.dense is None:
            yield from self._standardised_from_store()
            return
        step = self.store.chunk_rows(len(self.count))
        for a in range(0, self.n, step):
            s = slice(a, min(a + step, self.n))
            yield s, self.dense[s]

    @torch.no_grad()
    def __call__(self, W, b) -> tuple[float, torch.Tensor, torch.Tensor]:
        gW = -self.class_sum
        gb = -self.count
        loss = torch.zeros((), dtype=torch.float64, device=W.device)
        for s, x in self._chunks():
            z = torch.addmm(b, x, W.T)
            lse = torch.logsumexp(z, 1)
            loss += (lse - z.gather(1, self.y[s, None]).squeeze(1)).sum(dtype=torch.float64)
            p = torch.exp_(z.sub_(lse[:, None]))
            gW.addmm_(p.T, x)
            gb += p.sum(0)
        return float(loss) / self.n, gW / self.n, gb / self.n

    def max_grad(self, W, b) -> float:
        _, gW, gb = self(W, b)
        return max(float(gW.abs().max()), float(gb.abs().max()), 1e-12)


def _lbfgs(obj, W, b, lam, max_iter, gtol, history_size) -> tuple[int, int]:
    """Minimise obj + lam/2 ||W||^2 in place with L-BFGS; (iterations, loss evaluations)."""
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1,
        max_iter=max_iter,
        history_size=history_size,
        tolerance_grad=gtol,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    @torch.no_grad()
    def closure():
        loss, gW, gb = obj(W, b)
        W.grad = gW + lam * W
        b.grad = gb
        return loss + 0.5 * lam * float((W * W).sum())

    opt.step(closure)
    W.requires_grad_(False)
    b.requires_grad_(False)
    state = opt.state[opt._params[0]]
    return int(state.get("n_iter", 0)), int(state.get("func_evals", 0))

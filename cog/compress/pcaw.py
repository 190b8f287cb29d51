"""PCA whitening: the linear baseline TLDR is compared against."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cog import CogError
from cog.compress.base import _Projector
from cog.compress.matrix import (
    _CHUNK_ROWS,
    _iter_rows,
    _raise_on_nonfinite,
)
from cog.compress.nets import _Whitening
from cog.device import resolve_device
from cog.estimator import check_number
from cog.protocols.sampling import source_name
from cog.protocols.store import feature_rows

# --------------------------------------------------------------------------- PCA whitening


class PCAW(_Projector):
    """PCA with whitening: centre, then project with Lambda^(-power) V^T on the top
    n_components directions (power 0.5 classic whitening, 0.25 the softer retrieval variant).

    The covariance is accumulated in float64 chunk by chunk, so an HDF5 feature cache is never
    loaded whole. Eigenvalues below `eps` x the largest are clipped to it, so a rank-deficient
    input cannot blow the scale up. Eigenvector signs are fixed (largest entry positive) so
    refits give the same projection. With power 0.5 the output equals scikit-learn's
    PCA(whiten=True) up to float error.
    """

    kind = "pcaw"

    def __init__(
        self,
        n_components: int = 32,
        power: float = 0.5,
        eps: float = 1e-6,
        device: str = "auto",
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.power = power
        self.eps = eps
        self.device = device
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> PCAW:
        """Estimate mean and covariance of X; y is ignored."""
        check_number(self.power, "power", low=0.0)
        check_number(self.eps, "eps", low=0.0, low_open=True)
        name = source_name(X)
        src, n, dim = feature_rows(X, name)
        self._check_dims(n, dim, name)
        if n < 2:
            raise CogError(f"{name}: PCA needs at least 2 points, got {n}")
        device = resolve_device(self.device)
        fdtype = torch.float64 if device.type != "mps" else torch.float32
        shift = None
        s1 = torch.zeros(dim, dtype=fdtype, device=device)
        s2 = torch.zeros((dim, dim), dtype=fdtype, device=device)
        bad = np.zeros(n, dtype=bool)
        chunks = tqdm(
            _iter_rows(src),
            total=math.ceil(n / _CHUNK_ROWS),
            desc="PCA",
            unit="chunk",
            disable=not self.verbose,
        )
        for start, chunk in chunks:
            bad[start : start + len(chunk)] = ~np.isfinite(chunk).all(1)
            if bad[start : start + len(chunk)].any():
                continue
            c = torch.from_numpy(chunk).to(device=device, dtype=fdtype)
            if shift is None:  # shifting by a rough mean keeps the float64 sums well conditioned
                shift = c.mean(0)
            c = c - shift
            s1 += c.sum(0)
            s2 += c.T @ c
        _raise_on_nonfinite(bad, name)
        mean_c = s1 / n
        cov = (s2 - n * torch.outer(mean_c, mean_c)) / (n - 1)
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.flip(1)
        d = int(self.n_components)
        top = evals[:d].clamp_min(float(self.eps) * float(evals[0].clamp_min(1e-30)))
        vecs = evecs[:, :d]
        sign = torch.sign(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
        vecs = vecs * torch.where(sign == 0, torch.ones_like(sign), sign)
        weight = vecs * top.pow(-float(self.power))
        self.mean_ = (mean_c + shift).float().cpu()
        self.components_ = vecs.T.float().cpu()
        self.explained_variance_ = top.float().cpu()
        self.explained_variance_ratio_ = (top / evals.clamp_min(0).sum()).float().cpu()
        self.weight_ = weight.float().cpu()
        self.input_dim_ = dim
        self.fit_info_ = {"n_samples": n, "input_dim": dim, "device": str(device)}
        return self

    def _module(self) -> nn.Module:
        return _Whitening(self.mean_.clone(), self.weight_.clone()).eval()

    def _state(self) -> dict:
        return {
            "mean": self.mean_,
            "weight": self.weight_,
            "components": self.components_,
            "explained_variance": self.explained_variance_,
        }

    def _restore(self, blob: dict) -> None:
        self.mean_, self.weight_ = blob["mean"], blob["weight"]
        self.components_ = blob["components"]
        self.explained_variance_ = blob["explained_variance"]

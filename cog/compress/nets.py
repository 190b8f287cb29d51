"""TLDR's networks and optimiser: encoders, projector, Barlow Twins loss, LARS.

`Projection` is the fitted module every estimator exports: [B, D] float -> [B, d].
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cog import CogError

ENCODERS = ("linear", "factorized", "mlp")
OPTIMIZERS = ("lars", "sgd", "adamw")


# --------------------------------------------------------------------------- loss, optimizer


def barlow_twins_loss(
    za: torch.Tensor, zb: torch.Tensor, lambd: float = 0.0039, scale: float = 1 / 32
) -> torch.Tensor:
    """scale * [sum_i (1 - C_ii)^2 + lambd * sum_{i!=j} C_ij^2], C the cross-correlation of
    the batch-normalized (no learned affine) embeddings of the two sides of each pair."""
    if za.shape != zb.shape or za.ndim != 2 or za.shape[0] < 2:
        raise CogError(f"Barlow Twins loss needs two [B>=2, E] batches, got {za.shape}, {zb.shape}")
    za = F.batch_norm(za, None, None, training=True, eps=1e-5)
    zb = F.batch_norm(zb, None, None, training=True, eps=1e-5)
    c = za.T @ zb / za.shape[0]
    diag = torch.diagonal(c)
    on = (1 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return scale * (on + lambd * off)


class LARS(torch.optim.Optimizer):
    """SGD with momentum where each weight's step is rescaled by eta * ||w|| / ||update||
    (layer-wise adaptive rate scaling). Parameter groups with `exclude=True` (biases, norm
    weights) get neither weight decay nor the rescaling, as in the TLDR / Barlow Twins setup."""

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.001,
    ):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not g["exclude"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    one = torch.ones_like(w_norm)
                    trust = torch.where(
                        (w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm, one
                    )
                    d = d.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(d)
                p.add_(mu, alpha=-g["lr"])
        return loss


def _param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict]:
    decay, plain = [], []
    for m in modules:
        for p in m.parameters():
            (decay if p.ndim > 1 else plain).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "exclude": False},
        {"params": plain, "weight_decay": 0.0, "exclude": True},
    ]


def _lr_at(step: int, total: int, warmup: int, peak: float, final_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine down to `final_ratio * peak`."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1))))


# --------------------------------------------------------------------------- networks


def _hidden(spec: int | Sequence[int]) -> list[int]:
    return [int(spec)] if isinstance(spec, int | np.integer) else [int(h) for h in spec]


def build_encoder(kind: str, dim_in: int, dim_out: int, hidden: int | Sequence[int]) -> nn.Module:
    """linear: D -> d. factorized: linear layers through `hidden` widths with BatchNorm between
    them (still linear at inference). mlp: the same with ReLU after each BatchNorm."""
    if kind not in ENCODERS:
        raise CogError(f"encoder {kind!r} unknown; choose one of {', '.join(ENCODERS)}")
    if kind == "linear":
        return nn.Linear(dim_in, dim_out)
    layers: list[nn.Module] = []
    prev = dim_in
    for h in _hidden(hidden):
        layers += [nn.Linear(prev, h), nn.BatchNorm1d(h)]
        if kind == "mlp":
            layers.append(nn.ReLU(inplace=True))
        prev = h
    layers.append(nn.Linear(prev, dim_out))
    return nn.Sequential(*layers)


def parse_projector(spec: str | Sequence[int]) -> list[int]:
    """Widths of the projector's layers: a tuple such as (2048, 2048, 2048), or the authors'
    notation "mlp-L-W" (L hidden layers of width W, output W)."""
    if isinstance(spec, str):
        m = re.fullmatch(r"mlp-(\d+)-(\d+)", spec)
        if not m:
            raise CogError(f"projector {spec!r}: write 'mlp-<layers>-<width>' or a tuple of widths")
        layers, width = int(m.group(1)), int(m.group(2))
        return [width] * (layers + 1)
    dims = [int(d) for d in spec]
    if not dims or min(dims) < 1:
        raise CogError(f"projector {spec!r}: give at least one positive width")
    return dims


def build_projector(dim_in: int, dims: Sequence[int]) -> nn.Module:
    """Linear -> BatchNorm -> ReLU for every width but the last, then a plain Linear."""
    layers: list[nn.Module] = []
    prev = dim_in
    for h in dims[:-1]:
        layers += [nn.Linear(prev, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
        prev = h
    layers.append(nn.Linear(prev, dims[-1]))
    return nn.Sequential(*layers)


class Projection(nn.Module):
    """A fitted projection, [B, D] -> [B, d]: casts its input to float32 (caches are often
    float16) and optionally L2-normalizes the output."""

    def __init__(
        self, net: nn.Module, kind: str, input_dim: int, output_dim: int, l2_norm: bool = False
    ):
        super().__init__()
        self.net, self.kind = net, kind
        self.input_dim, self.output_dim, self.l2_norm = input_dim, output_dim, l2_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise CogError(
                f"{self.kind} projection expects [B, {self.input_dim}] features, got "
                f"{tuple(x.shape)}; project the features of the backbone it was fitted on"
            )
        z = self.net(x.float())
        return F.normalize(z, dim=1) if self.l2_norm else z


class _Whitening(nn.Module):
    """(x - mean) @ weight: the centred PCA-whitening projection."""

    def __init__(self, mean: torch.Tensor, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.weight

"""Projection files by kind: make, load and apply whichever estimator a file holds.

Composite zoo cards name a projection file; `load_projection(path)` gives its `nn.Module`
without the training data or the estimator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cog import CogError
from cog.compress.base import _Projector, _read_blob
from cog.compress.pcaw import PCAW
from cog.compress.tldr import TLDR

_CLASSES: dict[str, type[_Projector]] = {"tldr": TLDR, "pcaw": PCAW}
METHODS = tuple(_CLASSES)


def make_estimator(method: str, n_components: int, **params: Any) -> TLDR | PCAW:
    """TLDR or PCAW by name (the `kind` stored in composite zoo cards)."""
    if method not in _CLASSES:
        raise CogError(f"method {method!r} unknown; choose one of {', '.join(METHODS)}")
    return _CLASSES[method](n_components=n_components, **params)


def load_estimator(path: str | Path) -> TLDR | PCAW:
    """The fitted TLDR or PCAW saved at `path`, whichever it holds."""
    return _CLASSES[_read_blob(path)["kind"]].load(path)


def load_projection(path: str | Path, l2_norm: bool = False) -> nn.Module:
    """The projection saved at `path` as an eval-mode CPU module, [B, D] float -> [B, d].

    For TLDR the fitted encoder, for PCA-w the centred whitening projection; the output is
    not L2-normalized unless `l2_norm=True` (an extension: the default is the contract).
    """
    return load_estimator(path).projection(l2_norm)

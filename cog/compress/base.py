"""What TLDR and PCA-w share: fit / transform / save / load and the projection file.

One file per fitted estimator (parameters, weights, fit summary), read with
`torch.load(weights_only=True)`; `KINDS` names the estimator classes a file may hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from cog import CogError
from cog.compress.matrix import project
from cog.compress.nets import Projection
from cog.estimator import check_fitted
from cog.io import atomic_write
from cog.protocols.sampling import source_name
from cog.protocols.store import feature_rows

FORMAT = "cog-projection"
FORMAT_VERSION = 1
KINDS = {"tldr": "TLDR", "pcaw": "PCAW"}  # kind -> class name


# --------------------------------------------------------------------------- shared estimator API


class _Projector(BaseEstimator):
    """fit / transform / save / load shared by TLDR and PCAW."""

    kind = ""

    def _check_fitted(self) -> None:
        check_fitted(self, "input_dim_", "call fit(X) or load()")

    @property
    def n_features_in_(self) -> int:
        """scikit-learn's name for the input dimension D (NotFittedError before fit)."""
        self._check_fitted()
        return int(self.input_dim_)

    def _check_dims(self, n: int, dim: int, name: str) -> None:
        d = int(self.n_components)
        if d < 1:
            raise CogError(f"n_components={d}: must be a positive number of dimensions")
        if d > dim:
            raise CogError(
                f"{name}: n_components={d} is larger than the feature dimension D={dim}; "
                f"choose n_components <= {dim}"
            )

    def _module(self) -> nn.Module:
        raise NotImplementedError

    def projection(self, l2_norm: bool = False) -> Projection:
        """The fitted projection as a CPU `nn.Module` in eval mode."""
        self._check_fitted()
        return Projection(
            self._module(), self.kind, self.input_dim_, int(self.n_components), l2_norm
        ).eval()

    def transform(self, X: Any, l2_norm: bool = False, batch_size: int = 65536) -> np.ndarray:
        """Project X ([N, D] array, tensor, HDF5 dataset or FeatureSet) to float32 [N, d]."""
        self._check_fitted()
        name = source_name(X)
        src, _, dim = feature_rows(X, name)
        if dim != self.input_dim_:
            raise CogError(
                f"{name}: features have D={dim} but this {self.kind} projection was fitted on "
                f"D={self.input_dim_}; use the features of the same backbone"
            )
        return project(self.projection(l2_norm), src, batch_size, self.device, name=name)

    def fit_transform(self, X: Any, y: Any = None, l2_norm: bool = False) -> np.ndarray:
        return self.fit(X, y).transform(X, l2_norm=l2_norm)

    def _state(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fitted projection (parameters, weights, fit summary) to one file."""
        self._check_fitted()
        path = Path(path)
        blob = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "params": _plain(self.get_params()),
            "input_dim": int(self.input_dim_),
            "n_components": int(self.n_components),
            "fit_info": _plain(getattr(self, "fit_info_", {})),
            **self._state(),
        }
        with atomic_write(path, "wb") as f:
            torch.save(blob, f)
        return path

    @classmethod
    def load(cls, path: str | Path):
        """A fitted estimator from `save`'s file."""
        blob = _read_blob(path)
        if blob["kind"] != cls.kind:
            raise CogError(
                f"{path}: holds a {blob['kind']} projection, not {cls.kind}; "
                f"load it with cog.compress.{KINDS[blob['kind']]}.load"
            )
        est = cls(**blob["params"])
        est.input_dim_ = blob["input_dim"]
        est.fit_info_ = blob.get("fit_info", {})
        est._restore(blob)
        return est

    def _restore(self, blob: dict) -> None:
        raise NotImplementedError


def _plain(obj: Any) -> Any:
    """Params/info reduced to types torch.load(weights_only=True) accepts."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


def _read_blob(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CogError(f"{path}: no such projection file; fit one with `cog-tldr fit`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CogError(f"{path}: not a readable projection file ({e}); fit it again") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CogError(f"{path}: not a cog projection file; fit one with `cog-tldr fit`")
    if blob.get("version", 0) > FORMAT_VERSION or blob.get("kind") not in KINDS:
        raise CogError(
            f"{path}: projection format {blob.get('version')} / kind {blob.get('kind')!r} is "
            "newer than this cog; upgrade cog"
        )
    return blob

"""TLDR (Kalantidis et al., TMLR 2022) and PCA whitening: learned and linear compression of
cached backbone features.

Why here: a 128-d or 64-d code is cheap to store and search, and cog already has every
backbone's features cached, so compressing them needs no re-extraction. `TLDR` learns an
encoder whose outputs keep each point's k nearest neighbours close (Barlow Twins loss on
neighbour pairs); `PCAW` is the linear baseline it is compared against. Both are scikit-learn
style estimators, save to one file, and `load_projection(path)` gives the fitted projection as
an `nn.Module` ([B, D] -> [B, d]) that needs neither the training data nor this estimator.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import nn
from tqdm.auto import tqdm

from cog import CogError
from cog.estimator import check_fitted, check_number
from cog.io import atomic_write

FORMAT = "cog-projection"
FORMAT_VERSION = 1
ENCODERS = ("linear", "factorized", "mlp")
OPTIMIZERS = ("lars", "sgd", "adamw")
KNN_METHODS = ("auto", "exact", "faiss")
KNN_METRICS = ("euclidean", "cosine")
_CHUNK_ROWS = 65536


# --------------------------------------------------------------------------- inputs


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" picks CUDA when a GPU is visible, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CogError(f"device={device!r}: no CUDA GPU is visible; pass device='cpu' or 'auto'")
    return dev


def _describe(X: Any) -> str:
    """A name for error messages: the HDF5 file and dataset when there is one."""
    for obj in (X, getattr(X, "features", None)):
        f = getattr(obj, "file", None)
        if f is not None and hasattr(f, "filename"):
            return f"{f.filename}:{obj.name}"
    path = getattr(X, "path", None)
    return f"{path}:features" if path is not None else "the input features"


def _source(X: Any) -> Any:
    """The row-indexable [N, D] array behind X (numpy, tensor, h5py dataset, FeatureSet)."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    if hasattr(X, "features") and hasattr(X, "load"):  # cog.features.FeatureSet
        return X.features
    if hasattr(X, "shape") and hasattr(X, "dtype") and not isinstance(X, np.ndarray):
        return X  # h5py.Dataset or another lazy array
    return np.asarray(X)


def _iter_rows(src: Any, rows: int = _CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 chunk) over the rows of an array or a lazy HDF5 dataset."""
    n = src.shape[0]
    for start in range(0, n, rows):
        yield start, np.asarray(src[start : start + rows], dtype=np.float32)


def _check_shape(src: Any, name: str) -> tuple[int, int]:
    if len(src.shape) != 2:
        raise CogError(
            f"{name}: expected a [N, D] matrix of features, got shape {tuple(src.shape)}; "
            "pass one row per image"
        )
    n, dim = int(src.shape[0]), int(src.shape[1])
    if n == 0 or dim == 0:
        raise CogError(f"{name}: the feature matrix is empty (shape {(n, dim)})")
    if not np.issubdtype(np.dtype(src.dtype), np.number):
        raise CogError(f"{name}: features must be numbers, got dtype {src.dtype}")
    return n, dim


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
    name = name or _describe(X)
    src = _source(X)
    n, dim = _check_shape(src, name)
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
        name = _describe(X)
        src = _source(X)
        _, dim = _check_shape(src, name)
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
                f"load it with cog.tldr.{_CLASSES[blob['kind']].__name__}.load"
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
    if blob.get("version", 0) > FORMAT_VERSION or blob.get("kind") not in _CLASSES:
        raise CogError(
            f"{path}: projection format {blob.get('version')} / kind {blob.get('kind')!r} is "
            "newer than this cog; upgrade cog"
        )
    return blob


# --------------------------------------------------------------------------- TLDR


class TLDR(_Projector):
    """Twin Learning for Dimensionality Reduction.

    Pairs each point with one of its `n_neighbors` nearest neighbours in the input space and
    trains encoder + projector with the Barlow Twins loss; only the encoder is kept. Defaults
    follow the authors' code: linear encoder, projector "mlp-2-2048", LARS (weight decay 1e-6,
    biases and norm weights excluded), lr 0.2 x batch/256 with warm-up then cosine to 0.1%,
    batch 1024, 100 epochs, k = 5. `warmup_epochs=None` means 10% of the epochs (10 of 100).
    Each epoch walks a fresh permutation in full batches (the incomplete last one is left for
    the next permutations to cover). Same random_state and device -> the same projection
    (bitwise on CPU).
    """

    kind = "tldr"

    def __init__(
        self,
        n_components: int = 32,
        n_neighbors: int = 5,
        encoder: str = "linear",
        encoder_hidden: int | Sequence[int] = 512,
        projector: str | Sequence[int] = (2048, 2048, 2048),
        barlow_lambda: float = 0.0039,
        loss_scale: float = 1 / 32,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        epochs: int = 100,
        warmup_epochs: int | None = None,
        final_lr_ratio: float = 0.001,
        batch_size: int = 1024,
        knn: str = "auto",
        knn_metric: str = "euclidean",
        device: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.encoder = encoder
        self.encoder_hidden = encoder_hidden
        self.projector = projector
        self.barlow_lambda = barlow_lambda
        self.loss_scale = loss_scale
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.final_lr_ratio = final_lr_ratio
        self.batch_size = batch_size
        self.knn = knn
        self.knn_metric = knn_metric
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise CogError(
                f"optimizer {self.optimizer!r} unknown; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.encoder not in ENCODERS:
            raise CogError(f"encoder {self.encoder!r} unknown; choose one of {', '.join(ENCODERS)}")
        if int(self.epochs) < 1 or int(self.batch_size) < 2:
            raise CogError(
                f"epochs={self.epochs}, batch_size={self.batch_size}: need epochs >= 1 and "
                "batch_size >= 2"
            )
        check_number(self.lr, "lr", low=0.0, low_open=True)
        check_number(self.weight_decay, "weight_decay", low=0.0)
        parse_projector(self.projector)

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        knn_cache: str | Path | None = None,
    ) -> TLDR:
        """Learn the encoder on X ([N, D]); y is ignored (unsupervised).

        With `checkpoint`, the kNN graph and the training state are saved there after every
        epoch, and a later fit with the same data and parameters resumes from it. With
        `knn_cache` (a folder), the kNN graph is kept there, keyed by the data and the kNN
        settings, so fits at other dimensions on the same features skip the search.
        """
        self._validate()
        name = _describe(X)
        Xf = load_matrix(X, name, progress=self.verbose)
        n, dim = Xf.shape
        self._check_dims(n, dim, name)
        k = int(self.n_neighbors)
        if k < 1 or n < k + 1:
            raise CogError(
                f"{name}: n_neighbors={k} needs at least {k + 1} points, got {n}; "
                "fit on more points or lower n_neighbors"
            )
        device = resolve_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        state = self._resume(checkpoint, Xf)
        # seeded init without touching the caller's CPU / CUDA random streams
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            enc = build_encoder(self.encoder, dim, int(self.n_components), self.encoder_hidden)
            proj = build_projector(int(self.n_components), parse_projector(self.projector))
        enc, proj = enc.to(device), proj.to(device)
        data = torch.from_numpy(Xf).to(device)
        t_knn = time.perf_counter()
        graph_file = self._knn_file(knn_cache, Xf)
        cached = None if state is not None else _cached_graph(graph_file, n, k)
        if state is not None:
            nbrs = torch.as_tensor(state["neighbors"]).long()
        elif cached is not None:
            nbrs = torch.from_numpy(cached)
        else:
            graph = knn_graph(
                data,
                k,
                metric=self.knn_metric,
                method=self.knn,
                device=device,
                progress=self.verbose,
            )
            if graph_file is not None:
                graph_file.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(graph_file, "wb") as f:
                    np.save(f, graph.astype(np.int32))
            nbrs = torch.from_numpy(graph)
        nbrs = nbrs.to(device)
        t_knn = time.perf_counter() - t_knn
        t_train = time.perf_counter()
        batch = min(int(self.batch_size), n)
        steps = n // batch
        epochs = int(self.epochs)
        warm = round(0.1 * epochs) if self.warmup_epochs is None else int(self.warmup_epochs)
        peak = float(self.lr) * batch / 256
        opt = self._make_optimizer([enc, proj], peak)
        gen = torch.Generator(device=device).manual_seed(seed)
        history: list[float] = []
        first = 0
        if state is not None:
            enc.load_state_dict(state["encoder"])
            proj.load_state_dict(state["projector"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            history, first = list(state["history"]), int(state["epoch"])
        bar = tqdm(
            range(first, epochs),
            desc="TLDR",
            unit="epoch",
            disable=not self.verbose,
            initial=first,
            total=epochs,
        )
        enc.train()
        proj.train()
        for epoch in bar:
            perm = torch.randperm(n, generator=gen, device=device)
            total = torch.zeros((), device=device)  # summed on device: no sync per step
            for s in range(steps):
                for g in opt.param_groups:
                    g["lr"] = _lr_at(
                        epoch * steps + s,
                        epochs * steps,
                        warm * steps,
                        peak,
                        float(self.final_lr_ratio),
                    )
                idx = perm[s * batch : (s + 1) * batch]
                pick = torch.randint(0, k, (idx.shape[0],), generator=gen, device=device)
                xa = data[idx]
                xb = data[nbrs[idx, pick]]
                za, zb = proj(enc(xa)), proj(enc(xb))
                loss = barlow_twins_loss(za, zb, float(self.barlow_lambda), float(self.loss_scale))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
            history.append(float(total) / steps)
            if not math.isfinite(history[-1]):
                raise CogError(
                    f"{name}: the TLDR loss diverged at epoch {epoch + 1} (lr={self.lr}); "
                    "lower lr or standardize the features"
                )
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            if checkpoint is not None:
                self._checkpoint(checkpoint, Xf, enc, proj, opt, gen, nbrs, history, epoch + 1)
        self.encoder_ = enc.cpu().eval()
        self.input_dim_ = dim
        self.neighbors_ = nbrs.cpu().numpy()
        self.loss_history_ = history
        self.n_iter_ = len(history)  # epochs trained, resumed ones included
        self.fit_info_ = {
            "n_samples": n,
            "input_dim": dim,
            "steps_per_epoch": steps,
            "batch_size": batch,
            "peak_lr": peak,
            "warmup_epochs": warm,
            "final_loss": history[-1] if history else None,
            "device": str(device),
            "fingerprint": _fingerprint(Xf),
            "knn_s": round(t_knn, 3),
            "train_s": round(time.perf_counter() - t_train, 3),
        }
        return self

    def _make_optimizer(self, modules: list[nn.Module], lr: float) -> torch.optim.Optimizer:
        groups = _param_groups(modules, float(self.weight_decay))
        if self.optimizer == "lars":
            return LARS(groups, lr=lr, momentum=float(self.momentum))
        for g in groups:
            g.pop("exclude")
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=float(self.momentum))
        return torch.optim.AdamW(groups, lr=lr)

    def _knn_file(self, folder: str | Path | None, Xf: np.ndarray) -> Path | None:
        if folder is None:
            return None
        key = repr((int(self.n_neighbors), self.knn_metric, self.knn, _fingerprint(Xf)))
        return Path(folder) / f"knn_{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"

    def _ckpt_key(self, Xf: np.ndarray) -> str:
        params = {k: v for k, v in self.get_params().items() if k != "verbose"}
        return hashlib.sha256(
            (repr(sorted(_plain(params).items())) + _fingerprint(Xf)).encode()
        ).hexdigest()

    def _resume(self, checkpoint: str | Path | None, Xf: np.ndarray) -> dict | None:
        if checkpoint is None or not Path(checkpoint).is_file():
            return None
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception:
            warnings.warn(f"{checkpoint}: unreadable checkpoint, starting over", stacklevel=3)
            return None
        if state.get("key") != self._ckpt_key(Xf):
            warnings.warn(
                f"{checkpoint}: checkpoint is for other data or parameters, starting over",
                stacklevel=3,
            )
            return None
        return state

    def _checkpoint(self, path, Xf, enc, proj, opt, gen, nbrs, history, epoch) -> None:
        blob = {
            "key": self._ckpt_key(Xf),
            "epoch": epoch,
            "history": history,
            "encoder": enc.state_dict(),
            "projector": proj.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "neighbors": nbrs.to(torch.int32).cpu(),
        }
        with atomic_write(path, "wb") as f:
            torch.save(blob, f)

    def _module(self) -> nn.Module:
        import copy

        return copy.deepcopy(self.encoder_).eval()

    def _state(self) -> dict:
        return {
            "encoder": self.encoder_.state_dict(),
            "loss_history": list(getattr(self, "loss_history_", [])),
        }

    def _restore(self, blob: dict) -> None:
        enc = build_encoder(
            self.encoder, self.input_dim_, int(self.n_components), self.encoder_hidden
        )
        enc.load_state_dict(blob["encoder"])
        self.encoder_ = enc.eval()
        self.loss_history_ = blob.get("loss_history", [])
        self.n_iter_ = len(self.loss_history_)


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
        name = _describe(X)
        src = _source(X)
        n, dim = _check_shape(src, name)
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
    name = name or _describe(X)
    src = _source(X)
    n, _ = _check_shape(src, name)
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


# --------------------------------------------------------------------------- zoo integration

DEFAULT_STUDY_DIMS = (16, 32, 64, 128, 256)


def projection_dir() -> Path:
    """Where `cog-tldr fit` keeps fitted projections: $COG_HOME/projections."""
    from cog.io import cog_home

    return cog_home() / "projections"


def composite_name(base: str, method: str, dim: int) -> str:
    """`<base>+tldr128` / `<base>+pcaw128`: the zoo name of a compressed backbone."""
    return f"{base}+{method}{int(dim)}"


def parse_fit_on(text: str) -> tuple[str, str]:
    """ "in1k/train" -> ("in1k", "train"). Test splits are refused: a projection fitted on
    the data it is evaluated on would leak the test set into the benchmark."""
    dataset, sep, split = text.partition("/")
    if not sep or not dataset or split not in ("train", "test"):
        raise CogError(f"--fit-on {text!r}: write DATASET/SPLIT, e.g. in1k/train or cog_l1/train")
    if split == "test":
        raise CogError(
            f"--fit-on {text!r}: fitting on a test split leaks it into the evaluation; "
            "fit on a train split (in1k/train by default)"
        )
    return dataset, split


def _reusable(path: Path, est: _Projector, weights: str, images: str) -> bool:
    """An existing projection file made with the same parameters from the same cache."""
    try:
        old = load_estimator(path)
    except CogError:
        return False
    info = getattr(old, "fit_info_", {})
    return (
        type(old) is type(est)
        and _plain(old.get_params()) == _plain({**est.get_params(), "verbose": old.verbose})
        and info.get("base_weights_sha256") == weights
        and info.get("images_sha256") == images
    )


def compress_model(
    model: str,
    dim: int,
    *,
    method: str = "tldr",
    fit_on: str = "in1k/train",
    params: dict[str, Any] | None = None,
    name: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    register: bool = True,
    echo: Any = print,
    **feature_kw: Any,
) -> dict[str, Any]:
    """Fit a TLDR / PCA-w projection on `model`'s cached features of `fit_on`, save it under
    $COG_HOME/projections/ and register the composite zoo card `<model>+<method><dim>`.

    The cache is made (or resumed) by cog.extract.ensure_features with `feature_kw`
    (cache_dir, in1k_root, device, random_init, ...). A projection already fitted with the
    same parameters on the same cache is reused, and an interrupted TLDR fit resumes from
    its checkpoint. Returns {name, path, sha256, card, reused, fit_info}.
    """
    from cog import zoo
    from cog.extract import ensure_features
    from cog.features import open_features
    from cog.io import sha256_file

    card = zoo.get_card(model)
    if card.base is not None:
        raise CogError(
            f"{card.name!r} is already a compressed model (base {card.base!r}); "
            f"fit the projection on {card.base!r} instead"
        )
    dataset, split = parse_fit_on(fit_on)
    params = dict(params or {})
    device = feature_kw.get("device", "auto")
    est = make_estimator(method, int(dim), device=device, **params)
    name = name or composite_name(card.name, method, dim)
    path = Path(out) if out is not None else projection_dir() / f"{name}.pt"
    cache = ensure_features(card.name, dataset, split, **feature_kw)
    with open_features(cache) as fs:
        weights = str(fs.attrs.get("weights_sha256"))
        images = str(fs.attrs.get("images_sha256"))
        if fs.dim < int(dim):
            raise CogError(
                f"{cache}: {card.name} features have D={fs.dim}, fewer than --dim {dim}; "
                f"choose a dimension <= {fs.dim}"
            )
        reused = path.is_file() and not overwrite and _reusable(path, est, weights, images)
        if not reused:
            if path.is_file() and not overwrite:
                raise CogError(
                    f"{path}: a projection fitted with other settings or features exists; "
                    "pass --overwrite to replace it, or --name to keep both"
                )
            echo(f"{name}: fitting {method} ({fs.dim} -> {dim}) on {len(fs)} {fit_on} features")
            est.set_params(verbose=bool(feature_kw.get("progress", True)))
            ckpt = path.with_name(f".{path.name}.ckpt")
            if method == "tldr":  # the kNN graph is shared by fits at other d (study)
                est.fit(fs.features, checkpoint=ckpt, knn_cache=path.parent / ".knn")
            else:
                est.fit(fs.features)
            est.fit_info_.update(
                base=card.name,
                fit_on=fit_on,
                base_weights_sha256=weights,
                images_sha256=images,
                cache=str(cache),
            )
            est.set_params(verbose=False)
            est.save(path)
            ckpt.unlink(missing_ok=True)
        else:
            echo(f"{name}: reusing {path} (same parameters and features)")
    digest = sha256_file(path)
    info = load_estimator(path).fit_info_
    random = weights == "random-init"
    entry = {
        "name": name,
        "base": card.name,
        "group": card.group,
        "title": f"{card.title or card.name} compressed to {dim}-d by {method.upper()}"
        + (" (fitted on RANDOM-INIT features)" if random else ""),
        "projection": {
            "kind": method,
            "path": str(path.resolve()),
            "sha256": digest,
            "dim": int(dim),
        },
        "training": {
            "fit_on": fit_on,
            "n_samples": info.get("n_samples"),
            "base_weights_sha256": weights,
            "params": _plain(
                {k: v for k, v in est.get_params().items() if k not in ("verbose", "device")}
            ),
        },
    }
    card_path = zoo.register_card(entry, overwrite=True) if register else None
    return {
        "name": name,
        "path": path,
        "sha256": digest,
        "card": card_path,
        "reused": reused,
        "fit_info": info,
    }


# --------------------------------------------------------------------------- study

STUDY_METRICS = ("logreg", "knn")


def _score(metric: str, Xtr, ytr, Xte, yte, seed: int, device: str) -> float:
    """Top-1 in [0, 1]: cog's fast linear probe, or the weighted kNN classifier."""
    if metric == "knn":
        from cog.metrics import knn_accuracy

        return float(knn_accuracy(Xtr, ytr, Xte, yte, device=device))
    from cog.probe import LogRegProbe

    probe = LogRegProbe(protocol="fast", seed=seed, device=device)
    return float(probe.fit(Xtr, ytr).score(Xte, yte))


def study(
    model: str,
    dims: Sequence[int] = DEFAULT_STUDY_DIMS,
    *,
    methods: Sequence[str] = METHODS,
    datasets: Sequence[str] | None = None,
    fit_on: str = "in1k/train",
    metric: str = "logreg",
    seed: int = 22,
    params: dict[str, dict[str, Any]] | None = None,
    out: str | Path = "results/figures",
    overwrite: bool = False,
    echo: Any = print,
    **feature_kw: Any,
) -> Any:
    """Fit every method at every d on `fit_on`, score each dataset's projected features
    (top-1 of the fast linear probe, or kNN), and compare with the uncompressed features.

    Writes tldr_<model>.{json,csv,md,png} in `out`; finished cells are kept in the JSON, so an
    interrupted study resumes. d larger than the feature dimension is reported as skipped.
    Returns the table as a pandas DataFrame.
    """
    import json

    from cog import zoo
    from cog.extract import ensure_features
    from cog.features import open_features

    if metric not in STUDY_METRICS:
        raise CogError(f"metric {metric!r} unknown; choose one of {', '.join(STUDY_METRICS)}")
    for m in methods:
        make_estimator(m, 1)  # validates the name
    if not dims or min(int(d) for d in dims) < 1:
        raise CogError(f"--dims {list(dims)}: give positive dimensions, e.g. 16,32,64,128,256")
    card = zoo.get_card(model)
    if datasets is None:
        from cog.evaluate import level_count

        n_levels = level_count(feature_kw.get("levels"))
        datasets = ["in1k", *(f"cog_l{k}" for k in range(1, n_levels + 1))]
    out = Path(out)
    record_path = out / f"tldr_{card.name}.json"
    config = {
        "model": card.name,
        "fit_on": fit_on,
        "metric": metric,
        "seed": seed,
        "params": _plain(params or {}),
    }
    config = json.loads(json.dumps(config))  # as it reads back from the record
    done: dict[str, dict] = {}
    if record_path.is_file() and not overwrite:
        old = json.loads(record_path.read_text())
        if old.get("config") == config:
            done = {r["key"]: r for r in old.get("rows", [])}
    rows: list[dict] = []

    def keep(row: dict) -> None:
        rows.append(row)
        done[row["key"]] = row
        with atomic_write(record_path) as f:
            json.dump({"config": config, "rows": list(done.values())}, f, indent=1)

    caches = {
        (ds, sp): ensure_features(card.name, ds, sp, **feature_kw)
        for ds in datasets
        for sp in ("train", "test")
    }
    with open_features(caches[(datasets[0], "train")]) as fs:
        full_dim = fs.dim
    fits: dict[tuple[str, int], dict] = {}
    for m in methods:
        for d in dims:
            if int(d) > full_dim:
                echo(f"{m} d={d}: skipped, larger than the feature dimension {full_dim}")
                continue
            fits[(m, int(d))] = compress_model(
                card.name,
                int(d),
                method=m,
                fit_on=fit_on,
                params=(params or {}).get(m),
                overwrite=overwrite,
                echo=echo,
                **feature_kw,
            )
    for ds in datasets:
        with open_features(caches[(ds, "train")]) as tr, open_features(caches[(ds, "test")]) as te:
            ytr, yte = tr.labels, te.labels
            ident = f"{tr.attrs.get('weights_sha256')}|{tr.attrs.get('images_sha256')}"
            base_key = f"{ds}|full|{full_dim}|{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
            if base_key in done:
                rows.append(done[base_key])
            else:
                echo(f"{ds}: scoring the uncompressed {full_dim}-d features")
                top1 = _score(
                    metric,
                    tr.features,
                    ytr,
                    te.features,
                    yte,
                    seed,
                    feature_kw.get("device", "auto"),
                )
                keep(
                    {
                        "key": base_key,
                        "dataset": ds,
                        "method": "full",
                        "dim": full_dim,
                        "top1": 100 * top1,
                    }
                )
            for (m, d), fit in fits.items():
                key = f"{ds}|{m}|{d}|{fit['sha256'][:16]}|{base_key[-16:]}"
                if key in done:
                    rows.append(done[key])
                    continue
                echo(f"{ds}: scoring {fit['name']}")
                module = load_projection(fit["path"])
                dev = feature_kw.get("device", "auto")
                ztr, zte = project(module, tr, device=dev), project(module, te, device=dev)
                top1 = _score(metric, ztr, ytr, zte, yte, seed, dev)
                keep({"key": key, "dataset": ds, "method": m, "dim": d, "top1": 100 * top1})
    table = _study_table(rows, card.name)
    _write_study(table, out, card.name, metric)
    echo(f"wrote {out / f'tldr_{card.name}'}.{{json,csv,md,png}}")
    return table


def _study_table(rows: list[dict], model: str) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows).drop(columns="key")
    full = df[df.method == "full"].set_index("dataset")["top1"]
    df["full_top1"] = df.dataset.map(full)
    # undefined (NaN) where the uncompressed features score 0
    df["ratio"] = (df.top1 / df.full_top1).where(df.full_top1 > 0)
    df.insert(0, "model", model)
    from cog.leaderboard import dataset_order

    order = {"full": 0, **{m: i + 1 for i, m in enumerate(METHODS)}}
    return df.sort_values(
        ["dataset", "method", "dim"],
        key=lambda s: (
            s.map(dataset_order)
            if s.name == "dataset"
            else s.map(order)
            if s.name == "method"
            else s
        ),
    ).reset_index(drop=True)


def _write_study(df: Any, out: Path, model: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out / f"tldr_{model}"
    with atomic_write(stem.with_suffix(".csv")) as f:
        df.to_csv(f, index=False, float_format="%.4f")
    wide = df[df.method != "full"].pivot_table(
        index=["method", "dim"], columns="dataset", values="ratio", sort=False
    )
    top = df.pivot_table(index=["method", "dim"], columns="dataset", values="top1", sort=False)
    what = "linear-probe" if metric == "logreg" else "kNN"
    lines = [
        f"# {model}: TLDR vs PCA-w, {what} top-1 (%) per dataset",
        "",
        _markdown(top, "{:.2f}"),
        "",
        "Ratio to the uncompressed features:",
        "",
        _markdown(wide, "{:.3f}"),
        "",
    ]
    with atomic_write(stem.with_suffix(".md")) as f:
        f.write("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"tldr": "-o", "pcaw": "--s"}
    for i, ds in enumerate(dict.fromkeys(df.dataset)):
        c = colors[i % len(colors)]
        sub = df[df.dataset == ds]
        for m in styles:
            s = sub[sub.method == m].sort_values("dim")
            if len(s):
                label = f"{ds} {'TLDR' if m == 'tldr' else 'PCA-w'}"
                axes[0].plot(s.dim, s.top1, styles[m], color=c, label=label, ms=4)
                axes[1].plot(s.dim, s.ratio, styles[m], color=c, ms=4)
        full = sub[sub.method == "full"]
        if len(full):
            axes[0].axhline(float(full.top1.iloc[0]), color=c, lw=0.8, ls=":")
    axes[1].axhline(1.0, color="k", lw=0.8, ls=":")
    for ax, ylabel in zip(axes, (f"{what} top-1 (%)", "ratio to uncompressed"), strict=True):
        ax.set_xscale("log", base=2)
        ticks = sorted({int(d) for d in df[df.method != "full"].dim})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("dimensions d")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{model}: TLDR (solid) vs PCA-w (dashed); dotted = uncompressed")
    fig.tight_layout()
    with atomic_write(stem.with_suffix(".png"), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def _markdown(table: Any, fmt: str) -> str:
    cols = [str(c) for c in table.columns]
    head = "| method | d | " + " | ".join(cols) + " |"
    sep = "|---|---:|" + "---:|" * len(cols)
    body = [
        f"| {m} | {d} | " + " | ".join("-" if np.isnan(v) else fmt.format(v) for v in row) + " |"
        for (m, d), row in zip(table.index, table.to_numpy(), strict=True)
    ]
    return "\n".join([head, sep, *body])

"""Linear probes on frozen features: the authors' SGD protocol and cog's fast convex solver.

Both protocols fit one linear layer (weights + bias) with cross-entropy on L2-normalised
features, tune on a 20%-per-class validation split drawn per seed, then refit on the whole
training set (protocol.md section 4).

* ``reference`` replays the authors' recipe: SGD (momentum 0.9, weight decay on every
  parameter, batch 1024, 100 epochs, the lagging cosine schedule), Optuna TPE over
  lr in [0.1, 100] and wd in [1e-12, 1e-4], 30 trials, last-epoch score.
* ``fast`` (default) solves the same convex multinomial logistic loss with full-batch
  L-BFGS along a warm-started L2 regularisation path on standardised features, scored on
  the same validation split; the path stops after `patience` points without a better
  validation top-1, then the half-way points around the best are tried. On CUDA it uses
  TF32 matmuls. benchmarks/bench_probe.py measures both protocols side by side.

Features are streamed once, in chunks, from numpy arrays, memory maps or h5py datasets
onto the device (float32 when they fit the memory budget, float16 otherwise), so
ImageNet-1K train (1.28M x 2048) fits a 24 GB machine or one GPU.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from tqdm.auto import tqdm

from cog import CogError
from cog.estimator import check_fitted

SEEDS = (22, 37, 45, 77, 93)
FEW_SHOT_N = (1, 2, 4, 8, 16, 32, 64, 128)
PROTOCOLS = ("fast", "reference")
VAL_FRACTION = 0.2
# lr0 and weight-decay ranges searched by the authors' Optuna study (protocol.md section 4).
REFERENCE_LR_RANGE = (0.1, 100.0)
REFERENCE_WD_RANGE = (1e-12, 1e-4)
# The fast protocol's L2 path (on standardised features): strongest first, a decade apart.
DEFAULT_L2_GRID = tuple(float(v) for v in np.logspace(1, -6, 8))
# One chunk of float32 features or logits is kept near this many bytes.
CHUNK_BYTES = 1 << 28


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise CogError(f"device {device!r} is not a torch device; use auto, cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CogError(f"device {device!r} asked for, but torch sees no CUDA device; use cpu")
    return dev


def reference_lr(epoch: int, lr0: float, epochs: int = 100) -> float:
    """Learning rate the authors' loop uses during `epoch` (0-based).

    Their cosine scheduler steps after each epoch, so epoch e > 0 runs at the value for
    e - 1: lr0 * 0.5 * (1 + cos(pi * (e - 1) / epochs)); epochs 0 and 1 both run at lr0.
    """
    e = max(epoch - 1, 0)
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * e / epochs))


def source_name(X: Any) -> str:
    """A file name for error messages when the features come from a file."""
    for attr in ("filename",):
        name = getattr(X, attr, None)
        if isinstance(name, str) and name:
            return name
    f = getattr(X, "file", None)
    name = getattr(f, "filename", None)
    if isinstance(name, str) and name:
        ds = getattr(X, "name", "")
        return f"{name}:{ds}" if ds else name
    return "the feature array"


def check_labels(y: Any, n_rows: int | None = None, what: str = "y") -> np.ndarray:
    """Labels as a 1-D int64 array; CogError if they are not integers or the length differs."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y[()] if hasattr(y, "id") else y)  # h5py datasets read with [()]
    if arr.ndim != 1:
        raise CogError(f"{what}: labels must be 1-D, got shape {arr.shape}; pass one label a row")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise CogError(
            f"{what}: labels must be integers (class indices), got dtype {arr.dtype}; "
            "map class names to indices first (e.g. np.unique(names, return_inverse=True))"
        )
    if n_rows is not None and len(arr) != n_rows:
        raise CogError(
            f"{what}: {len(arr)} labels for {n_rows} feature rows; pass one label per row"
        )
    return arr.astype(np.int64, copy=False)


def _class_label(c: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= c < len(class_names):
        return f"class {class_names[c]} (index {c})"
    return f"class {c}"


def check_class_sets(
    train_classes: np.ndarray,
    test_y: np.ndarray,
    class_names: Sequence[str] | None = None,
    what: str = "test labels",
) -> None:
    """CogError unless the test labels cover exactly the training classes."""
    test_classes = np.unique(test_y)
    only_train = np.setdiff1d(train_classes, test_classes)
    only_test = np.setdiff1d(test_classes, train_classes)
    if len(only_train) == 0 and len(only_test) == 0:
        return

    def show(cs: np.ndarray) -> str:
        names = ", ".join(_class_label(int(c), class_names) for c in cs[:10])
        return names + (f" and {len(cs) - 10} more" if len(cs) > 10 else "")

    parts = []
    if len(only_train):
        parts.append(
            f"{len(only_train)} training classes missing from the test set: {show(only_train)}"
        )
    if len(only_test):
        parts.append(f"{len(only_test)} test classes never seen in training: {show(only_test)}")
    raise CogError(
        f"{what}: train and test class sets differ ({'; '.join(parts)}); "
        "extract both splits from the same class list"
    )


def _per_class(y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sorted classes and, for each, its row indices in increasing order."""
    order = np.argsort(y, kind="stable")
    classes, starts = np.unique(y[order], return_index=True)
    return classes, np.split(order, starts[1:])


def validation_size(n: int, fraction: float = VAL_FRACTION) -> int:
    """Validation rows of a class with `n` training images: floor(fraction * n) as in the
    authors' `split_trainset`, but at least one (and one training row kept) when n >= 2,
    where their code would leave the class out of validation."""
    if n < 2:
        return 0
    return min(max(int(fraction * n), 1), n - 1)


def validation_split(
    y: np.ndarray, seed: int, fraction: float = VAL_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: `fraction` of each class's rows, random per seed
    (sizes from `validation_size`), so every class is validated and keeps training rows."""
    y = check_labels(y)
    rng = np.random.default_rng([seed, 1])
    tr, va = [], []
    for rows in _per_class(y)[1]:
        k = validation_size(len(rows), fraction)
        perm = rng.permutation(rows)
        va.append(perm[:k])
        tr.append(perm[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def few_shot_indices(
    y: np.ndarray, n: int, seed: int, class_names: Sequence[str] | None = None
) -> np.ndarray:
    """Row indices of `n` images per class, drawn without replacement, reproducible per seed.

    A class with fewer than `n` images raises CogError naming it: shrinking it silently
    would change the benchmark.
    """
    y = check_labels(y)
    if int(n) != n or n < 1:
        raise CogError(f"few-shot N must be a positive integer, got {n!r}; use one of {FEW_SHOT_N}")
    rng = np.random.default_rng([seed, 2])
    classes, groups = _per_class(y)
    short = [(int(c), len(g)) for c, g in zip(classes, groups, strict=True) if len(g) < n]
    if short:
        listed = ", ".join(f"{_class_label(c, class_names)}: {k}" for c, k in short[:10])
        more = f" and {len(short) - 10} more" if len(short) > 10 else ""
        raise CogError(
            f"few-shot N={n}: {len(short)} classes have fewer than {n} training images "
            f"({listed}{more}); pick a smaller N or add images to those classes"
        )
    picks = [rng.choice(g, size=int(n), replace=False) for g in groups]
    return np.sort(np.concatenate(picks))


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


def row_blocks(X: Any, what: str) -> tuple[int, int, Iterator[tuple[int, np.ndarray]]]:
    """(rows, dim, iterator of (start, block)) for ndarray, memmap, h5py or torch input."""
    if isinstance(X, FeatureStore):
        raise TypeError("already a FeatureStore")
    if hasattr(X, "features") and not hasattr(X, "shape"):  # a cog.features.FeatureSet
        X = X.features
    shape = getattr(X, "shape", None)
    if shape is None:
        X = np.asarray(X)
        shape = X.shape
    if len(shape) != 2:
        raise CogError(f"{what}: features must be 2-D [rows, dim], got shape {tuple(shape)}")
    n, d = int(shape[0]), int(shape[1])
    if n == 0 or d == 0:
        raise CogError(f"{what}: empty feature matrix {tuple(shape)}; extract features first")
    step = max(256, CHUNK_BYTES // (4 * d))

    def gen() -> Iterator[tuple[int, np.ndarray]]:
        for a in range(0, n, step):
            block = X[a : min(a + step, n)]
            if isinstance(block, torch.Tensor):
                block = block.detach().cpu().numpy()
            yield a, np.asarray(block)

    return n, d, gen()


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
        if not (np.issubdtype(block.dtype, np.integer) or np.issubdtype(block.dtype, np.floating)):
            raise CogError(f"{what}: features must be real numbers, got dtype {block.dtype}")
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


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------


def _logits_blocks(
    store: FeatureStore, coef: torch.Tensor, intercept: torch.Tensor
) -> Iterator[tuple[slice, torch.Tensor]]:
    for s, x in store.chunks(width=coef.shape[0]):
        yield s, x @ coef.T + intercept


class LogRegProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on L2-normalised frozen features, tuned then refit.

    Parameters
    ----------
    protocol : "fast" (L-BFGS on an L2 path, default) or "reference" (the authors' SGD
        + Optuna recipe).
    seed : drives the validation split, the few-shot draws, SGD shuffling and Optuna.
    device : "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    n_shot : None for all training data, else N images per class (authors' few-shot rules:
        tune with N per class from the 80% part against the full 20% validation slice, then
        refit on a fresh N-per-class draw from the whole training set).
    l2_grid : the fast solver's L2 penalties on standardised features (default 10 ... 1e-6,
        a decade apart), walked strongest first with warm starts.
    max_iter, tol, history_size : L-BFGS iterations per path point, gradient tolerance
        relative to the gradient at zero, L-BFGS memory.
    patience : this many path points in a row without a better validation top-1 (ties
        broken by validation loss) end the path.
    refine : also try the half-way points on both sides of the best path point.
    n_trials, epochs, batch_size, momentum : the reference recipe (30, 100, 1024, 0.9);
        shrink only in tests.
    storage_dtype : "auto" (float32 when it fits, else float16), "float32", "float16",
        "bfloat16".
    matmul_precision : torch float32 matmul precision while fitting: "auto" is "high" (TF32
        on CUDA) for the fast protocol on a GPU and "highest" (true float32) otherwise, as the
        authors' V100 runs had no TF32; "highest", "high" or "medium" force one.
    verbose : show tqdm progress.

    Fitted attributes: classes_, coef_ [C, D] and intercept_ [C] (torch tensors on the fit
    device) acting on L2-normalised features, best_params_, cv_results_ (one dict per
    trial / path point), n_iter_ (iterations of the final refit: L-BFGS steps, or SGD epochs
    for the reference protocol), timings_ (seconds), peak_memory_ (bytes), n_features_in_,
    n_train_, storage_dtype_, device_. Used before fit: cog.estimator.NotFittedError, which
    is scikit-learn's NotFittedError and a CogError.
    """

    def __init__(
        self,
        protocol: str = "fast",
        seed: int = 22,
        device: str = "auto",
        n_shot: int | None = None,
        l2_grid: Sequence[float] | None = None,
        max_iter: int = 100,
        tol: float = 1e-3,
        patience: int = 2,
        refine: bool = True,
        history_size: int = 20,
        n_trials: int = 30,
        epochs: int = 100,
        batch_size: int = 1024,
        momentum: float = 0.9,
        storage_dtype: str = "auto",
        matmul_precision: str = "auto",
        verbose: bool = False,
    ):
        self.protocol = protocol
        self.seed = seed
        self.device = device
        self.n_shot = n_shot
        self.l2_grid = l2_grid
        self.max_iter = max_iter
        self.tol = tol
        self.patience = patience
        self.refine = refine
        self.history_size = history_size
        self.n_trials = n_trials
        self.epochs = epochs
        self.batch_size = batch_size
        self.momentum = momentum
        self.storage_dtype = storage_dtype
        self.matmul_precision = matmul_precision
        self.verbose = verbose

    # ---- fitting ---------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise CogError(f"protocol {self.protocol!r} unknown; use one of {PROTOCOLS}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise CogError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.n_shot is not None and (int(self.n_shot) != self.n_shot or self.n_shot < 1):
            raise CogError(f"n_shot must be a positive integer or None, got {self.n_shot!r}")
        if self.matmul_precision not in ("auto", "highest", "high", "medium"):
            raise CogError(
                f"matmul_precision {self.matmul_precision!r} unknown; "
                "use auto, highest, high or medium"
            )
        for name in ("max_iter", "n_trials", "epochs", "batch_size", "history_size"):
            if int(getattr(self, name)) < 1:
                raise CogError(f"{name} must be at least 1, got {getattr(self, name)!r}")

    def fit(self, X: Any, y: Any, class_names: Sequence[str] | None = None) -> LogRegProbe:
        """Tune on a per-class 20% validation split, then refit on all training rows.

        `class_names[c]` names label c in error messages (e.g. wnids).
        """
        self._check_params()
        t0 = time.perf_counter()
        dev = resolve_device(self.device)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        store = load_features(X, dev, self.storage_dtype)
        y = check_labels(y, store.n, f"{store.source} labels")
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise CogError(f"{store.source}: training labels hold {n_classes} class; need two")
        names = None
        if class_names is not None:
            names = [str(class_names[int(c)]) for c in self.classes_]
        t_load = time.perf_counter()

        tr, va = validation_split(y_enc, self.seed)
        if len(va) == 0:
            raise CogError(
                f"{store.source}: no class has two training images, so there is no validation "
                "split to tune on; add training images"
            )
        if self.n_shot is not None:
            tr = tr[few_shot_indices(y_enc[tr], self.n_shot, self.seed, names)]
            final = few_shot_indices(y_enc, self.n_shot, self.seed, names)
        else:
            final = np.arange(store.n)
        y_t = torch.from_numpy(y_enc).to(dev)

        def rows(ix: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(ix).to(dev)

        split = (rows(tr), rows(va), rows(final))
        with _matmul_precision(self._precision(dev)):
            if self.protocol == "fast":
                tune_s, refit_s = self._fit_fast(store, y_t, *split, n_classes)
            else:
                tune_s, refit_s = self._fit_reference(store, y_t, *split, n_classes)
        self.n_features_in_ = store.dim
        self.n_train_ = len(final)
        self.timings_ = {
            "load_s": t_load - t0,
            "tune_s": tune_s,
            "refit_s": refit_s,
            "fit_s": time.perf_counter() - t0,
        }
        self.peak_memory_ = peak_memory(dev)
        self.storage_dtype_ = str(store.data.dtype).replace("torch.", "")
        self.device_ = str(dev)
        return self

    def _precision(self, dev: torch.device) -> str:
        if self.matmul_precision != "auto":
            return self.matmul_precision
        return "high" if dev.type == "cuda" and self.protocol == "fast" else "highest"

    # fast: L-BFGS along an L2 path ------------------------------------------------------

    def _fit_fast(self, store, y_t, tr, va, final, n_classes):
        t0 = time.perf_counter()
        grid = sorted((float(v) for v in (self.l2_grid or DEFAULT_L2_GRID)), reverse=True)
        if not grid or min(grid) <= 0:
            raise CogError(f"l2_grid must hold positive values, got {self.l2_grid!r}")
        mu, inv = store.stats(tr)
        W = torch.zeros((n_classes, store.dim), device=store.device)
        b = torch.zeros(n_classes, device=store.device)
        tune = _Objective(store, tr, y_t, mu, inv, n_classes)
        # Tolerances are relative to the gradient at zero, so they do not depend on the
        # number of classes or the feature scale.
        gtol = self.tol * tune.max_grad(W, b)
        results: list[dict] = []
        bar = tqdm(desc="fast probe: L2 path", disable=not self.verbose, leave=False)

        def solve(lam, start):
            ts = time.perf_counter()
            W.copy_(start[0])
            b.copy_(start[1])
            n_iter, n_eval = _lbfgs(tune, W, b, lam, self.max_iter, gtol, self.history_size)
            top1, loss = _evaluate(store, va, y_t, *_effective(W, b, mu, inv))
            rec = {
                "l2": lam,
                "val_top1": top1,
                "val_loss": loss,
                "n_iter": n_iter,
                "n_eval": n_eval,
                "time_s": time.perf_counter() - ts,
            }
            results.append(rec)
            bar.update(1)
            bar.set_postfix(l2=f"{lam:.1e}", val_top1=f"{top1:.4f}")
            return rec, (W.clone(), b.clone())

        def better(r, than):
            return than is None or (r["val_top1"], -r["val_loss"]) > (
                than["val_top1"],
                -than["val_loss"],
            )

        best, best_state, state, stale = None, None, (W.clone(), b.clone()), 0
        for lam in grid:
            rec, state = solve(lam, state)
            if better(rec, best):
                best, best_state, stale = rec, state, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if self.refine and len(grid) > 1:
            # Halfway (in log scale) to each neighbour of the best point; beyond an end of the
            # grid, the same step outward.
            i = grid.index(best["l2"])
            step = grid[i - 1] / grid[i] if i > 0 else grid[i] / grid[i + 1]
            start = best_state
            for lam in (best["l2"] * math.sqrt(step), best["l2"] / math.sqrt(step)):
                rec, state = solve(lam, start)
                if better(rec, best):
                    best, best_state = rec, state
        bar.close()
        t_tune = time.perf_counter() - t0
        # Keep the per-sample weighting of the penalty: same C = 1 / (l2 * n) on more rows.
        lam = best["l2"] * len(tr) / len(final)
        W.copy_(best_state[0])
        b.copy_(best_state[1])
        tune.dense = None  # frees its working copy before the refit builds one
        refit = _Objective(store, final, y_t, mu, inv, n_classes)
        n_iter, n_eval = _lbfgs(refit, W, b, lam, self.max_iter, gtol, self.history_size)
        self.coef_, self.intercept_ = _effective(W, b, mu, inv)
        self.n_iter_ = n_iter  # L-BFGS iterations of the refit
        self.best_params_ = {
            "l2": best["l2"],
            "l2_refit": lam,
            "val_top1": best["val_top1"],
            "val_loss": best["val_loss"],
            "refit_iter": n_iter,
            "refit_eval": n_eval,
        }
        self.cv_results_ = results
        return t_tune, time.perf_counter() - t0 - t_tune

    # reference: the authors' SGD + Optuna --------------------------------------------

    def _fit_reference(self, store, y_t, tr, va, final, n_classes):
        import optuna

        t0 = time.perf_counter()
        results = []
        bar = tqdm(
            total=self.n_trials,
            desc="reference probe: trials",
            disable=not self.verbose,
            leave=False,
        )

        def objective(trial: optuna.Trial) -> float:
            ts = time.perf_counter()
            lr = trial.suggest_float("lr", *REFERENCE_LR_RANGE, log=True)
            wd = trial.suggest_float("wd", *REFERENCE_WD_RANGE, log=True)
            coef, icpt, _ = self._sgd(store, tr, y_t, n_classes, lr, wd, trial.number)
            top1 = _evaluate(store, va, y_t, coef, icpt)[0]
            results.append(
                {
                    "trial": trial.number,
                    "lr": lr,
                    "wd": wd,
                    "val_top1": top1,
                    "time_s": time.perf_counter() - ts,
                }
            )
            bar.update(1)
            return top1

        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.TPESampler(multivariate=True, seed=self.seed)
                study = optuna.create_study(direction="maximize", sampler=sampler)
                study.optimize(objective, n_trials=self.n_trials)
        finally:
            optuna.logging.set_verbosity(level)
            bar.close()
        t_tune = time.perf_counter() - t0
        lr, wd = study.best_params["lr"], study.best_params["wd"]
        self.coef_, self.intercept_, self.n_iter_ = self._sgd(
            store, final, y_t, n_classes, lr, wd, self.n_trials
        )  # n_iter_: SGD epochs of the refit
        self.best_params_ = {"lr": lr, "wd": wd, "val_top1": study.best_value}
        self.cv_results_ = results
        return t_tune, time.perf_counter() - t0 - t_tune

    def _sgd(self, store, idx, y_t, n_classes, lr0, wd, run):
        """One linear layer, SGD with momentum, weight decay on all params, lagging cosine.

        As in the authors' loop, a non-finite batch loss (SGD diverged) ends training before
        that step, and the layer is scored as it stands. Returns (weight, bias, epochs run).
        """
        dev = store.device
        gen = torch.Generator().manual_seed(int(self.seed) * 1000 + int(run))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed) * 1000 + int(run))
            layer = torch.nn.Linear(store.dim, n_classes)
        layer = layer.to(dev)
        opt = torch.optim.SGD(layer.parameters(), lr=lr0, momentum=self.momentum, weight_decay=wd)
        n = len(idx)
        for epoch in range(self.epochs):
            for group in opt.param_groups:
                group["lr"] = reference_lr(epoch, lr0, self.epochs)
            perm = idx[torch.randperm(n, generator=gen).to(dev)]
            for a in range(0, n, self.batch_size):
                rows = perm[a : a + self.batch_size]
                loss = torch.nn.functional.cross_entropy(layer(store.data[rows].float()), y_t[rows])
                if not torch.isfinite(loss):
                    return layer.weight.detach().clone(), layer.bias.detach().clone(), epoch
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return layer.weight.detach().clone(), layer.bias.detach().clone(), self.epochs

    # ---- prediction ------------------------------------------------------------------

    def _check_fitted(self) -> None:
        check_fitted(self, "coef_", "call fit(X, y) first")

    def _test_store(self, X: Any) -> FeatureStore:
        self._check_fitted()
        store = load_features(X, self.coef_.device, self.storage_dtype)
        if store.dim != self.n_features_in_:
            raise CogError(
                f"{store.source}: features have {store.dim} dims, the probe was fit on "
                f"{self.n_features_in_}; use features from the same model and layer"
            )
        return store

    @torch.no_grad()
    def decision_function(self, X: Any) -> np.ndarray:
        """Logits [N, C] (columns follow classes_)."""
        store = self._test_store(X)
        out = np.empty((store.n, len(self.classes_)), dtype=np.float32)
        for s, z in _logits_blocks(store, self.coef_, self.intercept_):
            out[s] = z.cpu().numpy()
        return out

    @torch.no_grad()
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [N, C] (columns follow classes_)."""
        store = self._test_store(X)
        out = np.empty((store.n, len(self.classes_)), dtype=np.float32)
        for s, z in _logits_blocks(store, self.coef_, self.intercept_):
            out[s] = torch.softmax(z, 1).cpu().numpy()
        return out

    @torch.no_grad()
    def predict(self, X: Any) -> np.ndarray:
        store = self._test_store(X)
        out = np.empty(store.n, dtype=np.int64)
        for s, z in _logits_blocks(store, self.coef_, self.intercept_):
            out[s] = z.argmax(1).cpu().numpy()
        return self.classes_[out]

    @torch.no_grad()
    def scores(self, X: Any, y: Any, class_names: Sequence[str] | None = None) -> dict[str, float]:
        """top1 and top5 accuracy in [0, 1] (top-k with k = min(5, classes)) and row count.

        The test classes must be exactly the training classes (CogError otherwise).
        """
        store = self._test_store(X)
        y = check_labels(y, store.n, f"{store.source} labels")
        check_class_sets(self.classes_, y, class_names, f"{store.source} labels")
        y_t = torch.from_numpy(np.searchsorted(self.classes_, y)).to(self.coef_.device)
        k = min(5, len(self.classes_))
        hit1 = hit5 = 0
        for s, z in _logits_blocks(store, self.coef_, self.intercept_):
            top = z.topk(k, dim=1).indices
            match = top == y_t[s, None]
            hit1 += int(match[:, 0].sum())
            hit5 += int(match.any(1).sum())
        return {"top1": hit1 / store.n, "top5": hit5 / store.n, "n": store.n}

    def score(self, X: Any, y: Any) -> float:
        """Top-1 accuracy in [0, 1]."""
        return self.scores(X, y)["top1"]

    def score_top5(self, X: Any, y: Any) -> float:
        """Top-5 accuracy in [0, 1]."""
        return self.scores(X, y)["top5"]


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


def _fits(nbytes: int, device: torch.device) -> bool:
    """Whether an extra working copy of `nbytes` leaves ample room on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 3
    return nbytes <= min(_memory_available() // 4, 4 << 30)


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

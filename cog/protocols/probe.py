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

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from tqdm.auto import tqdm

from cog import CogError
from cog.device import resolve_device
from cog.estimator import check_fitted
from cog.protocols import PROTOCOLS
from cog.protocols.lbfgs import (
    _effective,
    _evaluate,
    _lbfgs,
    _logits_blocks,
    _matmul_precision,
    _Objective,
)
from cog.protocols.sampling import (
    REFERENCE_LR_RANGE,
    REFERENCE_WD_RANGE,
    check_class_sets,
    check_labels,
    few_shot_indices,
    reference_lr,
    validation_split,
)
from cog.protocols.store import FeatureStore, load_features, peak_memory

# The fast protocol's L2 path (on standardised features): strongest first, a decade apart.
DEFAULT_L2_GRID = tuple(float(v) for v in np.logspace(1, -6, 8))


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

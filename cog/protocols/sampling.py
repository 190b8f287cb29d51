"""Who is in which split: label checks, the per-class validation split, few-shot
draws and the reference protocol's seeds (protocol.md section 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cog import CogError

SEEDS = (22, 37, 45, 77, 93)
FEW_SHOT_N = (1, 2, 4, 8, 16, 32, 64, 128)
VAL_FRACTION = 0.2
# lr0 and weight-decay ranges searched by the authors' Optuna study (protocol.md section 4).
REFERENCE_LR_RANGE = (0.1, 100.0)
REFERENCE_WD_RANGE = (1e-12, 1e-4)


def reference_lr(epoch: int, lr0: float, epochs: int = 100) -> float:
    """Learning rate the authors' loop uses during `epoch` (0-based).

    Their cosine scheduler steps after each epoch, so epoch e > 0 runs at the value for
    e - 1: lr0 * 0.5 * (1 + cos(pi * (e - 1) / epochs)); epochs 0 and 1 both run at lr0.
    """
    e = max(epoch - 1, 0)
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * e / epochs))


def source_name(X: Any, default: str = "the feature array") -> str:
    """A name for error messages when the features come from a file: `file:dataset` of an
    HDF5 dataset (or of a FeatureSet's `features`), a `filename`, or a cache's `path`."""
    name = getattr(X, "filename", None)
    if isinstance(name, str) and name:
        return name
    for obj in (X, getattr(X, "features", None)):
        name = getattr(getattr(obj, "file", None), "filename", None)
        if isinstance(name, str) and name:
            ds = getattr(obj, "name", "")
            return f"{name}:{ds}" if ds else name
    path = getattr(X, "path", None)
    return f"{path}:features" if path is not None else default


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

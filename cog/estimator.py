"""scikit-learn conventions shared by cog's estimators (LogRegProbe, TLDR, PCAW).

One place for the not-fitted error, so `except sklearn.exceptions.NotFittedError` and
`except cog.CogError` both catch it, and for the parameter checks done at `fit`.
"""

from __future__ import annotations

import math
from typing import Any

from sklearn.exceptions import NotFittedError as _SklearnNotFitted

from cog import CogError


class NotFittedError(CogError, _SklearnNotFitted):
    """An estimator used before `fit` (or `load`): scikit-learn's error, and a CogError."""


def check_fitted(estimator: Any, attribute: str, how: str = "call fit first") -> None:
    """Raise NotFittedError unless `estimator` has the fitted `attribute`."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; {how}")


def check_number(value: Any, name: str, *, low: float, low_open: bool = False) -> float:
    """`value` as a finite float >= low (> low when `low_open`), else a CogError naming it."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (low_open and value == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise CogError(f"{name}={value!r}: must be a finite number {bound}")
    return float(value)

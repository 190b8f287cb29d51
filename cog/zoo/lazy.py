"""Modules imported on first use: reading cards (`cog-models list`, `--help`) must
not wait seconds for torch.
"""

from __future__ import annotations

from typing import Any


class _Lazy:
    """A module imported on first attribute use: reading cards (cog-models list, --help)
    must not wait seconds for torch."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
nn = _Lazy("torch.nn")

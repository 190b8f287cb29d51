"""The fault-injection suite: every test here carries the `faults` marker, so the fast
subset can skip it (`pytest -m "not faults"`); CI runs everything."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)

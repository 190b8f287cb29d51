"""Shared fixtures: WordNet 3.0 (installed by scripts/install.sh) and the real IN-21K counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_COUNTS = (
    Path(os.environ.get("COG_SHARED", REPO.parent / "shared"))
    / "data"
    / "in21k_fall11_image_counts.tsv"
)


@pytest.fixture(scope="session")
def reader():
    from cog.wordnet import load_wordnet

    return load_wordnet(download=False)


@pytest.fixture(scope="session")
def hierarchy(reader):
    from cog.wordnet import NounHierarchy

    return NounHierarchy.from_reader(reader)


@pytest.fixture(scope="session")
def counts_path() -> Path:
    if not SHARED_COUNTS.is_file():
        pytest.skip(f"{SHARED_COUNTS} not found (the project's shared data folder)")
    return SHARED_COUNTS

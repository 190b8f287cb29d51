"""Shared fixtures: WordNet 3.0 (installed by scripts/install.sh), the real IN-21K counts, a
hand-built noun tree and the shipped wnid lists that generated image trees draw from."""

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
    from cog.concepts.wordnet import load_wordnet

    return load_wordnet(download=False)


@pytest.fixture(scope="session")
def hierarchy(reader):
    from cog.concepts.wordnet import NounHierarchy

    return NounHierarchy.from_reader(reader)


@pytest.fixture(scope="session")
def counts_path() -> Path:
    if not SHARED_COUNTS.is_file():
        pytest.skip(f"{SHARED_COUNTS} not found (the project's shared data folder)")
    return SHARED_COUNTS


@pytest.fixture(scope="session")
def toy_hierarchy():
    """A hand-built noun tree (IC and Lin values in tests/test_ic.py and test_lin.py are
    worked out by hand on it). Pool: cat, puppy, oak; fern is outside the pool's tree.

        entity(0) ─┬─ animal(1) ─┬─ dog(3) ── puppy(5)
                   │             └─ cat(4)
                   ├─ plant(2) ──┬─ oak(7)
                   │             └─ fern(8)
                   └─ pet(6) ──────── puppy(5)   (two parents: dog and pet)
    """
    import numpy as np

    from cog.concepts.wordnet import NounHierarchy

    names = ["entity", "animal", "plant", "dog", "cat", "puppy", "pet", "oak", "fern"]
    parents = [[], [0], [0], [1], [1], [3, 6], [0], [2], [2]]
    return NounHierarchy(
        offsets=np.arange(1, len(names) + 1, dtype=np.int64) * 1000,
        names=[f"{n}.n.01" for n in names],
        lemmas=names,
        parents=parents,
        source="hand-built",
    )


@pytest.fixture(scope="session")
def shipped_wnids() -> tuple[list[str], list[str]]:
    """The shipped seen (ImageNet-1K) and pool (ImageNet-21K fall 2011) wnid lists."""
    from cog.concepts.levels import DEFAULT_POOL, DEFAULT_SEEN
    from cog.io import read_wnid_list

    return read_wnid_list(DEFAULT_SEEN), read_wnid_list(DEFAULT_POOL)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests are skipped, with the reason, where no CUDA device is visible."""
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu)")
        for item in gpu:
            item.add_marker(skip)

"""kNN (weighted cosine vote), alignment and uniformity against direct computations."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cog import CogError
from cog.protocols.metrics import alignment, knn_accuracy, knn_scores, uniformity


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_knn(Xtr, ytr, Xte, k, T):
    S = unit(Xte) @ unit(Xtr).T
    votes = np.zeros((len(Xte), ytr.max() + 1))
    for i, row in enumerate(S):
        for j in np.argsort(-row)[:k]:
            votes[i, ytr[j]] += np.exp(row[j] / T)
    return votes.argmax(1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: one intra-op thread avoids waiting on busy cores (shared CI machine)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads(1)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 24))
    ytr = rng.integers(0, 6, 600)
    yte = np.repeat(np.arange(6), 20)
    Xtr = (centers[ytr] + 1.5 * rng.normal(size=(600, 24))).astype(np.float32)
    Xte = (centers[yte] + 1.5 * rng.normal(size=(120, 24))).astype(np.float32)
    return Xtr, ytr, Xte, yte


def test_knn_matches_brute_force(data):
    Xtr, ytr, Xte, yte = data
    for k, T in [(20, 0.07), (5, 0.5)]:
        want = np.mean(brute_knn(Xtr, ytr, Xte, k, T) == yte)
        assert knn_accuracy(Xtr, ytr, Xte, yte, k=k, temperature=T, device="cpu") == want
    # tiny chunks give the same answer as one block
    a = knn_scores(Xtr, ytr, Xte, yte, device="cpu")
    b = knn_scores(Xtr, ytr, Xte, yte, device="cpu", test_chunk=7, train_chunk=13)
    assert a == b and 0 < a["top1"] <= a["top5"] <= 1
    # temperature matters: a 1-NN-like vote differs from a flat vote on overlapping clusters
    flat = knn_accuracy(Xtr, ytr, Xte, yte, k=200, temperature=100.0, device="cpu")
    sharp = knn_accuracy(Xtr, ytr, Xte, yte, k=200, temperature=0.001, device="cpu")
    assert flat != sharp


def test_knn_k_capped_and_errors(data, tmp_path):
    Xtr, ytr, Xte, yte = data
    few = np.arange(0, 600, 50)  # 12 training rows relabelled to cover all 6 classes
    Xf, yf = Xtr[few], np.arange(12) % 6
    assert knn_scores(Xf, yf, Xte, yte, k=50, device="cpu")["k"] == 12
    with pytest.raises(CogError, match="never seen in training"):
        knn_accuracy(Xtr, ytr, Xte, yte + 1, device="cpu")
    with pytest.raises(CogError, match="dims"):
        knn_accuracy(Xtr, ytr, Xte[:, :5], yte, device="cpu")
    bad = Xte.copy()
    bad[4, 1] = np.nan
    with pytest.raises(CogError, match="1 of 120 feature rows"):
        knn_accuracy(Xtr, ytr, bad, yte, device="cpu")
    with pytest.raises(CogError, match="positive"):
        knn_accuracy(Xtr, ytr, Xte, yte, k=0, device="cpu")


def test_alignment_and_uniformity_values(data, tmp_path):
    Xtr, ytr, _, _ = data
    # every class collapsed onto one point: perfectly aligned
    pts = np.random.default_rng(1).normal(size=(6, 24)).astype(np.float32)
    assert alignment(pts[ytr] * 3, ytr, n_pairs=500) == pytest.approx(0, abs=1e-6)
    # random directions in high dimension: squared distance about 2
    rand = np.random.default_rng(2).normal(size=(400, 2048)).astype(np.float32)
    y = np.arange(400) % 4
    assert alignment(rand, y, n_pairs=2000) == pytest.approx(2.0, abs=0.05)
    assert alignment(rand, y, n_pairs=2000, alpha=1) == pytest.approx(np.sqrt(2), abs=0.05)
    # one-hot rows over 32 directions: pairs coincide with probability 1/32
    onehot = np.eye(32, dtype=np.float32)[np.arange(3200) % 32]
    want = np.log(1 / 32 + 31 / 32 * np.exp(-4))
    assert uniformity(onehot, n_pairs=200_000) == pytest.approx(want, abs=0.02)
    assert uniformity(onehot, t=1, n_pairs=200_000) == pytest.approx(
        np.log(1 / 32 + 31 / 32 * np.exp(-2)), abs=0.02
    )
    # seeded and file-backed reads agree with memory
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["features"] = Xtr
    with h5py.File(path, "r") as f:
        assert alignment(f["features"], ytr, seed=3) == pytest.approx(alignment(Xtr, ytr, seed=3))
        assert uniformity(f["features"], seed=3) == pytest.approx(uniformity(Xtr, seed=3))
    assert uniformity(Xtr, seed=3) != uniformity(Xtr, seed=4)


def test_alignment_errors(data):
    Xtr, ytr, _, _ = data
    with pytest.raises(CogError, match="no class has two rows"):
        alignment(Xtr[:6], np.arange(6))
    with pytest.raises(CogError, match="labels for"):
        alignment(Xtr, ytr[:-1])
    bad = Xtr.copy()
    bad[:, 0] = np.inf
    with pytest.raises(CogError, match="NaN or inf"):
        uniformity(bad, n_pairs=10)

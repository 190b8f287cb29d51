"""LogRegProbe (fast and reference), the authors' split and few-shot rules, input checks."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

import cog.protocols.lbfgs as probe_lbfgs
import cog.protocols.probe as probe
import cog.protocols.store as probe_store
from cog import CogError
from cog.protocols.probe import LogRegProbe
from cog.protocols.sampling import (
    FEW_SHOT_N,
    SEEDS,
    few_shot_indices,
    reference_lr,
    validation_size,
    validation_split,
)

SHORT = [1e-1, 1e-2, 1e-3]
TINY_REF = {"protocol": "reference", "n_trials": 3, "epochs": 8, "batch_size": 64}


def blobs(n_classes=5, per=40, d=16, sep=3.0, seed=0, labels=None):
    """Gaussian class clusters on non-negative features (like ReLU-pooled backbones)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)) * sep
    y = np.repeat(np.arange(n_classes), per)
    X = np.abs(centers[y] + rng.normal(size=(len(y), d)) + 2.0).astype(np.float32)
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: one intra-op thread avoids waiting on busy cores (shared CI machine)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads(1)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    Xtr, ytr = blobs(seed=0)
    rng = np.random.default_rng(1)
    # test points drawn around the same centres
    Xte, yte = blobs(per=20, seed=0)
    Xte = np.abs(Xte + rng.normal(size=Xte.shape).astype(np.float32) * 0.3)
    return Xtr, ytr, Xte, yte


@pytest.fixture(scope="module")
def fast_fit(data):
    Xtr, ytr, _, _ = data
    return LogRegProbe(device="cpu").fit(Xtr, ytr)


def test_constants():
    assert SEEDS == (22, 37, 45, 77, 93)
    assert FEW_SHOT_N == (1, 2, 4, 8, 16, 32, 64, 128)


def test_reference_schedule_lags_one_epoch():
    assert reference_lr(0, 2.0) == 2.0
    assert reference_lr(1, 2.0) == 2.0
    assert reference_lr(2, 2.0) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi / 100)))
    assert reference_lr(99, 2.0) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 98 / 100)))
    assert reference_lr(99, 2.0) < reference_lr(2, 2.0) < 2.0


def test_validation_split_is_20_percent_per_class_and_random_per_seed():
    y = np.repeat([0, 1, 2], [10, 25, 50])
    tr, va = validation_split(y, 22)
    assert np.bincount(y[va]).tolist() == [2, 5, 10]
    assert np.bincount(y[tr]).tolist() == [8, 20, 40]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    _, va2 = validation_split(y, 22)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, validation_split(y, 37)[1])


def test_validation_size_rounds_down_like_the_authors():
    # floor(0.2 n) (their split_trainset), but one row at least from two images on
    assert [validation_size(n) for n in (0, 1, 2, 4, 5, 9, 14, 732, 1299)] == [
        0,
        0,
        1,
        1,
        1,
        1,
        2,
        146,
        259,
    ]
    y = np.repeat([0, 1], [9, 14])
    assert np.bincount(y[validation_split(y, 22)[1]]).tolist() == [1, 2]


def test_few_shot_tunes_on_n_outside_validation_against_the_full_slice(monkeypatch):
    """protocol.md 4: tuning draws N per class from the 80% part and validates on the full
    20% slice; the final fit redraws N per class from all training images."""
    X, y = blobs(n_classes=4, per=30)
    seen = {}

    def spy(self, store, y_t, tr, va, final, n_classes):
        seen.update(tr=tr.numpy(), va=va.numpy(), final=final.numpy())
        raise KeyboardInterrupt  # stop before any solver work

    monkeypatch.setattr(LogRegProbe, "_fit_fast", spy)
    with pytest.raises(KeyboardInterrupt):
        LogRegProbe(device="cpu", n_shot=4, seed=22).fit(X, y)
    tr_all, va = validation_split(y, 22)
    assert np.array_equal(seen["va"], va)  # the full 20% slice: 6 per class
    assert np.bincount(y[seen["va"]]).tolist() == [6] * 4
    assert np.bincount(y[seen["tr"]]).tolist() == [4] * 4
    assert set(seen["tr"]) <= set(tr_all)  # never a validation row
    assert np.bincount(y[seen["final"]]).tolist() == [4] * 4
    assert np.array_equal(seen["final"], few_shot_indices(y, 4, 22))  # drawn from all rows


def test_seed_must_be_a_non_negative_integer():
    X, y = blobs()
    for bad in (-1, 1.5):
        with pytest.raises(CogError, match="seed must be a non-negative integer"):
            LogRegProbe(device="cpu", seed=bad).fit(X, y)


def test_few_shot_counts_no_replacement_seeded():
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(6), 30))
    for n in (1, 4, 30):
        idx = few_shot_indices(y, n, 22)
        assert len(np.unique(idx)) == len(idx)  # without replacement
        assert np.bincount(y[idx]).tolist() == [n] * 6
    assert np.array_equal(few_shot_indices(y, 4, 22), few_shot_indices(y, 4, 22))
    draws = {tuple(few_shot_indices(y, 4, s)) for s in SEEDS}
    assert len(draws) == len(SEEDS)


def test_few_shot_too_few_images_names_the_class():
    y = np.repeat([0, 1, 2], [8, 3, 8])
    with pytest.raises(CogError, match=r"n01440764.*3"):
        few_shot_indices(y, 4, 22, class_names=["n00000001", "n01440764", "n00000002"])
    with pytest.raises(CogError, match="positive integer"):
        few_shot_indices(y, 0, 22)


def test_fast_probe_api(data, fast_fit):
    Xtr, _, Xte, yte = data
    p = fast_fit
    proba = p.predict_proba(Xte)
    assert proba.shape == (len(Xte), 5)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(p.predict(Xte), p.classes_[proba.argmax(1)])
    s = p.scores(Xte, yte)
    assert 0.9 <= s["top1"] <= s["top5"] == 1.0
    assert p.score(Xte, yte) == s["top1"]
    assert p.score_top5(Xte, yte) == s["top5"]
    assert set(p.best_params_) >= {"l2", "val_top1"}
    assert p.best_params_["l2"] in [r["l2"] for r in p.cv_results_]
    assert set(p.timings_) == {"load_s", "tune_s", "refit_s", "fit_s"}
    assert p.peak_memory_["cpu_peak_rss_bytes"] > 0
    assert p.n_train_ == len(Xtr) and p.n_features_in_ == Xtr.shape[1]


def test_labels_are_kept(data):
    Xtr, _ = blobs(n_classes=3, per=20, labels=[7, 3, 11])
    _, y = blobs(n_classes=3, per=20, labels=[7, 3, 11])
    p = LogRegProbe(device="cpu", l2_grid=[1e-3]).fit(Xtr, y)
    assert p.classes_.tolist() == [3, 7, 11]
    assert set(p.predict(Xtr)) <= {3, 7, 11}
    assert p.score(Xtr, y) > 0.9


def test_fast_matches_reference_on_separable_data(data, fast_fit):
    Xtr, ytr, Xte, yte = data
    ref = LogRegProbe(device="cpu", **TINY_REF).fit(Xtr, ytr)
    assert set(ref.best_params_) >= {"lr", "wd"}
    assert len(ref.cv_results_) == 3
    for r in ref.cv_results_:
        assert 0.1 <= r["lr"] <= 100 and 1e-12 <= r["wd"] <= 1e-4
    assert fast_fit.score(Xte, yte) >= ref.score(Xte, yte) - 0.02


def test_options_change_behaviour(data, fast_fit, monkeypatch):
    Xtr, ytr, _, _ = data

    def coef(**kw):
        return LogRegProbe(device="cpu", **kw).fit(Xtr, ytr).coef_

    base = coef(l2_grid=SHORT)

    assert not torch.allclose(coef(seed=37, l2_grid=SHORT), base)
    assert not torch.allclose(coef(max_iter=1, l2_grid=SHORT), base)
    one = LogRegProbe(device="cpu", l2_grid=[0.5]).fit(Xtr, ytr)
    assert one.best_params_["l2"] == 0.5 and len(one.cv_results_) == 1
    grid = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    flat = LogRegProbe(device="cpu", l2_grid=grid, patience=1, refine=False)
    with monkeypatch.context() as m:  # a flat validation curve: nothing ever improves
        m.setattr(probe, "_evaluate", lambda *a: (0.5, 1.0))
        assert [r["l2"] for r in flat.fit(Xtr, ytr).cv_results_] == grid[:2]
        flat.set_params(patience=3)
        assert [r["l2"] for r in flat.fit(Xtr, ytr).cv_results_] == grid[:4]
        flat.set_params(refine=True)
        tried = [r["l2"] for r in flat.fit(Xtr, ytr).cv_results_]
        assert tried[4:] == pytest.approx([10**-0.5, 10**-1.5])  # around the best, 1e-1
    half = LogRegProbe(device="cpu", storage_dtype="float16", l2_grid=SHORT).fit(Xtr, ytr)
    assert half.storage_dtype_ == "float16" and fast_fit.storage_dtype_ == "float32"
    assert np.mean(half.predict(Xtr) == fast_fit.predict(Xtr)) > 0.95

    def ref(**kw):
        return LogRegProbe(device="cpu", **{**TINY_REF, "n_trials": 1, **kw}).fit(Xtr, ytr)

    r0 = ref()
    assert r0.best_params_ == ref().best_params_  # seeded
    assert not torch.allclose(ref(epochs=3).coef_, r0.coef_)
    assert not torch.allclose(ref(batch_size=32).coef_, r0.coef_)
    assert not torch.allclose(ref(momentum=0.0).coef_, r0.coef_)
    assert ref(seed=37).best_params_ != r0.best_params_


def test_few_shot_probe(data):
    Xtr, ytr, Xte, yte = data
    p = LogRegProbe(device="cpu", n_shot=4, l2_grid=[1e-2, 1e-3]).fit(Xtr, ytr)
    assert p.n_train_ == 4 * 5
    assert p.score(Xte, yte) > 0.5
    with pytest.raises(CogError, match=r"wnid3"):
        LogRegProbe(device="cpu", n_shot=35).fit(
            Xtr, ytr, class_names=[f"wnid{i}" for i in range(5)]
        )


def test_h5py_streaming_matches_memory(tmp_path, data, monkeypatch):
    Xtr, ytr, Xte, yte = data
    path = tmp_path / "feats.h5"
    with h5py.File(path, "w") as f:
        f["features"] = Xtr
    mem = LogRegProbe(device="cpu", l2_grid=[1e-2, 1e-3]).fit(Xtr, ytr)
    monkeypatch.setattr(probe_store, "CHUNK_BYTES", 16 * 4 * 7)  # force many small chunks
    monkeypatch.setattr(probe_lbfgs, "_fits", lambda *a: False)  # and no in-memory working copy
    with h5py.File(path, "r") as f:
        disk = LogRegProbe(device="cpu", l2_grid=[1e-2, 1e-3]).fit(f["features"], ytr)
    torch.testing.assert_close(disk.coef_, mem.coef_, atol=1e-3, rtol=1e-3)
    assert disk.best_params_["l2"] == mem.best_params_["l2"]
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=Xte.shape)
    mm[:] = Xte
    assert abs(disk.score(mm, yte) - mem.score(Xte, yte)) <= 0.01


def test_bad_inputs(data, fast_fit, tmp_path):
    Xtr, ytr, Xte, yte = data
    bad = Xtr.copy()
    bad[[3, 50], 2] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(CogError, match=r"3 of 200 feature rows hold NaN or inf.*\[3, 7, 50\]"):
        LogRegProbe(device="cpu").fit(bad, ytr)
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["features"] = bad
    with h5py.File(path, "r") as f, pytest.raises(CogError, match=r"bad\.h5"):
        LogRegProbe(device="cpu").fit(f["features"], ytr)
    with pytest.raises(CogError, match="199 labels for 200"):
        LogRegProbe(device="cpu").fit(Xtr, ytr[:-1])
    with pytest.raises(CogError, match="integers"):
        LogRegProbe(device="cpu").fit(Xtr, ytr.astype(float))
    with pytest.raises(CogError, match="protocol"):
        LogRegProbe(protocol="sgd").fit(Xtr, ytr)
    with pytest.raises(CogError, match="not fitted"):
        LogRegProbe().predict(Xte)
    with pytest.raises(CogError, match="16"):
        fast_fit.predict(Xte[:, :8])
    with pytest.raises(CogError, match=r"missing from the test set: class 4"):
        fast_fit.score(Xte[yte < 4], yte[yte < 4])
    with pytest.raises(CogError, match=r"never seen in training: class 9"):
        fast_fit.score(Xte, np.where(yte == 4, 9, yte))


def test_storage_falls_back_to_float16_when_float32_would_not_fit(data, monkeypatch):
    Xtr = data[0]
    assert probe_store.load_features(Xtr, "cpu").data.dtype == torch.float32
    monkeypatch.setattr(probe_store, "_memory_available", lambda: Xtr.size * 4 * 2)  # budget: 1/3
    store = probe_store.load_features(Xtr, "cpu")
    assert store.data.dtype == torch.float16
    np.testing.assert_allclose(store.data.float().norm(dim=1).numpy(), 1, atol=1e-3)


def test_matmul_precision_is_restored(data):
    Xtr, ytr, _, _ = data
    before = torch.get_float32_matmul_precision()
    LogRegProbe(device="cpu", l2_grid=SHORT, matmul_precision="high").fit(Xtr, ytr)
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(CogError, match="matmul_precision"):
        LogRegProbe(matmul_precision="tf32").fit(Xtr, ytr)


# ---------------------------------------------------------------- parity with scikit-learn


def _objective64(Z, y, W, b, lam):
    """Mean cross-entropy + lam/2 ||W||^2 in float64 (the objective both solvers minimise)."""
    z = Z @ W.T + b
    z = z - z.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1))
    return float((lse - z[np.arange(len(y)), y]).mean() + 0.5 * lam * (W * W).sum())


@pytest.mark.parametrize("lam", [1e-2, 1e-3])
def test_fast_solver_reaches_sklearn_lbfgs_objective_at_equivalent_c(lam):
    from sklearn.linear_model import LogisticRegression

    Xtr, ytr = blobs(n_classes=6, per=150, d=24, sep=0.5, seed=3)
    Xte, _ = blobs(n_classes=6, per=400, d=24, sep=0.5, seed=3)
    Xte = np.abs(Xte + np.random.default_rng(4).normal(size=Xte.shape).astype(np.float32))
    fit = probe_lbfgs.fit_l2(Xtr, ytr, lam, device="cpu", tol=1e-9, max_iter=5000)

    def standardised(X):
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        return (Xn - fit["mu"].double().numpy()) * fit["inv"].double().numpy()

    Z, Zte = standardised(Xtr.astype(np.float64)), standardised(Xte.astype(np.float64))
    # sklearn: C * sum(CE) + 1/2 ||W||^2 (intercept unpenalised) = C n (mean CE + lam/2 ||W||^2)
    sk = LogisticRegression(C=1.0 / (lam * len(ytr)), tol=1e-12, max_iter=20000).fit(Z, ytr)
    ours = _objective64(Z, ytr, fit["W"].double().numpy(), fit["b"].double().numpy(), lam)
    theirs = _objective64(Z, ytr, sk.coef_, sk.intercept_, lam)
    assert abs(ours - theirs) / abs(theirs) <= 1e-6, (ours, theirs)
    assert abs(fit["objective"] - ours) / ours < 1e-5  # the solver reports what it reached
    pred = fit["classes"][(Zte @ fit["W"].double().numpy().T + fit["b"].numpy()).argmax(1)]
    agree = float((pred == sk.predict(Zte)).mean())
    assert agree >= 0.999, agree
    # a weaker solve (few iterations) is measurably off: the check can fail
    rough = probe_lbfgs.fit_l2(Xtr, ytr, lam, device="cpu", tol=1e-9, max_iter=2)
    w, b = rough["W"].double().numpy(), rough["b"].double().numpy()
    assert (_objective64(Z, ytr, w, b, lam) - theirs) / theirs > 1e-6


def test_fit_l2_rejects_bad_strength():
    with pytest.raises(CogError, match="l2 must be positive"):
        probe_lbfgs.fit_l2(*blobs(), 0.0)


def test_scikit_learn_conventions(data, fast_fit):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    Xtr, ytr, Xte, _ = data
    with pytest.raises(NotFittedError, match="LogRegProbe is not fitted yet"):
        LogRegProbe().predict_proba(Xte)
    with pytest.raises(NotFittedError):
        check_is_fitted(LogRegProbe())
    check_is_fitted(fast_fit)
    # n_iter_: L-BFGS steps of the refit (fast) or SGD epochs of the refit (reference)
    assert fast_fit.n_iter_ == fast_fit.best_params_["refit_iter"] >= 0  # warm-started refit
    ref = LogRegProbe(device="cpu", **TINY_REF).fit(Xtr, ytr)
    assert ref.n_iter_ == TINY_REF["epochs"]


@pytest.mark.gpu
def test_fast_probe_on_cuda_agrees_with_cpu(data, fast_fit):
    Xtr, ytr, Xte, yte = data
    gpu = LogRegProbe(device="cuda", matmul_precision="highest").fit(Xtr, ytr)
    assert gpu.device_.startswith("cuda") and gpu.coef_.is_cuda
    assert gpu.best_params_["l2"] == fast_fit.best_params_["l2"]
    np.testing.assert_allclose(
        gpu.predict_proba(Xte), fast_fit.predict_proba(Xte), rtol=0, atol=1e-3
    )
    assert gpu.scores(Xte, yte) == fast_fit.scores(Xte, yte)


def test_source_name_names_the_file_of_any_feature_source(tmp_path):
    """One namer for errors about features: an HDF5 dataset, a FeatureSet, a cache path."""
    import types

    import h5py

    from cog.protocols.sampling import source_name

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.zeros((2, 3), np.float32)
        assert source_name(f["features"]) == f"{path}:/features"
        wrapped = types.SimpleNamespace(features=f["features"])  # a FeatureSet's shape
        assert source_name(wrapped) == f"{path}:/features"
    assert source_name(types.SimpleNamespace(path=path)) == f"{path}:features"
    assert source_name(np.zeros((2, 3))) == "the feature array"
    assert source_name(np.zeros(1), "the input features") == "the input features"

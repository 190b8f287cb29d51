"""cog-eval: argument parsing, input validation, run records, and full smoke runs."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cog import CogError
from cog.bench.config import (
    EvalConfig,
    Split,
    check_finite,
    check_pair,
    check_shots,
    check_weights,
    resolve_datasets,
    run_name,
)
from cog.bench.evaluate import leaderboard_rows, summary_table
from cog.bench.leaderboard import COLUMNS
from cog.cli.eval import config_from_args, main, parser
from cog.features.options import DataRoots
from cog.io import sha256_file

# ---------------------------------------------------------------- parsing


def test_parser_lists_and_flags():
    args = parser().parse_args(
        "resnet50 --datasets in1k,cog_l2 --few-shot --shots 1,2 --seeds 22,37 --no-knn "
        "--protocol reference --random-init".split()
    )
    cfg = config_from_args(args)
    assert cfg.datasets == ("in1k", "cog_l2") and cfg.shots == (1, 2) and cfg.seeds == (22, 37)
    assert cfg.knn is False and cfg.random_init and cfg.protocol == "reference"
    assert cfg.out == Path("results") and cfg.device == "auto"
    d = parser().parse_args(["x"])
    assert d.seeds == (22, 37, 45, 77, 93) and d.knn is True and not d.few_shot


def test_parser_rejects_bad_lists(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["m", "--seeds", "22,x"])
    assert e.value.code == 2
    assert "integers" in capsys.readouterr().err


def test_shots_without_few_shot_is_an_error(capsys):
    assert main(["resnet50", "--shots", "1,2"]) == 2
    assert "--few-shot" in capsys.readouterr().err


def test_missing_root_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    out = tmp_path / "results"
    code = main(["resnet50", "--in1k-root", str(tmp_path / "nope"), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--in1k-root" in err and "nope" in err
    assert not (out / "leaderboard.csv").exists()


@pytest.mark.parametrize("fmt", ["pkl", "csv"])
def test_datasets_follow_the_levels_file(tmp_path, fmt):
    levels = [[f"n0000000{k}", f"n0000001{k}"] for k in range(3)]
    if fmt == "pkl":
        path = tmp_path / "cog_levels_mapping_file.pkl"
        path.write_bytes(pickle.dumps(levels))
    else:
        path = tmp_path / "levels.csv"
        rows = [(w, k + 1) for k, lv in enumerate(levels) for w in lv]
        pd.DataFrame(rows, columns=["wnid", "level"]).to_csv(path, index=False)
    cfg = EvalConfig(model="m", roots=DataRoots(levels=path))
    assert resolve_datasets(cfg) == ["in1k", "cog_l1", "cog_l2", "cog_l3"]
    cfg.datasets = ("cog_l3", "in1k")
    assert resolve_datasets(cfg) == ["in1k", "cog_l3"]
    cfg.datasets = ("cog_l4",)
    with pytest.raises(CogError, match=r"cog_l4.*3 levels"):
        resolve_datasets(cfg)


def test_run_names_follow_the_design():
    assert run_name("cog_l1", "all", 0, "fast") == "cog_l1_all_fast.json"
    assert run_name("in1k", "few-shot", 8, "reference") == "in1k_few-shot_n8_reference.json"


# ---------------------------------------------------------------- validation


class FakeFeatures:
    def __init__(self, X, paths):
        self.X, self.paths = X, paths

    def iter_chunks(self, rows):
        for s in range(0, len(self.X), rows):
            yield self.X[s : s + rows].astype(np.float32)


def _split(labels, classes=("n01", "n02", "n03"), split="train", X=None, sha="abc"):
    labels = np.asarray(labels)
    X = np.ones((len(labels), 4), np.float32) if X is None else X
    return Split(
        dataset="cog_l1",
        split=split,
        path=Path(f"/cache/m/cog_l1_{split}.h5"),
        classes=list(classes),
        labels=labels,
        attrs={"weights_sha256": sha, "model": "m", "images_sha256": "i" + split},
        failed=[],
        features=FakeFeatures(X, [f"p{i}.JPEG" for i in range(len(labels))]),
    )


def test_class_sets_must_match():
    check_pair(_split([0, 1, 2]), _split([0, 1, 2], split="test"))
    with pytest.raises(CogError, match=r"only in train: n03; only in test: n04"):
        check_pair(_split([0, 1, 2]), _split([0, 1, 2], ("n01", "n02", "n04"), "test"))
    with pytest.raises(CogError, match=r"cog_l1_test\.h5: 1 class\(es\) have no test image \(n02"):
        check_pair(_split([0, 1, 2]), _split([0, 2, 2], split="test"))


def test_too_few_images_for_n():
    # tuning draws N outside the 20% validation slice: 10 images leave 8, 5 leave 4
    train = _split([0] * 10 + [1] * 10 + [2] * 5)
    check_shots(train, [1, 4])
    with pytest.raises(CogError, match=r"1 class\(es\) have fewer than 8.*n03: 4 of 5.*drop N=8"):
        check_shots(train, [1, 8])
    # 10 images are enough for N=9 in total but not outside the validation slice
    with pytest.raises(CogError, match=r"3 class\(es\) have fewer than 9.*n01: 8 of 10"):
        check_shots(train, [9])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused(bad):
    X = np.ones((10, 4), np.float16)
    check_finite(_split([0] * 10, X=X), rows=3)
    X[7, 2] = bad
    with pytest.raises(CogError, match=r"row 7 \(image p7\.JPEG\) holds NaN or inf.*float32"):
        check_finite(_split([0] * 10, X=X), rows=3)


def test_random_and_trained_weights_never_mix():
    check_weights(_split([0]), "m", random_init=False)
    check_weights(_split([0], sha="random-init"), "m", random_init=True)
    with pytest.raises(CogError, match="RANDOM-INIT"):
        check_weights(_split([0], sha="random-init"), "m", random_init=False)
    with pytest.raises(CogError, match="not from a random init"):
        check_weights(_split([0]), "m", random_init=True)
    with pytest.raises(CogError, match="features of model m"):
        check_weights(_split([0]), "other", random_init=False)


# ---------------------------------------------------------------- records


def _record(setting="all", n=0, metrics=True):
    rec = {
        "model": "resnet18+random-init",
        "group": "sup",
        "dataset": "cog_l2",
        "setting": setting,
        "n_shot": n,
        "protocol": "fast",
        "seeds": [22, 37],
        "finished": "2026-01-01T00:00:00+00:00",
        "probe": {
            "top1": {"mean": 31.0, "std": 1.0, "values": [30.0, 32.0]},
            "top5": {"mean": 80.0, "std": 0.0, "values": [80.0, 80.0]},
        },
        "metrics": {},
    }
    if metrics:
        rec["metrics"] = {
            "knn_top1": {"value": 25.0},
            "alignment": {"value": 0.8},
            "uniformity": {"value": -2.5},
        }
    return rec


def test_leaderboard_rows_of_a_record():
    rows = leaderboard_rows(_record(), Path("results"))
    assert [r["metric"] for r in rows] == ["top1", "top5", "knn_top1", "alignment", "uniformity"]
    assert all(set(r) == set(COLUMNS) for r in rows)
    top1 = rows[0]
    assert (top1["mean"], top1["std"], top1["seeds"], top1["protocol"]) == (
        31.0,
        1.0,
        "22;37",
        "fast",
    )
    assert top1["run"] == "runs/resnet18+random-init/cog_l2_all_fast.json"
    knn = rows[2]
    assert (knn["protocol"], knn["n_seeds"], knn["seeds"], knn["mean"]) == ("-", 1, "", 25.0)
    few = leaderboard_rows(_record("few-shot", 2, metrics=False), Path("results"))
    assert [(r["setting"], r["n_shot"], r["metric"]) for r in few] == [
        ("few-shot", 2, "top1"),
        ("few-shot", 2, "top5"),
    ]
    assert few[0]["run"] == "runs/resnet18+random-init/cog_l2_few-shot_n2_fast.json"


def test_summary_table():
    text = summary_table([_record("few-shot", 1, metrics=False), _record()])
    lines = text.splitlines()
    assert "cog_l2" in lines[0]
    labels = [ln.split()[0] for ln in lines[1:]]
    assert labels == ["top1", "top5", "knn_top1", "alignment", "uniformity", "top1", "top5"]
    assert "31.00 ± 1.00" in lines[1] and "N=1" in lines[-1]


# ---------------------------------------------------------------- runs on prepared caches
# The extractor is replaced by caches written here in the documented HDF5 layout
# (docs/design.md), so these tests pin the orchestration alone; the smoke test below runs the
# real extractor on generated image trees.

CLASSES = {
    "in1k": ["n01440764", "n01443537", "n01484850"],
    "cog_l1": ["n10000001", "n10000002", "n10000003"],
    "cog_l2": ["n20000001", "n20000002", "n20000003"],
}
DIM = 8


def write_cache(
    path, dataset, split, *, classes=None, per_class=6, sha="random-init", seed=0, failed=()
):
    import h5py

    classes = CLASSES[dataset] if classes is None else classes
    rng = np.random.default_rng([seed, split == "test"])
    centers = np.random.default_rng(sum(map(ord, dataset))).normal(size=(len(classes), DIM)) * 3
    y = np.repeat(np.arange(len(classes)), per_class)
    X = np.abs(centers[y] + rng.normal(size=(len(y), DIM)) + 2).astype(np.float16)
    paths = [f"{classes[c]}/{classes[c]}_{i}.JPEG" for i, c in enumerate(y)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["features"] = X
        f["labels"] = y.astype(np.int64)
        f["paths"] = np.array(paths, dtype=object).astype("S")
        f["classes"] = np.array(classes, dtype="S")
        f["failed_paths"] = np.array([p for p, _ in failed] or [], dtype="S")
        f["failed_reasons"] = np.array([r for _, r in failed] or [], dtype="S")
        attrs = dict(
            model="tiny-cnn",
            weights_sha256=sha,
            dataset=dataset,
            split=split,
            images_sha256=f"{dataset}-{split}-{len(y)}",
            dtype="float16",
            mode="fast",
            cog_version="0.1.0",
            complete=True,
        )
        f.attrs.update(attrs)
    return path


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """Caches for in1k, cog_l1, cog_l2; the zoo and extractor are stand-ins that count calls."""
    import importlib
    import sys
    import types

    from cog.features.synthetic import TinyCard

    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    cache = tmp_path / "features"

    def cache_path(model, dataset, split, cache_dir=None):
        return Path(cache_dir or cache) / model / f"{dataset}_{split}.h5"

    calls = []

    def ensure_features(model, dataset, split, source, **kw):
        calls.append((model, dataset, split, source.random_init))
        p = cache_path(model, dataset, split, source.cache_dir)
        if not p.exists():
            write_cache(p, dataset, split)
        return p

    def get_card(name):
        if name != "tiny-cnn":
            raise CogError(f"unknown model {name!r}")
        return TinyCard()

    for modname, attrs in (
        ("cog.features.ensure", {"ensure_features": ensure_features}),
        ("cog.features.settings", {"cache_path": cache_path}),
        ("cog.zoo", {"get_card": get_card}),
    ):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            mod = types.ModuleType(modname)
            monkeypatch.setitem(sys.modules, modname, mod)
        for k, v in attrs.items():
            monkeypatch.setattr(mod, k, v, raising=False)
    levels = tmp_path / "cog_levels_mapping_file.pkl"
    levels.write_bytes(pickle.dumps([CLASSES["cog_l1"], CLASSES["cog_l2"]]))
    splits = tmp_path / "cog_concepts_split_file.pkl"
    splits.write_bytes(pickle.dumps({}))
    out = tmp_path / "results"
    args = [
        "tiny-cnn",
        "--in1k-root",
        str(tmp_path),
        "--imagenet-root",
        str(tmp_path),
        "--levels",
        str(levels),
        "--splits",
        str(splits),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--seeds",
        "22,37",
        "--device",
        "cpu",
        "--quiet",
    ]
    return types.SimpleNamespace(
        tmp=tmp_path, cache=cache, out=out, args=args, calls=calls, cache_path=cache_path
    )


def test_full_run_writes_runs_and_leaderboard(prepared, capsys):
    code = main([*prepared.args, "--few-shot", "--shots", "1,2", "--random-init"])
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "tiny-cnn+random-init (RANDOM-INIT weights)" in text and "cog_l2" in text
    model = "tiny-cnn+random-init"
    runs = prepared.out / "runs" / model
    names = sorted(p.name for p in runs.glob("*.json"))
    expect = sorted(
        f"{ds}_{s}_fast.json" for ds in CLASSES for s in ("all", "few-shot_n1", "few-shot_n2")
    )
    assert names == expect
    assert not list(runs.glob(".*"))  # no partial files left behind

    rec = json.loads((runs / "cog_l1_all_fast.json").read_text())
    assert rec["complete"] and rec["random_init"] and rec["weights_sha256"] == "random-init"
    assert rec["seeds"] == [22, 37] and set(rec["probe"]["per_seed"]) == {"22", "37"}
    for s in rec["probe"]["per_seed"].values():
        assert 0 <= s["top1"] <= 100 and s["best_params"] and s["n_train"] == 18
    assert set(rec["metrics"]) == {"knn_top1", "alignment", "uniformity"}
    assert rec["data"]["train"]["images_sha256"] == "cog_l1-train-18"
    assert rec["data"]["levels"]["sha256"] == sha256_file(
        prepared.tmp / "cog_levels_mapping_file.pkl"
    )
    assert rec["data"]["splits"]["sha256"] == sha256_file(
        prepared.tmp / "cog_concepts_split_file.pkl"
    )
    assert set(rec["versions"]) >= {"cog", "torch", "timm", "scikit-learn"}
    assert rec["versions"]["torch"] and rec["timings"]["probe_seconds"] > 0
    few = json.loads((runs / "cog_l2_few-shot_n2_fast.json").read_text())
    assert few["n_shot"] == 2 and few["metrics"] == {}
    assert all(s["n_train"] == 6 for s in few["probe"]["per_seed"].values())
    in1k = json.loads((runs / "in1k_all_fast.json").read_text())
    assert "levels" not in in1k["data"]  # in1k runs do not depend on the level files

    lb = pd.read_csv(prepared.out / "leaderboard.csv", keep_default_na=False)
    assert list(lb.columns) == list(COLUMNS)
    # per dataset: all (top1, top5, knn, alignment, uniformity) + 2 N x (top1, top5)
    assert len(lb) == 3 * 9 and set(lb["model"]) == {model}
    keys = set(zip(lb.dataset, lb.setting, lb.n_shot, lb.metric, lb.protocol, strict=True))
    assert ("cog_l2", "few-shot", 1, "top5", "fast") in keys
    assert ("in1k", "all", 0, "knn_top1", "-") in keys
    row = lb[(lb.dataset == "cog_l1") & (lb.setting == "all") & (lb.metric == "top1")].iloc[0]
    vals = [rec["probe"]["per_seed"][s]["top1"] for s in ("22", "37")]
    assert row["seeds"] == "22;37" and row["mean"] == pytest.approx(np.mean(vals), abs=1e-4)
    assert row["run"] == f"runs/{model}/cog_l1_all_fast.json"
    assert (prepared.out / row["run"]).is_file()
    # what makes rows comparable: level set, split lists, weights, preprocessing, schema
    lv = sha256_file(prepared.tmp / "cog_levels_mapping_file.pkl")[:12]
    sp = sha256_file(prepared.tmp / "cog_concepts_split_file.pkl")[:12]
    assert row["level_set"] == f"cog_levels_mapping_file.pkl@{lv}" and row["schema"] == 2
    assert row["split_lists"] == f"cog_concepts_split_file.pkl@{sp}"
    assert (row["weights_sha256"], row["preprocess"]) == ("random-init", "fast")
    assert set(lb.loc[lb.dataset == "in1k", "level_set"]) == {"-"}
    assert all(c[3] for c in prepared.calls) and len(prepared.calls) == 6


def test_rerun_reuses_and_force_redoes(prepared, monkeypatch, capsys):
    import cog.bench.evaluate as ev

    assert main([*prepared.args, "--random-init", "--datasets", "cog_l1"]) == 0
    path = prepared.out / "runs" / "tiny-cnn+random-init" / "cog_l1_all_fast.json"
    before = path.read_bytes()
    fits = []
    real = ev.probe_seed
    monkeypatch.setattr(ev, "probe_seed", lambda *a, **k: fits.append(k["seed"]) or real(*a, **k))
    assert main([*prepared.args, "--random-init", "--datasets", "cog_l1"]) == 0
    assert fits == [] and path.read_bytes() == before
    assert "0 written, 1 reused" in capsys.readouterr().out
    # one more seed: only that seed is fitted, the others are kept
    assert (
        main([*prepared.args, "--random-init", "--datasets", "cog_l1", "--seeds", "22,37,45"]) == 0
    )
    assert fits == [45]
    rec = json.loads(path.read_text())
    assert rec["seeds"] == [22, 37, 45]
    assert main([*prepared.args, "--random-init", "--datasets", "cog_l1", "--overwrite"]) == 0
    assert fits == [45, 22, 37]


def test_runs_follow_the_features_sha256(prepared, monkeypatch, capsys):
    """Features extracted again otherwise (other bytes, same settings otherwise) redo the
    runs; runs stored before cog recorded the features' sha256 are still reused."""
    import h5py

    import cog.bench.evaluate as ev
    from cog.features.integrity import seal

    args = [*prepared.args, "--random-init", "--datasets", "cog_l1", "--seeds", "22"]
    assert main(args) == 0  # the fixture's caches carry no seal: no features_sha256
    caches = sorted(prepared.cache.rglob("cog_l1_*.h5"))
    assert len(caches) == 2
    path = prepared.out / "runs" / "tiny-cnn+random-init" / "cog_l1_all_fast.json"
    assert "features_sha256" not in json.loads(path.read_text())["inputs"]
    for c in caches:
        with h5py.File(c, "a") as f:
            seal(f)
    fits = []
    real = ev.probe_seed
    monkeypatch.setattr(ev, "probe_seed", lambda *a, **k: fits.append(k["seed"]) or real(*a, **k))
    assert main(args) == 0 and fits == []  # an older run: matched on the rest, then pinned
    digest = json.loads(path.read_text())["inputs"]["features_sha256"]
    assert main(args) == 0 and fits == []  # same features: reused
    train = next(c for c in caches if c.name.endswith("train.h5"))
    with h5py.File(train, "a") as f:
        f["features"][0] = f["features"][0] * 0.5  # as another precision would
        seal(f)
    capsys.readouterr()
    assert main(args) == 0 and fits == [22]
    assert json.loads(path.read_text())["inputs"]["features_sha256"] != digest


def test_interrupted_run_resumes_from_finished_seeds(prepared, monkeypatch):
    import cog.bench.evaluate as ev

    real = ev.probe_seed
    fits = []

    def flaky(*a, **k):
        if len(fits) == 1:
            fits.append("interrupted")
            raise KeyboardInterrupt
        fits.append(k["seed"])
        return real(*a, **k)

    monkeypatch.setattr(ev, "probe_seed", flaky)
    args = [*prepared.args, "--random-init", "--datasets", "cog_l1", "--no-knn"]
    assert main(args) == 130
    runs = prepared.out / "runs" / "tiny-cnn+random-init"
    assert not (runs / "cog_l1_all_fast.json").exists()
    partial = runs / ".cog_l1_all_fast.partial.json"
    assert set(json.loads(partial.read_text())["probe"]["per_seed"]) == {"22"}
    assert not (prepared.out / "leaderboard.csv").exists()
    assert main(args) == 0
    assert fits == [22, "interrupted", 37]
    assert not partial.exists()
    rec = json.loads((runs / "cog_l1_all_fast.json").read_text())
    assert set(rec["probe"]["per_seed"]) == {"22", "37"} and "knn_top1" not in rec["metrics"]


def _bad(prepared, capsys, extra, match):
    lb = prepared.out / "leaderboard.csv"
    before = lb.read_bytes()
    assert main([*prepared.args, *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert lb.read_bytes() == before


def test_bad_inputs_exit_2_and_leave_the_leaderboard_untouched(prepared, capsys):
    import h5py

    assert main([*prepared.args, "--random-init", "--datasets", "cog_l1"]) == 0
    capsys.readouterr()
    model = "tiny-cnn"
    cp = prepared.cache_path
    # unknown model
    args = prepared.args.copy()
    args[0] = "no-such-model"
    before = (prepared.out / "leaderboard.csv").read_bytes()
    assert main([*args, "--random-init"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert (prepared.out / "leaderboard.csv").read_bytes() == before
    # too few images for N (6 per class)
    _bad(
        prepared,
        capsys,
        ["--random-init", "--few-shot", "--shots", "1,7"],
        r"fewer than 7 training images.*drop N=7",
    )
    # random weights not asked for
    _bad(prepared, capsys, ["--datasets", "cog_l1"], r"RANDOM-INIT")
    # class sets differ
    write_cache(
        cp(model, "cog_l2", "test", prepared.cache),
        "cog_l2",
        "test",
        classes=[*CLASSES["cog_l2"][:2], "n20000009"],
    )
    _bad(prepared, capsys, ["--random-init"], r"class sets of .*only in train: n20000003")
    # NaN / inf features
    write_cache(cp(model, "cog_l2", "test", prepared.cache), "cog_l2", "test")
    with h5py.File(cp(model, "in1k", "train", prepared.cache), "a") as f:
        f["features"][4, 1] = np.inf
    _bad(prepared, capsys, ["--random-init"], r"in1k_train\.h5: feature row 4 .*NaN or inf")
    # a leaderboard that is not one: refused before any work, left as it was
    other = prepared.tmp / "other"
    other.mkdir()
    (other / "leaderboard.csv").write_text("a,b\n1,2\n")
    assert main([*prepared.args, "--random-init", "--out", str(other)]) == 2
    assert "missing leaderboard column" in capsys.readouterr().err
    assert (other / "leaderboard.csv").read_text() == "a,b\n1,2\n" and not (other / "runs").exists()
    # missing roots: a root that does not exist, and a root needed for a missing cache
    _bad(
        prepared,
        capsys,
        ["--random-init", "--imagenet-root", str(prepared.tmp / "nope")],
        r"--imagenet-root .*nope: no such folder",
    )
    i = args.index("--in1k-root")
    no_root = [*prepared.args[:i], *prepared.args[i + 2 :]]
    assert main([*no_root, "--random-init"]) == 2
    assert "in1k needs --in1k-root DIR" in capsys.readouterr().err
    assert (prepared.out / "leaderboard.csv").read_bytes() == before


# ---------------------------------------------------------------- the full smoke run
# Generated ImageNet-1K and ImageNet-21K trees of real JPEG files, five levels of three
# concepts, a small random-init ResNet registered in the zoo, the real extractor and probe.

SMOKE_MODEL = "smoke_test_resnet"
SMOKE_CARD = {
    "name": SMOKE_MODEL,
    "group": "local",
    "title": "random-init timm test_resnet at 64 px (smoke tests)",
    "arch": {"source": "timm", "name": "test_resnet", "kwargs": {}},
    "feature": {"dim": 96, "layer": "global-average-pooled last stage", "pool": "head"},
    "preprocess": {"resize": 72, "crop": 64, "interpolation": "bicubic"},
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory, shipped_wnids):
    """IN-1K (5 classes, 6 train + 2 val) and IN-21K (15 concepts, 8 images) trees; five
    levels of three concepts in the authors' pkl and our CSV; splits drawn by cog.concepts.splits in
    the authors' pickle format and our CSV."""
    synthetic = pytest.importorskip(
        "cog.features.synthetic", reason="cog.features.synthetic not landed yet"
    )
    splits_mod = pytest.importorskip(
        "cog.concepts.splits", reason="cog.concepts.splits not landed yet"
    )
    tmp = tmp_path_factory.mktemp("smoke")
    seen, pool = shipped_wnids
    unseen = [w for w in pool if w not in seen]
    seen, unseen = seen[:5], unseen[:: len(unseen) // 15][:15]
    in1k = synthetic.make_imagenet1k(tmp / "in1k", seen, n_train=6, n_val=2)
    in21k = synthetic.make_imagenet21k(tmp / "in21k", unseen, n_per_class=8)
    levels = [sorted(unseen[3 * k : 3 * k + 3]) for k in range(5)]
    pkl = tmp / "authors" / "cog_levels_mapping_file.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps(levels))
    csv = tmp / "ours" / "levels.csv"
    csv.parent.mkdir()
    pd.DataFrame(
        [(w, k + 1) for k, lv in enumerate(levels) for w in lv], columns=["wnid", "level"]
    ).to_csv(csv, index=False)
    result = splits_mod.build_splits(in21k, csv, n_test=2, min_train=6, max_train=6, progress=False)
    # cog.concepts.splits writes the authors' pickle (numpy arrays of paths) and our CSV
    splits_mod.write_splits(result, tmp / "ours")
    (tmp / "authors" / "cog_concepts_split_file.pkl").write_bytes(
        (tmp / "ours" / "cog_concepts_split_file.pkl").read_bytes()
    )
    return tmp, in1k, in21k


@pytest.fixture
def smoke(trees, tmp_path, monkeypatch):
    pytest.importorskip("cog.features.extract", reason="cog.features.extract not landed yet")
    zoo = pytest.importorskip("cog.zoo", reason="cog.zoo not landed yet")
    import timm
    import torch

    tmp, in1k, in21k = trees
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    # "trained" weights: a saved state dict standing in for a real checkpoint
    weights = tmp_path / "smoke_test_resnet.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    zoo.register_card({**SMOKE_CARD, "weights": [{"path": str(weights)}]})
    common = [
        "--in1k-root",
        str(in1k),
        "--imagenet-root",
        str(in21k),
        "--cache-dir",
        str(tmp_path / "features"),
        "--device",
        "cpu",
        "--quiet",
        "--workers",
        "0",
    ]
    return tmp, common, weights


def test_smoke_cog_eval_on_generated_trees(smoke, tmp_path, capsys, monkeypatch):
    tmp, common, weights = smoke
    out = tmp_path / "results"
    authors = [
        "--levels",
        str(tmp / "authors" / "cog_levels_mapping_file.pkl"),
        "--splits",
        str(tmp / "authors" / "cog_concepts_split_file.pkl"),
    ]
    args = [SMOKE_MODEL, *common, *authors, "--out", str(out), "--seeds", "22,37"]
    code = main([*args, "--few-shot", "--shots", "1,2", "--random-init"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "RANDOM-INIT" in captured.out and "cog_l5" in captured.out

    model = f"{SMOKE_MODEL}+random-init"
    datasets = ["in1k", *(f"cog_l{k}" for k in range(1, 6))]
    runs = out / "runs" / model
    assert sorted(p.name for p in runs.glob("*.json")) == sorted(
        f"{d}_{s}_fast.json" for d in datasets for s in ("all", "few-shot_n1", "few-shot_n2")
    )
    lb = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    assert list(lb.columns) == list(COLUMNS) and set(lb.model) == {model}
    assert len(lb) == 6 * 9 and not lb.duplicated(["dataset", "setting", "n_shot", "metric"]).any()
    assert set(lb.group) == {"local"}
    probe_rows = lb[lb.metric.isin(["top1", "top5"])]
    assert set(probe_rows.seeds) == {"22;37"} and set(probe_rows.protocol) == {"fast"}
    assert ((lb.metric != "top1") | lb["mean"].between(0, 100)).all()
    rec = json.loads((runs / "cog_l3_all_fast.json").read_text())
    assert rec["data"]["train"]["n_images"] == 18 and rec["data"]["test"]["n_images"] == 6
    assert rec["data"]["train"]["n_classes"] == 3 and rec["weights_sha256"] == "random-init"
    assert rec["data"]["splits"]["path"].endswith("cog_concepts_split_file.pkl")
    in1k = json.loads((runs / "in1k_all_fast.json").read_text())
    assert in1k["data"]["train"]["n_images"] == 30 and in1k["data"]["test"]["n_images"] == 10
    assert in1k["card"]["name"] == SMOKE_MODEL and in1k["data"]["train"]["feature_dim"] == 96

    # our CSV levels and cog.concepts.splits' CSV describe the same data: same caches, same scores
    ours = [
        "--levels",
        str(tmp / "ours" / "levels.csv"),
        "--splits",
        str(tmp / "ours" / "cog_concepts_split_file.csv"),
    ]
    out2 = tmp_path / "results_ours"
    code = main(
        [
            SMOKE_MODEL,
            *common,
            *ours,
            "--out",
            str(out2),
            "--seeds",
            "22,37",
            "--datasets",
            "cog_l1,cog_l5",
            "--random-init",
        ]
    )
    assert code == 0, capsys.readouterr().err
    lb2 = pd.read_csv(out2 / "leaderboard.csv", keep_default_na=False)
    assert sorted(set(lb2.dataset)) == ["cog_l1", "cog_l5"]
    key = ["dataset", "setting", "n_shot", "metric"]
    merged = lb2.merge(lb, on=key, suffixes=("", "_authors"))
    assert len(merged) == len(lb2) == 2 * 5
    assert (merged["values"] == merged["values_authors"]).all()
    rec2 = json.loads((out2 / "runs" / model / "cog_l1_all_fast.json").read_text())
    assert (
        rec2["data"]["train"]["images_sha256"]
        == json.loads((runs / "cog_l1_all_fast.json").read_text())["data"]["train"]["images_sha256"]
    )

    # bad inputs on the real stack: exit 2, leaderboard untouched
    before = (out / "leaderboard.csv").read_bytes()
    assert main(["no_such_model", *common, *authors, "--out", str(out), "--random-init"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert main([*args, "--random-init", "--few-shot", "--shots", "6"]) == 2
    assert "fewer than 6 training images outside the 20% validation" in capsys.readouterr().err
    assert (out / "leaderboard.csv").read_bytes() == before
    # random-init features are cached apart: trained weights extract their own caches and
    # never meet (or need to replace) the random ones
    cache = Path(common[common.index("--cache-dir") + 1])
    random_cache = cache / model / "cog_l1_train.h5"
    stamp = random_cache.stat().st_mtime_ns
    assert main([*args, "--datasets", "cog_l1"]) == 0
    assert (cache / SMOKE_MODEL / "cog_l1_train.h5").is_file()
    assert random_cache.stat().st_mtime_ns == stamp
    lb3 = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    trained = lb3[lb3.model == SMOKE_MODEL]
    assert len(trained) == 5 and set(trained.dataset) == {"cog_l1"}
    rand = lb3[lb3.model == model].reset_index(drop=True)
    pd.testing.assert_frame_equal(rand, lb.reset_index(drop=True))
    rec3 = json.loads((out / "runs" / SMOKE_MODEL / "cog_l1_all_fast.json").read_text())
    assert rec3["random_init"] is False and rec3["weights_sha256"] == sha256_file(weights)
    assert rec3["checkpoint_load"] in ("weights_only", "safetensors")  # never full unpickling

    # finished, with the weights on disk: caches and runs are reused, no model is built
    import cog.zoo

    def no_load(*a, **k):
        raise AssertionError("the model was loaded for complete caches")

    with monkeypatch.context() as m:
        m.setattr(cog.zoo, "load", no_load)
        assert main([*args, "--datasets", "cog_l1"]) == 0
    assert "1 reused" in capsys.readouterr().out
    # float32 features are another cache setting: refused, then re-extracted and re-run
    assert main([*args, "--datasets", "cog_l1", "--dtype", "float32"]) == 2
    assert "--overwrite-features" in capsys.readouterr().err
    f32 = [*args, "--datasets", "cog_l1", "--dtype", "float32", "--overwrite-features"]
    assert main(f32) == 0
    assert "1 written" in capsys.readouterr().out
    rec4 = json.loads((out / "runs" / SMOKE_MODEL / "cog_l1_all_fast.json").read_text())
    assert rec4["data"]["train"]["dtype"] == "float32"
    assert rec4["inputs"]["features_dtype"] == "float32"


def test_reference_protocol_rows_and_files(prepared, monkeypatch):
    import cog.protocols.probe

    real = cog.protocols.probe.LogRegProbe

    def short_reference(**kw):  # the authors' recipe, shortened: 30 x 100 epochs is minutes
        assert kw["protocol"] == "reference"
        return real(**kw, n_trials=2, epochs=3, batch_size=8)

    monkeypatch.setattr(cog.protocols.probe, "LogRegProbe", short_reference)
    args = [*prepared.args, "--random-init", "--datasets", "cog_l2", "--seeds", "22"]
    assert main([*args, "--protocol", "reference", "--no-knn"]) == 0
    runs = prepared.out / "runs" / "tiny-cnn+random-init"
    assert [p.name for p in runs.glob("*.json")] == ["cog_l2_all_reference.json"]
    rec = json.loads((runs / "cog_l2_all_reference.json").read_text())
    assert set(rec["probe"]["per_seed"]["22"]["best_params"]) >= {"lr", "wd"}
    lb = pd.read_csv(prepared.out / "leaderboard.csv", keep_default_na=False)
    assert lb[["metric", "protocol"]].values.tolist() == [
        ["top1", "reference"],
        ["top5", "reference"],
        ["alignment", "-"],
        ["uniformity", "-"],
    ]


def test_undecodable_images_are_reported(prepared, capsys):
    bad = [("n10000002/n10000002_9.JPEG", "cannot identify image file")]
    cp = prepared.cache_path("tiny-cnn", "cog_l1", "train", prepared.cache)
    write_cache(cp, "cog_l1", "train", failed=bad)
    assert main([*prepared.args, "--random-init", "--datasets", "cog_l1", "--no-knn"]) == 0
    assert "cog_l1_train.h5: 1 image(s) could not be decoded" in capsys.readouterr().err
    rec = json.loads(
        (prepared.out / "runs" / "tiny-cnn+random-init" / "cog_l1_all_fast.json").read_text()
    )
    assert rec["data"]["train"]["failed_images"] == 1
    assert rec["data"]["train"]["failed_examples"] == [list(bad[0])]
    assert rec["data"]["test"]["failed_images"] == 0


# ---------------------------------------------------------------- several models and shards


def test_select_models_names_aliases_patterns_groups_and_files(tmp_path):
    from cog import zoo
    from cog.bench.batch import select_models

    dino = select_models(["dino_*"])
    assert dino == ["dino_resnet50", "dino_vitb16", "dino_vits16"]
    assert select_models(["s-DINO", "dino_resnet50"]) == ["dino_resnet50"]  # alias, once
    assert select_models([], group="d") == zoo.list_models("d") and len(zoo.list_models("d"))
    f = tmp_path / "models.txt"
    f.write_text("# paper models\ndino_vits16\n\n  dino_r50  # an alias\n")
    assert select_models(["dino_vitb16"], file=f) == ["dino_vitb16", "dino_vits16", "dino_resnet50"]
    with pytest.raises(CogError, match="matches no model"):
        select_models(["nothing_like_this_*"])
    with pytest.raises(CogError, match=r"unknown model 'dino_vitz16'.*did you mean"):
        select_models(["dino_vitz16"])
    with pytest.raises(CogError, match=r"--models-file .*no such file"):
        select_models([], file=tmp_path / "nope.txt")


def test_run_list_shards_cover_it_once():
    from cog.bench.batch import Unit, parse_shard, run_list, shard, shard_from_env

    cfg = EvalConfig(model="", datasets=("in1k", "cog_l1"), few_shot=True, shots=(2, 1))
    units = run_list(["a", "b"], cfg)
    assert units[:3] == [
        Unit("a", "in1k", "all", 0),
        Unit("a", "in1k", "few-shot", 1),
        Unit("a", "in1k", "few-shot", 2),
    ]
    assert len(units) == 2 * 2 * 3
    for n in (1, 3, 5, 13):
        parts = [shard(units, i, n) for i in range(n)]
        assert [u for p in parts for u in p] == units
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(CogError, match="--shard"):
            parse_shard(bad)
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "4"}) == (1, 4, "RANK/WORLD_SIZE")
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}
    assert shard_from_env(slurm)[:2] == (2, 3)  # --array=1-3
    with pytest.raises(CogError, match="RANK/WORLD_SIZE = 4/4"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})


@pytest.fixture
def two_models(prepared, monkeypatch):
    """tiny-cnn, tiny-bad (NaN features: fails in validation) and tiny-two in the stand-in zoo."""
    import dataclasses

    import cog.features.ensure
    import cog.zoo
    from cog.features.synthetic import TinyCard

    names = ["tiny-bad", "tiny-cnn", "tiny-two"]
    real_ensure = cog.features.ensure.ensure_features

    def get_card(name):
        if name not in names:
            raise CogError(f"unknown model {name!r}")
        return dataclasses.replace(TinyCard(), name=name)

    prepared.world_sizes = []

    def ensure_features(model, dataset, split, source, **kw):
        import os

        prepared.world_sizes.append(os.environ.get("WORLD_SIZE"))
        p = prepared.cache_path(model, dataset, split, source.cache_dir)
        if not p.exists():
            write_cache(p, dataset, split)
            import h5py

            with h5py.File(p, "a") as f:
                f.attrs["model"] = model
                if model == "tiny-bad":
                    f["features"][0, 0] = np.nan
        return real_ensure(model, dataset, split, source, **kw)

    monkeypatch.setattr(cog.zoo, "get_card", get_card)
    monkeypatch.setattr(cog.zoo, "list_models", lambda group=None: list(names))
    monkeypatch.setattr(cog.features.ensure, "ensure_features", ensure_features)
    return prepared


def test_several_models_go_on_past_a_failure(two_models, capsys):
    p = two_models
    args = [*p.args[1:], "--random-init", "--datasets", "cog_l1", "--no-knn", "--no-report"]
    code = main(["tiny-*", *args])
    out, err = capsys.readouterr()
    assert code == 1
    assert "error: tiny-bad:" in err and "NaN or inf" in err
    assert "2 model(s) ok, 1 failed (tiny-bad+random-init)" in out
    table = out[out.index("model ") :]
    assert re.search(r"tiny-bad\+random-init\s+failed\s+0\s+-\s+-\s+\S*cog_l1_train", table)
    assert re.search(r"tiny-two\+random-init\s+ok\s+1\s+-\s+\d+\.\d\d", table)
    summary = json.loads((p.out / "eval_summary.json").read_text())
    assert summary["failed"] == ["tiny-bad+random-init"]
    assert summary["selected"] == ["tiny-bad", "tiny-cnn", "tiny-two"]
    bad = json.loads((p.out / "runs" / "tiny-bad+random-init" / "failed.json").read_text())
    assert "NaN or inf" in bad["error"] and bad["runs"][0]["dataset"] == "cog_l1"
    lb = pd.read_csv(p.out / "leaderboard.csv", keep_default_na=False)
    assert sorted(set(lb.model)) == ["tiny-cnn+random-init", "tiny-two+random-init"]
    # nothing fails any more: exit 0, failed.json gone; the report runs by default
    (p.cache / "tiny-bad").rename(p.tmp / "moved")
    import h5py

    for f in (p.tmp / "moved").glob("*.h5"):
        with h5py.File(f, "a") as h:
            h["features"][0, 0] = 1.0
        p.cache.joinpath("tiny-bad").mkdir(exist_ok=True)
        f.rename(p.cache / "tiny-bad" / f.name)
    code = main(["tiny-bad", "tiny-cnn", *args[:-1], "--report"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not (p.out / "runs" / "tiny-bad+random-init" / "failed.json").exists()
    assert "cog-report on" in out and (p.out / "README.md").is_file()


def test_shards_split_the_work_and_fill_the_leaderboard(two_models, capsys):
    p = two_models
    args = [
        "tiny-cnn",
        "tiny-two",
        *p.args[1:],
        "--random-init",
        "--no-knn",
        "--few-shot",
        "--shots",
        "1",
    ]
    one = p.tmp / "one"
    assert main([*args, "--out", str(one)]) == 0
    capsys.readouterr()
    for i in range(3):
        assert main([*args, "--shard", f"{i}/3"]) == 0
        assert f"shard {i}/3 (--shard): 4 of 12 runs" in capsys.readouterr().out
    assert sorted(f.name for f in p.out.glob("eval_summary*")) == [
        f"eval_summary.shard-{i}-of-3.json" for i in range(3)
    ]
    drop = ["updated"]
    a = pd.read_csv(one / "leaderboard.csv", keep_default_na=False).drop(columns=drop)
    b = pd.read_csv(p.out / "leaderboard.csv", keep_default_na=False).drop(columns=drop)
    pd.testing.assert_frame_equal(a, b)


def _cli_env(monkeypatch) -> dict:
    import os

    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # submitit's local jobs inherit it
    return env


@pytest.mark.slow
def test_three_shard_processes_and_a_submitit_job_match_one_process(
    smoke, tmp_path, capsys, monkeypatch
):
    import subprocess
    import sys

    from cog import zoo

    tmp, common, weights = smoke
    zoo.register_card(
        {**SMOKE_CARD, "name": "smoke_test_resnet_b", "weights": [{"path": str(weights)}]}
    )
    env = _cli_env(monkeypatch)
    lists = [
        "--levels",
        str(tmp / "authors" / "cog_levels_mapping_file.pkl"),
        "--splits",
        str(tmp / "authors" / "cog_concepts_split_file.pkl"),
    ]
    args = [
        "smoke_test_resnet*",
        *common,
        *lists,
        "--seeds",
        "22",
        "--datasets",
        "in1k,cog_l1",
        "--few-shot",
        "--shots",
        "1",
        "--no-knn",
    ]
    shards = tmp_path / "shards"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cog.cli.eval",
                *args,
                "--out",
                str(shards),
                "--shard",
                f"{i}/3",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert [
        f"shard {i}/3 (--shard): {n} of 8 runs" in log
        for i, (n, log) in enumerate(zip((2, 3, 3), logs, strict=True))
    ] == [True] * 3
    one = tmp_path / "one"
    assert main([*args, "--out", str(one)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    a = pd.read_csv(one / "leaderboard.csv", keep_default_na=False).drop(columns=["updated"])
    b = pd.read_csv(shards / "leaderboard.csv", keep_default_na=False).drop(columns=["updated"])
    assert len(a) == 2 * 2 * (4 + 2)  # models x datasets x (all: 4 metrics w/o kNN; N=1: 2)
    pd.testing.assert_frame_equal(a, b)

    # one submitit job (local executor) per model, waited for; then nothing left to submit
    sub = tmp_path / "submitted"
    job_args = [
        "smoke_test_resnet",
        *args[1:],
        "--out",
        str(sub),
        "--submit",
        "local",
        "--time",
        "10",
        "--no-report",
    ]
    assert main(job_args) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "smoke_test_resnet: job " in out and "1 model(s) ok, 0 failed" in out
    ids = json.loads((sub / "submitted.json").read_text())["jobs"]
    assert list(ids) == ["smoke_test_resnet"] and (sub / "submitit").is_dir()
    c = pd.read_csv(sub / "leaderboard.csv", keep_default_na=False).drop(columns=["updated"])
    pd.testing.assert_frame_equal(c, a[a.model == "smoke_test_resnet"].reset_index(drop=True))
    assert main(job_args) == 0
    assert "every run is finished; not submitted" in capsys.readouterr().out


def test_slurm_array_environment_picks_the_shard(two_models, capsys, monkeypatch):
    import os

    p = two_models
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-3: this is shard 1 of 3
    monkeypatch.setenv("WORLD_SIZE", "3")
    args = ["tiny-cnn", "tiny-two", *p.args[1:], "--random-init", "--no-knn", "--report"]
    assert main([*args, "--datasets", "cog_l1,cog_l2"]) == 0
    out = capsys.readouterr().out
    assert "shard 1/3 (SLURM_ARRAY_TASK_ID/COUNT): 1 of 4 runs" in out
    assert "cog-report skipped in a shard" in out
    lb = pd.read_csv(p.out / "leaderboard.csv", keep_default_na=False)
    # runs: (cnn, l1), (cnn, l2), (two, l1), (two, l2); shard 1 of 3 holds [1:2]
    assert set(zip(lb.model, lb.dataset, strict=True)) == {("tiny-cnn+random-init", "cog_l2")}
    assert (p.out / "eval_summary.shard-1-of-3.json").is_file()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.setenv("RANK", "0")  # torchrun: shard 0 of WORLD_SIZE, extracting alone
    assert main([*args, "--datasets", "cog_l1,cog_l2"]) == 0
    assert "shard 0/3 (RANK/WORLD_SIZE): 1 of 4 runs" in capsys.readouterr().out
    assert os.environ["WORLD_SIZE"] == "3"  # set to 1 only while the shard ran
    assert set(p.world_sizes) == {"1"}  # the extractor never joined a torchrun group


def test_a_failed_job_is_reported_by_its_error_not_its_log_path():
    """submitit ends a failed job's message with log paths; the summary names the error."""
    from cog.bench.submit import job_error

    text = (
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "TypeError: run() got an unexpected keyword argument 'progress'\n\n"
        "----------------------\nYou can check full logs with 'job.stderr(0)' and "
        "'job.stdout(0)'or at paths:\n  - /s/5224_0_log.err\n  - /s/5224_0_log.out\n"
    )
    msg = job_error(RuntimeError(text))
    assert msg == (
        "TypeError: run() got an unexpected keyword argument 'progress' (log: /s/5224_0_log.err)"
    )
    # a time limit is the last line, even after an error the job caught earlier
    timeout = (
        "Job 7 (task: 0) with path /s/7_0_result.pkl\nhas not produced any output (state: "
        "TIMEOUT)\nError stream produced:\n----------------------------------------\n"
        "torch.OutOfMemoryError: CUDA out of memory (caught: batch halved)\n"
        "slurmstepd: error: *** JOB 7 ON node1 CANCELLED DUE TO TIME LIMIT ***\n"
    )
    assert job_error(RuntimeError(timeout)).endswith("DUE TO TIME LIMIT ***")
    assert job_error(RuntimeError("node failure")) == "node failure"
    assert job_error(RuntimeError("trace\nValueError: bad\n--------")) == "ValueError: bad"
    spaced = text.replace("/s/", "/my jobs/")
    assert job_error(RuntimeError(spaced)).endswith("(log: /my jobs/5224_0_log.err)")
    assert job_error(RuntimeError("")) == "RuntimeError('')"

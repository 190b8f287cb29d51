"""cog-eval: argument parsing, input validation, run records, and full smoke runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cog import CogError
from cog.cli.eval import config_from_args, main, parser
from cog.evaluate import (
    EvalConfig,
    Split,
    check_finite,
    check_pair,
    check_shots,
    check_weights,
    leaderboard_rows,
    resolve_datasets,
    run_name,
    summary_table,
)
from cog.leaderboard import COLUMNS

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
    cfg = EvalConfig(model="m", levels=path)
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
        failed=0,
        features=FakeFeatures(X, [f"p{i}.JPEG" for i in range(len(labels))]),
    )


def test_class_sets_must_match():
    check_pair(_split([0, 1, 2]), _split([0, 1, 2], split="test"))
    with pytest.raises(CogError, match=r"only in train: n03; only in test: n04"):
        check_pair(_split([0, 1, 2]), _split([0, 1, 2], ("n01", "n02", "n04"), "test"))
    with pytest.raises(CogError, match=r"cog_l1_test\.h5: 1 class\(es\) have no test image \(n02"):
        check_pair(_split([0, 1, 2]), _split([0, 2, 2], split="test"))


def test_too_few_images_for_n():
    train = _split([0, 0, 1, 1, 2, 2, 2])
    check_shots(train, [1, 2])
    with pytest.raises(CogError, match=r"2 class\(es\) have fewer than 3.*n01: 2.*drop N=3"):
        check_shots(train, [1, 3])


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

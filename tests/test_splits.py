"""cog-build-splits: seeded per-concept draws in the authors' pickle format and as CSV."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from cog import CogError
from cog.cli.build_splits import main
from cog.concepts.splits import (
    MAX_TRAIN,
    MIN_TRAIN,
    N_TEST,
    SPLIT_CSV,
    SPLIT_FILE,
    SPLIT_JSON,
    build_splits,
    read_split_file,
    write_splits,
)
from cog.features.synthetic import make_imagenet21k

WNIDS = ["n00004475", "n00006484", "n00007846", "n00015388"]
SMALL = dict(n_test=3, min_train=4, max_train=6, progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # 12 and 9 images: enough; 8: exactly 3 + 4 + 1; 5: too few for 3 test + 4 train
    return make_imagenet21k(tmp_path_factory.mktemp("in21k"), WNIDS, [12, 9, 8, 5])


def test_protocol_defaults():
    assert (N_TEST, MIN_TRAIN, MAX_TRAIN) == (50, 732, 1300)


def test_draws_sizes_disjoint_sorted_and_seeded(root):
    levels = [WNIDS[:2], WNIDS[2:3]]
    res = build_splits(root, levels, **SMALL)
    assert sorted(res.splits) == sorted(WNIDS[:3]) and not res.excluded
    for w, s in res.splits.items():
        assert len(s["test"]) == 3
        assert len(s["train"]) == min(6, len(list((root / w).iterdir())) - 3)
        assert not set(s["train"]) & set(s["test"])
        assert list(s["train"]) == sorted(s["train"]) and all(
            p.startswith(f"{w}/{w}_") for p in s["train"]
        )
    again = build_splits(root, levels, **SMALL)
    other = build_splits(root, levels, seed=1, **SMALL)
    same = all(np.array_equal(res.splits[w]["test"], again.splits[w]["test"]) for w in res.splits)
    assert same
    assert any(
        not np.array_equal(res.splits[w]["test"], other.splits[w]["test"]) for w in res.splits
    )
    # each concept's draw is its own: dropping a concept changes no other concept
    alone = build_splits(root, [[WNIDS[0]]], **SMALL)
    assert np.array_equal(alone.splits[WNIDS[0]]["train"], res.splits[WNIDS[0]]["train"])


def test_too_small_is_an_error_or_explicitly_excluded(root):
    with pytest.raises(CogError, match=f"{WNIDS[3]} \\(5 images\\)"):
        build_splits(root, [WNIDS], **SMALL)
    res = build_splits(root, [WNIDS], exclude_small=True, **SMALL)
    assert res.excluded == {WNIDS[3]: 5} and WNIDS[3] not in res.splits


def test_written_files_round_trip(root, tmp_path):
    res = build_splits(root, [WNIDS[:2], WNIDS[2:]], exclude_small=True, **SMALL)
    pkl = write_splits(res, tmp_path)
    assert pkl.name == SPLIT_FILE
    with open(pkl, "rb") as f:
        raw = pickle.load(f)  # the authors' format: wnid -> {"train": array, "test": array}
    assert isinstance(raw[WNIDS[0]]["train"], np.ndarray)
    from_pkl = read_split_file(pkl)
    from_csv = read_split_file(tmp_path / SPLIT_CSV)
    assert from_pkl == from_csv
    report = json.loads((tmp_path / SPLIT_JSON).read_text())
    assert report["excluded_too_small"] == {WNIDS[3]: 5}
    assert report["images"]["test"] == 9
    assert read_split_file(tmp_path) == from_pkl  # a folder works too


def test_read_split_file_errors(tmp_path):
    with pytest.raises(CogError, match="cog-build-splits"):
        read_split_file(tmp_path / "missing.pkl")
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"n00004475": {"train": []}}))
    with pytest.raises(CogError, match="test"):
        read_split_file(tmp_path / "bad.pkl")


def test_cli(root, tmp_path, capsys):
    levels = tmp_path / "levels.pkl"
    levels.write_bytes(pickle.dumps([WNIDS]))
    args = [
        "--imagenet-root",
        str(root),
        "--levels",
        str(levels),
        "--out",
        str(tmp_path / "o"),
        "--n-test",
        "3",
        "--min-train",
        "4",
        "--max-train",
        "6",
    ]
    assert main(args) == 2
    assert WNIDS[3] in capsys.readouterr().err
    assert main([*args, "--exclude-small"]) == 0
    assert "EXCLUDED 1" in capsys.readouterr().err
    assert len(read_split_file(tmp_path / "o" / SPLIT_FILE)) == 3

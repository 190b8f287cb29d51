"""A full disk (RLIMIT_FSIZE) while writing features, levels, splits and the leaderboard,
and the other expected failures: one line, exit status 2, the previous output intact and
nothing half-written left that a later run could take as valid."""

from __future__ import annotations

import errno
import os
import types

import numpy as np
import pandas as pd
import pytest
from faultlib import file_size_limit, leaderboard_row, snapshot

from cog.bench.leaderboard import read_leaderboard, update_leaderboard
from cog.cli import friendly_errors, system_error_line
from cog.concepts.levels import LevelsConfig
from cog.concepts.levels_report import write_levels
from cog.concepts.splits import build_splits, write_splits
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.synthetic import make_imagenet21k, tiny_backbone

SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)


def _one_line_efbig(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("error: ") and "File too large" in err and "ulimit -f" in err
    return err


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_imagenet21k(tmp_path_factory.mktemp("disk"), ["n00000001", "n00000002"], 4)


def test_features_on_a_full_disk(tree, tmp_path, capsys):
    images = image_folder(tree, name="t", split="train")
    out = tmp_path / "f.h5"
    with file_size_limit(3000):
        status = friendly_errors(lambda: extract(tiny_backbone(), images, out, **SMALL))()
    assert status == 2
    _one_line_efbig(capsys)
    assert not out.exists() and not list(tmp_path.glob(".f.h5.tmp-*"))
    parts = out.with_name("f.h5.parts")
    assert not list(parts.glob("seg_*.h5")) and not list(parts.glob(".seg_*"))
    extract(tiny_backbone(), images, out, **SMALL)  # space again: the run completes
    with open_features(out) as fs:
        assert len(fs) == 8 and np.isfinite(fs.load()).all()


def test_splits_on_a_full_disk_keep_the_previous_files(tree, tmp_path, capsys):
    res = build_splits(tree, [["n00000001", "n00000002"]], n_test=1, min_train=1, progress=False)
    out = tmp_path / "splits"
    write_splits(res, out)
    before = snapshot(out)
    res.settings["seed"] = 1  # a different report: the new set differs from the old
    with file_size_limit(1000):
        assert friendly_errors(lambda: write_splits(res, out))() == 2
    _one_line_efbig(capsys)
    assert snapshot(out) == before  # all three files old, no temporary left


def test_levels_on_a_full_disk_keep_the_previous_folder(tmp_path, capsys):
    out = tmp_path / "levels"
    out.mkdir()
    (out / "levels.csv").write_text("wnid,level\nn00000001,1\n")
    before = snapshot(tmp_path)
    big = pd.DataFrame({"wnid": [f"n{i:08d}" for i in range(5000)], "level": 1})
    result = types.SimpleNamespace(  # the first file written already exceeds the limit
        config=LevelsConfig(), levels=[list(big.wnid)], table=big, candidates=big
    )
    with file_size_limit(20_000):
        assert friendly_errors(lambda: write_levels(result, out))() == 2
    _one_line_efbig(capsys)
    assert snapshot(tmp_path) == before


def test_leaderboard_on_a_full_disk(tmp_path, capsys):
    path = tmp_path / "leaderboard.csv"
    update_leaderboard(path, [leaderboard_row(f"m{i}", "cog_l1", 70.0) for i in range(5)])
    before = path.read_bytes()
    new = [leaderboard_row("new", "cog_l1", 70.0)]
    with file_size_limit(len(before)):
        assert friendly_errors(lambda: update_leaderboard(path, new))() == 2
    _one_line_efbig(capsys)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name != path.name] == [".leaderboard.csv.lock"]
    update_leaderboard(path, new)  # the leftover lock file is harmless
    assert "new" in set(read_leaderboard(path).model)


@pytest.mark.parametrize(
    "code,words",
    [
        (errno.ENOSPC, "No space left on device; free space"),
        (errno.EACCES, "Permission denied; check the file's permissions"),
        (errno.EROFS, "Read-only file system; the file system is read-only; write elsewhere"),
        (errno.ENOENT, "No such file or directory; check the path"),
    ],
)
def test_expected_system_errors_are_one_line(code, words, tmp_path, capsys):
    def fail():
        raise OSError(code, os.strerror(code), str(tmp_path / "out.h5"))

    assert friendly_errors(fail)() == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'out.h5'}: {words}")
    h5_style = OSError(f"Unable to write (file write failed: filename = '/x/f.h5', errno = {code})")
    assert system_error_line(h5_style).startswith("/x/f.h5: ")
    assert system_error_line(ValueError("bug")) is None


def test_read_only_output_folder(tree, tmp_path, capsys):
    """A real permission failure (skipped as root, who may write anywhere)."""
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    images = image_folder(tree, name="t", split="train")
    status = friendly_errors(lambda: extract(tiny_backbone(), images, ro / "f.h5", **SMALL))()
    assert status == 2 and "Permission denied" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_missing_root_is_one_line(tmp_path, capsys):
    from cog.cli.extract import main

    assert main(["sup_resnet50", "--images", str(tmp_path / "nope"), "--out", "x.h5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: no such folder" in err

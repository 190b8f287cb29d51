"""Damaged feature caches are errors naming the file and the fix, never reused: flipped
bits in the features or the lists, truncation, and on-demand `cog-extract --verify`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cog import CogError
from cog.cli.extract import main as extract_main
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.integrity import ATTR
from cog.features.synthetic import make_imagenet21k, tiny_backbone

SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    root = make_imagenet21k(tmp / "tree", ["n00000001", "n00000002"], 5)
    images = image_folder(root, name="t", split="train")
    out = extract(tiny_backbone(), images, tmp / "good.h5", **SMALL)
    return images, out, out.read_bytes()


def _offset(path, name: str) -> int:
    with h5py.File(path, "r") as h5:
        ds = h5[name]
        return ds.id.get_chunk_info(0).byte_offset if ds.chunks else ds.id.get_offset()


def _copy(made, tmp_path, name="c.h5"):
    p = tmp_path / name
    p.write_bytes(made[2])
    return p


def test_sealed_cache_opens_and_verifies(made, tmp_path):
    p = _copy(made, tmp_path)
    with h5py.File(p, "r") as h5:
        assert set(json.loads(h5.attrs[ATTR])) == set(h5)  # every dataset has its digest
    with open_features(p) as fs:
        assert len(fs) == 10
    assert extract_main(["--verify", str(p)]) == 0


@pytest.mark.parametrize("dataset,nbytes", [("features", 400), ("labels", 1)])
def test_flipped_bits_are_refused_everywhere(made, tmp_path, capsys, dataset, nbytes):
    p = _copy(made, tmp_path)
    at = _offset(p, dataset)
    with open(p, "r+b") as f:
        f.seek(at)
        block = bytearray(f.read(nbytes))
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in block))
    with pytest.raises(CogError, match=rf"{p}: dataset '{dataset}' .*delete {p}"):
        open_features(p)  # cog-eval and cog-tldr open caches this way
    with pytest.raises(CogError, match=rf"{p}: dataset '{dataset}'"):
        extract(tiny_backbone(), made[0], p, **SMALL)  # same settings: reuse is refused
    assert extract_main(["--verify", str(made[1]), str(p)]) == 2
    out = capsys.readouterr()
    assert f"ok: {made[1]}" in out.out and f"error: {p}: dataset '{dataset}'" in out.err


def test_truncated_cache_is_refused(made, tmp_path):
    p = tmp_path / "t.h5"
    p.write_bytes(made[2][: len(made[2]) // 2])
    with pytest.raises(CogError, match=rf"{p}: not a readable HDF5 file"):
        open_features(p)
    assert extract_main(["--verify", str(p)]) == 2


def test_cache_without_checksums_warns_and_fails_verify(made, tmp_path, capsys):
    p = _copy(made, tmp_path)
    with h5py.File(p, "a") as h5:
        del h5.attrs[ATTR]
    with pytest.warns(UserWarning, match="holds no checksums"), open_features(p) as fs:
        assert np.isfinite(fs.load()).all()
    assert extract_main(["--verify", str(p)]) == 2
    assert "holds no checksums" in capsys.readouterr().err

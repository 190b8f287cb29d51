"""Damaged image trees and odd image files: listing and decoding never crash and never drop
an entry silently; high-bit-depth pixels are scaled, not clipped; huge images stay bounded."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cog.concepts.splits import build_splits
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import ImageTooLarge, decode_image, image_folder
from cog.features.synthetic import make_imagenet21k, tiny_backbone

SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)
BAD_NAME = os.fsdecode(b"caf\xe9.JPEG")  # Latin-1 bytes: not UTF-8


def _damage(folder):
    """One of every entry kind that looks like an image but cannot be listed as one."""
    (folder / "loop.JPEG").symlink_to("loop.JPEG")
    (folder / "dangling.JPEG").symlink_to("missing.JPEG")
    (folder / "folder.JPEG").mkdir()
    (folder / BAD_NAME).write_bytes(next(folder.glob("n*.JPEG")).read_bytes())


@pytest.fixture
def tree(tmp_path):
    root = make_imagenet21k(tmp_path / "in21k", ["n00000001", "n00000002"], 4)
    _damage(root / "n00000001")
    (root / "n00000009").symlink_to("n00000009")  # a class-level loop
    return root


def test_listing_records_every_bad_entry_and_goes_on(tree, capsys):
    lst = image_folder(tree)
    assert lst.classes == ["n00000001", "n00000002"] and len(lst) == 8
    reasons = dict(lst.failed)
    assert set(reasons) == {
        "n00000001/loop.JPEG",
        "n00000001/dangling.JPEG",
        "n00000001/folder.JPEG",
        "n00000001/caf\\xe9.JPEG",  # stored losslessly as an escape
        "n00000009/",
    }
    assert "symbolic links" in reasons["n00000001/loop.JPEG"]
    assert "dangling" in reasons["n00000001/dangling.JPEG"]
    assert "folder" in reasons["n00000001/folder.JPEG"]
    assert "UTF-8" in reasons["n00000001/caf\\xe9.JPEG"]
    assert os.fsencode(BAD_NAME) == b"caf\xe9.JPEG"  # the escape maps back to these bytes
    assert "recorded as failed" in capsys.readouterr().err
    lst.sha256()  # no UnicodeEncodeError


def test_extraction_stores_listing_failures_in_failed_paths(tree, tmp_path):
    out = extract(
        tiny_backbone(), image_folder(tree, name="t", split="train"), tmp_path / "f.h5", **SMALL
    )
    with open_features(out) as fs:
        assert len(fs) == 8
        failed = dict(fs.failed)
    assert "n00000001/caf\\xe9.JPEG" in failed and "n00000009/" in failed
    assert len(failed) == 5


def test_build_splits_reports_them_too(tree, tmp_path):
    res = build_splits(tree, [["n00000001", "n00000002"]], n_test=1, min_train=1, progress=False)
    assert len(res.failed) == 4 and len(res.splits["n00000001"]["train"]) == 3


def test_unreadable_file_is_a_failed_image_not_a_crash(tmp_path):
    root = make_imagenet21k(tmp_path / "t", ["n00000001"], 2)
    victim = next((root / "n00000001").glob("*.JPEG"))
    if os.geteuid() == 0:  # root reads any file: an empty file is unreadable as an image
        victim.write_bytes(b"")
    else:
        victim.chmod(0)
    out = extract(tiny_backbone(), image_folder(root), tmp_path / "f.h5", **SMALL)
    with open_features(out) as fs:
        assert len(fs) == 1 and [p for p, _ in fs.failed] == [f"n00000001/{victim.name}"]


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path, mode):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (40, 50)).astype(np.uint16)
    if mode == "I;16":  # a 16-bit grey PNG
        path = tmp_path / "g16.png"
        Image.fromarray(a).save(path)
    else:  # a 32-bit integer TIFF holding 16-bit values
        path = tmp_path / "g32.tif"
        Image.fromarray(a.astype(np.int32)).save(path)
    assert Image.open(path).mode == mode
    rgb, note = decode_image(path)
    got = np.asarray(rgb)
    assert rgb.mode == "RGB" and "converted to RGB" in note
    assert np.array_equal(got[..., 0], (a >> 8).astype(np.uint8))
    assert np.array_equal(got[..., 0], got[..., 2])
    assert (got == 255).mean() < 0.01  # convert('RGB') would turn ~99.6% white


def test_float_image_is_scaled(tmp_path):
    a = np.linspace(0, 1, 30 * 20, dtype=np.float32).reshape(30, 20)
    Image.fromarray(a).save(tmp_path / "f.tif")
    got = np.asarray(decode_image(tmp_path / "f.tif")[0])[..., 0]
    assert np.array_equal(got, np.rint(a * 255).astype(np.uint8))


def test_pixel_limit_drafts_jpegs_and_fails_others(tmp_path, monkeypatch):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), np.uint8))
    big.save(tmp_path / "big.JPEG", quality=90)
    big.save(tmp_path / "big.png")
    img, note = decode_image(tmp_path / "big.JPEG", limit=100_000)  # 480k pixels
    assert img.size[0] * img.size[1] <= 100_000 and img.size == (200, 150)
    assert "over the pixel limit" in note
    with pytest.raises(ImageTooLarge, match="over the per-image limit"):
        decode_image(tmp_path / "big.png", limit=100_000)
    assert decode_image(tmp_path / "big.png")[0].size == (800, 600)  # default limit: 50 MP
    # through an extraction: the PNG is recorded as failed, the run goes on
    root = tmp_path / "tree" / "n00000001"
    root.mkdir(parents=True)
    for name in ("big.JPEG", "big.png"):
        (root / name).write_bytes((tmp_path / name).read_bytes())
    monkeypatch.setenv("COG_MAX_PIXELS", "100000")
    out = extract(tiny_backbone(), image_folder(tmp_path / "tree"), tmp_path / "f.h5", **SMALL)
    with open_features(out) as fs:
        assert fs.paths == ["n00000001/big.JPEG"]
        assert fs.failed[0][0] == "n00000001/big.png" and "ImageTooLarge" in fs.failed[0][1]
        assert "pixel limit" in dict(fs.repaired)["n00000001/big.JPEG"]


def test_pils_bomb_check_does_not_preempt_the_draft(tmp_path, monkeypatch):
    """PIL refuses images over twice its MAX_IMAGE_PIXELS before any draft; cog applies its
    own limit instead, so a huge JPEG is decoded at reduced size rather than refused."""
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), np.uint8))
    big.save(tmp_path / "big.JPEG", quality=90)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "big.JPEG")
    assert decode_image(tmp_path / "big.JPEG", limit=1_000_000)[0].size == (800, 600)
    img, note = decode_image(tmp_path / "big.JPEG", limit=130_000)
    assert img.size == (400, 300) and "1/2" in note
    assert Image.MAX_IMAGE_PIXELS == 100_000  # restored

"""Dataset layouts, class order and robust decoding on generated trees of real JPEG files."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from cog import CogError
from cog.concepts.splits import build_splits, write_splits
from cog.features.images import ImageList, dataset_images, decode_image, image_folder
from cog.features.synthetic import add_broken_files, make_imagenet1k, make_imagenet21k

WNIDS = ["n01443537", "n01440764", "n01484850"]


@pytest.fixture(scope="module")
def in1k(tmp_path_factory):
    return make_imagenet1k(tmp_path_factory.mktemp("in1k"), WNIDS, 4, 2, n_large=1)


def test_in1k_layout_order_and_labels(in1k):
    train = dataset_images("in1k", "train", in1k_root=in1k)
    assert train.classes == sorted(WNIDS)
    assert len(train) == 12 and train.name == "in1k" and train.split == "train"
    for p, y in zip(train.paths, train.labels, strict=True):
        assert p.startswith(f"train/{train.classes[y]}/")
        assert (in1k / p).is_file()
    # files sorted within each class, classes in wnid order
    assert train.paths == sorted(train.paths)
    assert list(train.labels) == sorted(train.labels)
    test = dataset_images("in1k", "test", in1k_root=in1k)
    assert len(test) == 6 and all(p.startswith("val/") for p in test.paths)
    assert test.classes == train.classes and test.split == "test"
    # realistic sizes really are on disk
    assert max(Image.open(in1k / p).size[0] for p in train.paths) >= 375


def test_in1k_errors(tmp_path, in1k):
    with pytest.raises(CogError, match="--in1k-root"):
        dataset_images("in1k", "train")
    with pytest.raises(CogError, match="unknown dataset"):
        dataset_images("in2k", "train", in1k_root=in1k)
    flat = tmp_path / "flat"
    (flat / "val").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(CogError, match="class folders"):
        dataset_images("in1k", "test", in1k_root=flat)
    (flat / "train" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "train" / "cats" / "a.JPEG")
    with pytest.raises(CogError, match="not wnids"):
        dataset_images("in1k", "train", in1k_root=flat)


def test_image_folder_any_classes(tmp_path):
    for c, n in (("zebra", 2), ("ant", 3)):
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    lst = image_folder(tmp_path)
    assert lst.classes == ["ant", "zebra"]
    assert list(lst.labels) == [0, 0, 0, 1, 1]
    assert lst.paths[0] == "ant/0.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CogError, match="empty"):
        image_folder(tmp_path)


def test_cog_levels_from_split_file(tmp_path):
    wnids = ["n00004475", "n00006484", "n00007846", "n00015388"]
    root = make_imagenet21k(tmp_path / "in21k", wnids, [9, 8, 10, 9])
    levels = [[wnids[2], wnids[0]], [wnids[1], wnids[3]]]
    lv_file = tmp_path / "levels.pkl"
    lv_file.write_bytes(pickle.dumps(levels))
    res = build_splits(root, levels, n_test=2, min_train=3, max_train=5, progress=False)
    split_file = write_splits(res, tmp_path / "splits")
    test = dataset_images("cog_l1", "test", imagenet_root=root, levels=lv_file, splits=split_file)
    assert test.classes == sorted(levels[0])
    assert len(test) == 4 and list(test.labels) == [0, 0, 1, 1]
    assert all((root / p).is_file() for p in test.paths)
    train = dataset_images("cog_l2", "train", imagenet_root=root, levels=lv_file, splits=split_file)
    assert train.classes == sorted(levels[1]) and len(train) == 10
    assert not set(train.paths) & set(
        dataset_images(
            "cog_l2", "test", imagenet_root=root, levels=lv_file, splits=split_file
        ).paths
    )
    # a split file that lacks a level's concept is refused, naming it
    bad = {w: v for w, v in res.splits.items() if w != wnids[3]}
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(CogError, match=wnids[3]):
        dataset_images(
            "cog_l2", "train", imagenet_root=root, levels=lv_file, splits=tmp_path / "bad.pkl"
        )
    moved = tmp_path / "elsewhere"
    shutil.move(root / wnids[1], moved)
    with pytest.raises(CogError, match=f"missing.*{wnids[1]}"):
        dataset_images("cog_l2", "test", imagenet_root=root, levels=lv_file, splits=split_file)
    shutil.move(moved, root / wnids[1])
    with pytest.raises(CogError, match="--imagenet-root"):
        dataset_images("cog_l2", "train", levels=lv_file, splits=split_file)


def test_decode_every_broken_kind(tmp_path):
    files = add_broken_files(tmp_path)
    expect = {
        "cmyk": "CMYK",
        "grayscale": "L converted",
        "palette": "PNG content",
        "rgba_png": "RGBA",
        "png_as_jpeg": "PNG content",
        "truncated": "truncated",
    }
    for kind, word in expect.items():
        img, note = decode_image(files[kind])
        assert img.mode == "RGB" and img.size[0] > 0, kind
        assert word in note, (kind, note)
    with pytest.raises(Exception, match="cannot identify"):
        decode_image(files["empty"])
    # CMYK colours come back close to the original RGB
    ref, _ = decode_image(files["png_as_jpeg"])
    cmyk, _ = decode_image(files["cmyk"])
    diff = np.abs(np.asarray(ref, dtype=float) - np.asarray(cmyk, dtype=float)).mean()
    assert diff < 20


def test_draft_decodes_at_reduced_scale_not_below_target(tmp_path):
    p = tmp_path / "big.JPEG"
    Image.effect_noise((500, 375), 50).convert("RGB").save(p, "JPEG")
    full, note = decode_image(p)
    assert full.size == (500, 375) and note == ""
    half, _ = decode_image(p, draft_short=100)  # 1/2 gives 188 >= 100, 1/4 gives 94 < 100
    assert half.size == (250, 188)
    same, _ = decode_image(p, draft_short=224)  # no DCT scale keeps 224: full size
    assert same.size == (500, 375)
    edge = tmp_path / "edge.JPEG"  # shorter side exactly twice the target: halved
    Image.effect_noise((600, 448), 50).convert("RGB").save(edge, "JPEG")
    assert decode_image(edge, draft_short=224)[0].size == (300, 224)


def test_imagelist_hash_and_subset(in1k):
    lst = dataset_images("in1k", "train", in1k_root=in1k)
    sub = lst.subset([3, 1])
    assert sub.paths == [lst.paths[3], lst.paths[1]]
    assert sub.sha256() != lst.subset([1, 3]).sha256()
    with pytest.raises(CogError):
        ImageList(lst.root, ["a"], np.array([0, 1]), ["x"])

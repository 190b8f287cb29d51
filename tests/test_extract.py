"""Extraction to the HDF5 cache on generated trees of real (and broken) JPEG files: layout,
failure records, fast vs exact, stale-cache refusal, SIGKILL resume, torchrun sharding,
composite cards and the CLI."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import cog
import cog.features.pipeline as ex_pipeline
import cog.features.settings as ex_settings
from cog import CogError
from cog import zoo as real_zoo
from cog.features import extract as ex
from cog.features.cache import open_features
from cog.features.ensure import ensure_features, project_features
from cog.features.extract import extract
from cog.features.images import dataset_images, image_folder
from cog.features.settings import cache_path
from cog.features.synthetic import TinyCard, add_broken_files, make_imagenet1k, tiny_backbone
from cog.io import sha256_file

WNIDS = ["n01440764", "n01443537", "n01484850"]
SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from cog.features.images import dataset_images
    from cog.features.extract import extract
    from cog.features.synthetic import tiny_backbone

    root, out, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])
    bb = tiny_backbone()
    if slow:
        plain = bb.forward
        def forward(x):
            time.sleep(slow)
            return plain(x)
        bb.forward = forward
    images = dataset_images("in1k", "train", in1k_root=root)
    extract(bb, images, out, workers=0, batch_size=2, segment=4, device="cpu", progress=False)
    """
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = make_imagenet1k(tmp_path_factory.mktemp("in1k"), WNIDS, 5, 2, n_large=2)
    add_broken_files(root / "train" / WNIDS[1])
    return root


@pytest.fixture(scope="module")
def images(tree):
    return dataset_images("in1k", "train", in1k_root=tree)


@pytest.fixture(scope="module")
def reference(tree, images, tmp_path_factory):
    """An uninterrupted one-process run (the ground truth for resume and sharding)."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    extract(tiny_backbone(), images, out, **SMALL)
    with open_features(out) as fs:
        return fs.load(), list(fs.paths), list(fs.failed)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "run_extract.py"
    path.write_text(SCRIPT)
    return path


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = str(Path(cog.__file__).resolve().parent.parent)
    return env


def test_layout_labels_and_failure_records(images, tmp_path):
    out = extract(tiny_backbone(), images, tmp_path / "f.h5", **SMALL)
    assert not (tmp_path / "f.h5.parts").exists()
    with h5py.File(out, "r") as h5:
        assert h5["features"].dtype == np.float16 and h5["labels"].dtype == np.int64
        for k in (*ex_settings.STRICT, "cog_version", "complete"):
            assert k in h5.attrs, k
    with open_features(out) as fs:
        assert fs.attrs["complete"] and fs.attrs["mode"] == "fast"
        assert fs.attrs["dataset"] == "in1k" and fs.attrs["split"] == "train"
        assert fs.attrs["images_sha256"] == images.sha256()
        assert fs.attrs["card"]["name"] == "tiny-cnn"
        assert fs.classes == WNIDS
        bad = f"train/{WNIDS[1]}/zz_broken_empty.JPEG"
        assert [p for p, _ in fs.failed] == [bad]
        assert "cannot identify" in fs.failed[0][1]
        assert len(fs) == len(images) - 1 and fs.dim == 16
        keep = [i for i, p in enumerate(images.paths) if p != bad]
        assert fs.paths == [images.paths[i] for i in keep]
        assert np.array_equal(fs.labels, images.labels[keep])
        assert len(fs.repaired) == 6  # cmyk, grayscale, palette, rgba, png, truncated
        assert fs.attrs["summary"]["failed"] == 1
        chunks = list(fs.iter_chunks(rows=7))
        assert np.array_equal(np.concatenate(chunks), fs.load())
        assert np.isfinite(fs.load()).all()


def test_fast_equals_exact_and_jpeg_draft_is_opt_in(images, tmp_path):
    kw = dict(SMALL, dtype="float32")
    fast = extract(tiny_backbone(), images, tmp_path / "fast.h5", **kw)
    exact = extract(tiny_backbone(), images, tmp_path / "exact.h5", exact=True, **kw)
    draft = extract(tiny_backbone(), images, tmp_path / "draft.h5", jpeg_draft=True, **kw)
    with open_features(fast) as f, open_features(exact) as e, open_features(draft) as d:
        a, b, c = f.load(), e.load(), d.load()
        assert f.features.dtype == np.float32
        assert (f.attrs["mode"], e.attrs["mode"], d.attrs["mode"]) == (
            "fast",
            "exact",
            "fast+jpeg-draft",
        )
        assert "equals the card's transform on" in f.attrs["fast_path"]
        assert f.attrs["fingerprint"] == "not checked (random weights)"
        assert "jpeg_draft" not in f.attrs and "Measured" in d.attrs["jpeg_draft"]
        big = np.array([min(Image.open(images.root / p).size) >= 2 * 40 for p in f.paths])
    assert big.sum() == 3  # the two 500x375 files and the 300x225 truncated one
    # the default fast path gives the transform's pixels on every image, large JPEGs included
    assert np.abs(a - b).max() < 1e-4
    # draft decoding (opt-in) changes the large JPEGs only
    assert np.abs(c[~big] - b[~big]).max() < 1e-4 and np.abs(c[big] - b[big]).max() > 1e-3
    with pytest.raises(CogError, match="exclude each other"):
        extract(tiny_backbone(), images, tmp_path / "x.h5", exact=True, jpeg_draft=True, **kw)


@pytest.mark.parametrize("resize,crop", [(224, 224), (256, 224), (292, 260)])
def test_uint8_resize_crop_equals_torchvision_in_both_orientations(resize, crop):
    """The fast path's pixels are the transform's: landscape, portrait, up- and downscaled
    (one-call `box` resampling was off by up to 8-11 grey levels on portrait images)."""
    from torchvision import transforms as T
    from torchvision.transforms.functional import pil_to_tensor

    g = np.random.default_rng(0)
    ref = T.Compose(
        [T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(crop)]
    )
    ours = ex_pipeline._ResizeCrop(resize, crop, "bicubic")
    for w, h in [(230, 271), (271, 230), (333, 500), (500, 333), (900, 1201), (150, 120)]:
        img = Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert torch.equal(ours(img), pil_to_tensor(ref(img))), (w, h)


def _mixed_tree(root: Path):
    """Landscape and portrait, small and large, JPEG and PNG, in one class folder."""
    base = Image.new("RGB", (97, 61))
    base.putdata(
        [((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(61) for x in range(97)]
    )
    cls = root / WNIDS[0]
    cls.mkdir(parents=True)
    for i, (size, fmt) in enumerate(
        [((64, 48), "JPEG"), ((48, 64), "JPEG"), ((160, 120), "JPEG"), ((120, 170), "PNG")]
    ):
        base.resize(size, Image.BICUBIC).save(cls / f"{i}.{fmt.lower()}", fmt)
    return image_folder(root, name="mixed", split="train")


def test_fidelity_guard_checks_every_kind_of_image(tmp_path):
    images = _mixed_tree(tmp_path / "mixed")
    bb = tiny_backbone()
    sample = ex_pipeline.guard_sample(images, resize=40)
    assert len(sample) == 4  # each (format, orientation, size class) once
    pipeline = ex_pipeline._Pipeline(bb, exact=False)
    ok, report = pipeline.agrees_with_transform(images)
    assert ok and "4 sampled images" in report and "portrait" in report and ".png" in report
    plain = bb.transform

    def differs_on_portrait_png(img):  # only the last file of the list is affected
        x = plain(img)
        return x + 0.05 if img.size[1] > img.size[0] and img.size[1] > 150 else x

    pipeline.transform = differs_on_portrait_png
    ok, report = pipeline.agrees_with_transform(images)
    assert not ok and "3.png" in report and "differs" in report
    # an extraction with such a transform falls back to it and says so in the cache
    bb.transform = differs_on_portrait_png
    out = extract(bb, images, tmp_path / "g.h5", **SMALL)
    with open_features(out) as fs:
        assert fs.attrs["fast_path"].startswith("fallback to the card's transform: ")


def test_stale_cache_is_refused_until_overwrite(images, tmp_path):
    out = tmp_path / "c.h5"
    extract(tiny_backbone(), images, out, **SMALL)
    before = out.stat().st_mtime_ns
    extract(tiny_backbone(), images, out, **SMALL)  # same settings: reused as is
    assert out.stat().st_mtime_ns == before
    for kwargs, word in (
        (dict(exact=True), "mode"),
        (dict(dtype="float32"), "dtype"),
        (dict(images=images.subset(range(5))), "images_sha256"),
        (dict(weights="0" * 64), "weights_sha256"),
    ):
        call = dict(SMALL, backbone=tiny_backbone(), images=images)
        call.update(kwargs)
        call["backbone"].weights_sha256 = call.pop("weights", "random-init")
        with pytest.raises(CogError, match=f"{word}.*--overwrite"):
            extract(out=out, **call)
    extract(tiny_backbone(), images, out, exact=True, overwrite=True, **SMALL)
    with open_features(out) as fs:
        assert fs.attrs["mode"] == "exact"
    # a second process writing the same cache is refused while the first holds it
    with ex._lock(out), pytest.raises(CogError, match="another process"):
        extract(tiny_backbone(), images, out, exact=True, **SMALL)


def test_partial_run_resumes_and_refuses_other_settings(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "p.h5"

    def boom(*a, **k):
        raise RuntimeError("killed before the merge")

    monkeypatch.setattr(ex, "_merge", boom)
    with pytest.raises(RuntimeError):
        extract(tiny_backbone(), images, out, **SMALL)
    monkeypatch.undo()
    parts = tmp_path / "p.h5.parts"
    segs = sorted(parts.glob("seg_*.h5"))
    assert len(segs) == -(-len(images) // 4) and not out.exists()
    segs[2].unlink()
    with pytest.raises(CogError, match=r"partial extraction.*mode"):
        extract(tiny_backbone(), images, out, exact=True, **SMALL)
    # started elsewhere in bf16 (a GPU), resumed here where auto picks fp32: never merged
    meta_path = parts / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "precision": "bf16"}))
    with pytest.raises(CogError, match=r"precision: bf16 here.*--precision bf16 finishes"):
        extract(tiny_backbone(), images, out, **SMALL)
    meta_path.write_text(json.dumps(meta))
    extract(tiny_backbone(), images, out, **SMALL)
    with open_features(out) as fs:
        assert np.array_equal(fs.load(), reference[0])


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_features(tree, reference, script, tmp_path):
    out = tmp_path / "k.h5"
    parts = tmp_path / "k.h5.parts"
    proc = subprocess.Popen([sys.executable, str(script), str(tree), str(out), "0.25"], env=_env())
    try:
        deadline = time.time() + 60
        while len(list(parts.glob("seg_*.h5"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no segment written within 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    done = len(list(parts.glob("seg_*.h5")))
    assert not out.exists() and 2 <= done < 6  # 22 images, segments of 4
    extract(tiny_backbone(), dataset_images("in1k", "train", in1k_root=tree), out, **SMALL)
    with open_features(out) as fs:
        assert np.array_equal(fs.load(), reference[0])
        assert fs.paths == reference[1] and fs.failed == reference[2]


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tree, reference, script, tmp_path):
    two = tmp_path / "two.h5"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tree),
            str(two),
            "0",
        ],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    with open_features(two) as b:
        assert np.array_equal(b.load(), reference[0])
        assert b.paths == reference[1] and b.failed == reference[2]


# ------------------------------------------------------------------ through model names


@pytest.fixture
def fake_zoo(monkeypatch, tmp_path):
    """A zoo of tiny models (one composite), and a projection file for it."""
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    proj_file = tmp_path / "proj.pt"
    proj_file.write_bytes(b"weights")
    cards = {
        "tiny-a": TinyCard(name="tiny-a"),
        "tiny-a-tldr": TinyCard(
            name="tiny-a-tldr",
            base="tiny-a",
            feature_dim=4,
            projection={"kind": "tldr", "path": str(proj_file), "dim": 4},
        ),
    }
    loads = []

    def get_card(name):
        if name not in cards:
            raise CogError(f"unknown model {name}")
        return cards[name]

    def load(name, checkpoint=None, random_init=False, device="cpu"):
        loads.append(name)
        if not random_init:
            raise CogError("no weights here; pass random_init=True")
        return tiny_backbone(name=name)

    def load_projection(path):
        torch.manual_seed(0)
        return torch.nn.Linear(16, 4)

    zoo = types.SimpleNamespace(
        get_card=get_card,
        load=load,
        loads=loads,
        cached_weights_sha256=lambda card: None,  # no trained weights on disk
        file_sha256=sha256_file,
        projection_file=real_zoo.projection_file,
    )
    files = types.SimpleNamespace(load_projection=load_projection)
    importlib.import_module("cog.compress.files")  # the real one first: its package is loaded
    importlib.import_module("cog.zoo.fingerprint")  # the extractor imports it from the fake
    for name, mod in (("cog.zoo", zoo), ("cog.compress.files", files)):
        monkeypatch.setitem(sys.modules, name, mod)
        parent, _, leaf = name.rpartition(".")
        monkeypatch.setattr(sys.modules[parent], leaf, mod, raising=False)
    return zoo


def test_ensure_features_and_composite(tree, fake_zoo, tmp_path):
    kw = dict(in1k_root=tree, random_init=True, device="cpu", workers=0, progress=False)
    with pytest.raises(CogError, match="random_init"):
        ensure_features("tiny-a", "in1k", "test", in1k_root=tree, progress=False)
    path = ensure_features("tiny-a-tldr", "in1k", "test", **kw)
    # random weights are cached apart from trained ones, under the leaderboard row's name
    assert path == cache_path("tiny-a-tldr+random-init", "in1k", "test")
    assert str(path).startswith(str(tmp_path / "home" / "features"))
    base = cache_path("tiny-a+random-init", "in1k", "test")
    assert not cache_path("tiny-a", "in1k", "test").exists()
    assert base.is_file() and fake_zoo.loads.count("tiny-a") == 2  # the refused call + one
    with open_features(base) as b, open_features(path) as c:
        assert c.dim == 4 and c.paths == b.paths and c.attrs["base_model"] == "tiny-a"
        torch.manual_seed(0)
        expect = torch.nn.Linear(16, 4)
        with torch.no_grad():
            want = expect(torch.from_numpy(b.load())).numpy()
        assert np.allclose(c.load(), want, atol=2e-3)
    # a second call reuses both caches without loading a model again
    n = len(fake_zoo.loads)
    ensure_features("tiny-a-tldr", "in1k", "test", **kw)
    assert len(fake_zoo.loads) == n


def test_projection_must_match_its_card_and_base_weights(tree, fake_zoo, tmp_path):
    kw = dict(in1k_root=tree, random_init=True, device="cpu", workers=0, progress=False)
    base = ensure_features("tiny-a", "in1k", "test", **kw)  # weights "random-init"
    proj_file = tmp_path / "proj.pt"
    good = sha256_file(proj_file)

    def card(training=None, **extra):
        return TinyCard(
            name="tiny-a-p",
            base="tiny-a",
            feature_dim=4,
            projection={"kind": "tldr", "path": str(proj_file), "dim": 4, **extra},
            training=training,
        )

    with pytest.raises(CogError, match="the projection file changed"):
        project_features(card(sha256="0" * 64), base, tmp_path / "a.h5")
    trained = {"base_weights_sha256": "f" * 64}  # fitted on trained weights' features
    with pytest.raises(CogError, match="refit it on these features"):
        project_features(card(trained, sha256=good), base, tmp_path / "b.h5")
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()
    ok = card({"base_weights_sha256": "random-init"}, sha256=good)
    assert project_features(ok, base, tmp_path / "c.h5").is_file()


def test_cli_images_folder_and_dataset(tree, fake_zoo, tmp_path, capsys):
    from cog.cli.extract import main

    out = tmp_path / "folder.h5"
    args = [
        "tiny-a",
        "--images",
        str(tree / "train"),
        "--out",
        str(out),
        "--random-init",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 failed" in err and "zz_broken_empty" in err
    with open_features(out) as fs:
        assert fs.classes == WNIDS and len(fs.failed) == 1
    assert main([*args, "--exact"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--exact", "--overwrite"]) == 0
    assert (
        main(
            [
                "tiny-a",
                "--datasets",
                "in1k",
                "--split",
                "test",
                "--in1k-root",
                str(tree),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--random-init",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert (tmp_path / "cache" / "tiny-a+random-init" / "in1k_test.h5").is_file()
    assert main(["tiny-a", "--datasets", "in1k", "--split", "test"]) == 2
    assert "--in1k-root" in capsys.readouterr().err


def test_bundles_and_keywords_name_the_same_cache(tree, fake_zoo):
    """A FeatureSource names the keyword call's cache; other options in the cache key
    (dtype) are refused, not mixed; unknown keywords are a TypeError."""
    from cog.features.options import DataRoots, ExtractOptions, FeatureSource

    options = ExtractOptions(device="cpu", workers=0, progress=False)
    source = FeatureSource(DataRoots(in1k_root=tree), options, random_init=True)
    a = ensure_features("tiny-a", "in1k", "test", source)
    n = len(fake_zoo.loads)
    b = ensure_features(
        "tiny-a", "in1k", "test", in1k_root=tree, device="cpu", workers=0, progress=False,
        random_init=True,
    )  # fmt: skip
    assert a == b and len(fake_zoo.loads) == n  # reused, judged without loading the model
    wider = dataclasses.replace(source, options=dataclasses.replace(options, dtype="float32"))
    with pytest.raises(CogError, match="dtype"):
        ensure_features("tiny-a", "in1k", "test", wider)
    with pytest.raises(TypeError, match="in1k_rot"):
        ensure_features("tiny-a", "in1k", "test", in1k_rot=tree)


def test_a_composite_card_pins_the_base_features_kind_it_was_fitted_on():
    """decode auto takes the fitted path for the base (never extracts the other and then
    refuses); options that cannot give the fitted kind are refused before extracting,
    naming the options to pass."""
    from cog.features.ensure import _fitted_kind
    from cog.features.options import ExtractOptions, FeatureSource

    fitted = {"mode": "fast", "dtype": "float16", "decode": "gpu"}
    card = types.SimpleNamespace(name="m+tldr8", base="m", training={"base_features": fitted})
    assert _fitted_kind(card, FeatureSource()).options.decode == "gpu"
    for options, fix in (
        (ExtractOptions(dtype="float32"), "pass --dtype float16"),
        (ExtractOptions(exact=True), "pass no --exact/--jpeg-draft"),
        (ExtractOptions(decode="cpu"), "pass --decode gpu"),
    ):
        with pytest.raises(CogError, match=fix):
            _fitted_kind(card, FeatureSource(options=options))
    old = types.SimpleNamespace(name="m+tldr8", base="m", training={})  # before the record
    assert _fitted_kind(old, FeatureSource()).options.decode == "auto"

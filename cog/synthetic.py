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


@dataclass
class _Sizer:
    """Chooses each file's size: the first `n_large` files of the tree get `large` sizes."""

    sizes: Sequence[tuple[int, int]]
    n_large: int = 0
    large: Sequence[tuple[int, int]] = ((500, 375), (375, 500))
    count: int = field(default=0)

    def __call__(self, rng: np.random.Generator) -> tuple[int, int]:
        self.count += 1
        pool = self.large if self.count <= self.n_large else self.sizes
        return tuple(pool[int(rng.integers(len(pool)))])  # type: ignore[return-value]


def _write_class(
    folder: Path,
    names: list[str],
    label: int,
    sizer: _Sizer,
    rng: np.random.Generator,
    quality: int,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        synthetic_image(label, sizer(rng), rng).save(folder / name, "JPEG", quality=quality)


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
) -> Path:
    """Write `<root>/train/<wnid>/<wnid>_<i>.JPEG` and `<root>/val/<wnid>/ILSVRC2012_val_*.JPEG`.

    `n_large` files (the first ones written) get realistic 500x375 sizes; the rest `sizes`.
    """
    root = Path(root)
    wnids = _check_wnids(wnids)
    rng = np.random.default_rng(seed)
    sizer = _Sizer(sizes, n_large)
    val_id = 1
    for label, w in enumerate(sorted(wnids)):
        names = [f"{w}_{i + 1}.JPEG" for i in range(n_train)]
        _write_class(root / "train" / w, names, label, sizer, rng, quality)
        names = [f"ILSVRC2012_val_{val_id + i:08d}.JPEG" for i in range(n_val)]
        val_id += n_val
        _write_class(root / "val" / w, names, label, sizer, rng, quality)
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
) -> Path:
    """Write `<root>/<wnid>/<wnid>_<n>.JPEG` (the ImageNet-21K layout); `n_per_class` is one
    count for all classes or one per wnid (in the given order)."""
    root = Path(root)
    wnids = _check_wnids(wnids)
    counts = [n_per_class] * len(wnids) if isinstance(n_per_class, int) else list(n_per_class)
    if len(counts) != len(wnids):
        raise CogError(f"n_per_class has {len(counts)} counts for {len(wnids)} wnids")
    rng = np.random.default_rng(seed)
    sizer = _Sizer(sizes, n_large)
    order = sorted(range(len(wnids)), key=lambda k: wnids[k])
    for label, k in enumerate(order):
        w = wnids[k]
        # ImageNet-21K numbers are sparse, not 1..n: mimic that so sorting is exercised
        nums = sorted(rng.choice(np.arange(1, 40 * counts[k] + 2), counts[k], replace=False))
        _write_class(root / w, [f"{w}_{n}.JPEG" for n in nums], label, sizer, rng, quality)
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

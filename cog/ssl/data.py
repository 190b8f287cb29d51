"""The training images and their augmentations (MoCo-v2's recipe and the eval transform)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from cog import CogError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class ImageSet:
    """Image paths (relative to `root`) with class indices (-1 when the folder is unlabelled)."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]

    def subset(self, idx: np.ndarray) -> ImageSet:
        return ImageSet(self.root, [self.paths[i] for i in idx], self.labels[idx], self.classes)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def find_images(data: str | Path) -> ImageSet:
    """Images of a class-folder tree (`DIR/<class>/*.jpg`), of the ImageNet-1K train layout
    (`DIR/train/<wnid>/*.JPEG`), or of a flat folder (unlabelled)."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise CogError(f"--data {root}: no such folder (expected DIR/<class>/*.jpg or DIR/train/)")
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        root = root / "train"
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        paths = sorted(p.name for p in root.iterdir() if p.is_file() and _is_image(p.name))
        if not paths:
            raise CogError(f"--data {root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return ImageSet(root, paths, np.full(len(paths), -1, dtype=np.int64), [])
    paths, labels, classes = [], [], []
    for d in subdirs:
        files = sorted(
            os.path.relpath(os.path.join(dp, f), root)
            for dp, _, fs in os.walk(d, followlinks=True)
            for f in fs
            if _is_image(f)
        )
        if not files:
            raise CogError(
                f"--data {root}: class folder {d.name}/ holds no image; remove it or add images"
            )
        labels += [len(classes)] * len(files)
        paths += files
        classes.append(d.name)
    return ImageSet(root, paths, np.asarray(labels, dtype=np.int64), classes)


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise CogError(
            f"{path}: cannot decode the image ({e}); replace or delete the file, then rerun "
            "with --resume"
        ) from e


def moco_v2_augmentation(size: int) -> v2.Compose:
    """The MoCo-v2 recipe: crop (0.2-1), colour jitter p=0.8, grey p=0.2, blur p=0.5, flip."""
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # about 10% of the side, odd
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(size: int) -> v2.Compose:
    """The card's preprocessing: bicubic resize of the short side, centre crop, IN mean/std."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ImageDataset(Dataset):
    """(view_1, [view_2,] label) per image; two independent augmented views when `two_views`."""

    def __init__(self, images: ImageSet, transform: v2.Compose, two_views: bool) -> None:
        self.images, self.transform, self.two_views = images, transform, two_views

    def __len__(self) -> int:
        return len(self.images.paths)

    def __getitem__(self, i: int) -> tuple:
        img = load_rgb(self.images.root / self.images.paths[i])
        label = int(self.images.labels[i])
        if self.two_views:
            return self.transform(img), self.transform(img), label
        return self.transform(img), label

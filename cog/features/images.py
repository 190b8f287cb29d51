"""Image lists for every dataset and split, and decoding that survives ImageNet's odd files.

Class order is the protocol's: classes sorted by wnid (or folder name), label = index in that
order, files sorted. Decoding handles CMYK, grayscale, palette and RGBA images, PNG (or other)
content under a .JPEG name and truncated files; what still cannot be read is reported by the
caller, never dropped silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from cog import CogError
from cog.concepts.splits import list_class_images, read_split_file
from cog.features.options import DataRoots
from cog.io import WNID_RE
from cog.listing import entry_kind, is_utf8, printable_name

DATASETS = ("in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
SPLITS = ("train", "test")


@dataclass
class ImageList:
    """An ordered, labelled list of image files under `root`.

    `name` and `split` say which dataset it is (written into the feature cache).
    """

    root: Path
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str = ""
    split: str = ""
    #: (path, reason) of directory entries that look like images but could not be listed
    #: as files (dangling links, loops, folders, non-UTF-8 names); caches record them
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise CogError(f"{self.root}: {len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def sha256(self) -> str:
        """Hash of the ordered path list: a cache is only reused for the same images."""
        h = hashlib.sha256()
        for p in self.paths:
            h.update(p.encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()

    def subset(self, idx: np.ndarray | list[int]) -> ImageList:
        idx = np.asarray(idx, dtype=np.int64)
        return ImageList(
            self.root,
            [self.paths[i] for i in idx],
            self.labels[idx],
            self.classes,
            self.name,
            self.split,
            self.failed,
        )


def _from_class_lists(
    root: Path,
    per_class: dict[str, list[str]],
    name: str,
    split: str,
    failed: list[tuple[str, str]] | None = None,
) -> ImageList:
    classes = sorted(per_class)
    paths: list[str] = []
    labels: list[int] = []
    for k, c in enumerate(classes):
        files = sorted(per_class[c])
        paths += files
        labels += [k] * len(files)
    labels_a = np.asarray(labels, dtype=np.int64)
    return ImageList(root, paths, labels_a, classes, name, split, list(failed or []))


def image_folder(
    root: str | Path, *, name: str = "", split: str = "", require_wnids: bool = False
) -> ImageList:
    """Any folder with one subfolder per class (sorted), its image files sorted.

    An empty class folder is an error: it would silently shift no labels but drop a class.
    """
    root = Path(root)
    if not root.is_dir():
        raise CogError(f"{root}: no such folder (expected one subfolder of images per class)")
    subdirs, failed = _class_folders(root)
    if not subdirs:
        raise CogError(f"{root}: no class subfolders inside (expected <class>/<image> files)")
    if require_wnids:
        bad = [d for d in subdirs if not WNID_RE.match(d)]
        if bad:
            raise CogError(
                f"{root}: folder(s) {bad[:5]} are not wnids; an ImageNet split folder holds "
                "only <wnid>/ class folders (move other folders out)"
            )
    per_class = {}
    for d in subdirs:
        try:
            per_class[d] = list_class_images(root / d, root, failed)
        except OSError as e:
            raise CogError(
                f"{root / d}: cannot list class folder ({e.strerror or e}); fix its "
                "permissions or move it out of the tree"
            ) from None
    empty = [d for d, f in per_class.items() if not f]
    if empty:
        raise CogError(
            f"{root}: class folder(s) {empty[:5]} hold no image files; remove them or add images"
        )
    if failed:
        print(
            f"warning: {len(failed)} entries under {root} look like images but are not readable "
            f"files (e.g. {failed[0][0]}: {failed[0][1]}); recorded as failed",
            file=sys.stderr,
        )
    return _from_class_lists(root, per_class, name or str(root), split, failed)


def _class_folders(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Sorted class subfolders of `root`, and the entries that should be folders but cannot
    be read (loops, dangling links, non-UTF-8 names) as (path, reason)."""
    subdirs, failed = [], []
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            continue
        kind, why = entry_kind(e)
        if kind == "dir" and not is_utf8(e.name):
            kind, why = "bad", "folder name is not valid UTF-8 (stored with \\x escapes)"
        if kind == "dir":
            subdirs.append(e.name)
        elif kind == "bad":
            failed.append((f"{printable_name(e.name)}/", why))
    return subdirs, failed


def in1k_images(in1k_root: str | Path, split: str) -> ImageList:
    """ImageNet-1K `<root>/train/<wnid>/*` or (split "test" = the official val set)
    `<root>/val/<wnid>/*`. Paths are relative to `<root>`."""
    root = Path(in1k_root)
    sub = {"train": "train", "test": "val", "val": "val"}.get(split)
    if sub is None:
        raise CogError(f"unknown split {split!r} for in1k; choose train or test (= val)")
    folder = root / sub
    if not folder.is_dir():
        raise CogError(f"{folder}: no such folder; --in1k-root must hold train/ and val/")
    flat = [e.name for e in os.scandir(folder) if e.is_file()][:1]
    if flat and not any(e.is_dir() for e in os.scandir(folder)):
        raise CogError(
            f"{folder}: validation images are not in <wnid>/ class folders (e.g. {flat[0]}); "
            "sort them into class folders first (the usual valprep.sh step)"
        )
    lst = image_folder(
        folder, name="in1k", split="test" if sub == "val" else "train", require_wnids=True
    )
    lst.paths = [f"{sub}/{p}" for p in lst.paths]
    lst.failed = [(f"{sub}/{p}", r) for p, r in lst.failed]
    lst.root = root
    return lst


def cog_images(
    level: int,
    split: str,
    imagenet_root: str | Path,
    levels: str | Path | list[list[str]] | None = None,
    splits: str | Path | dict | None = None,
) -> ImageList:
    """Images of CoG level `level` (1..5) from the split file; paths relative to the
    ImageNet-21K root. Concepts sorted by wnid; files sorted."""
    from cog.concepts.levels import read_levels
    from cog.io import default_levels

    if split not in SPLITS:
        raise CogError(f"unknown split {split!r}; choose train or test")
    root = Path(imagenet_root)
    if not root.is_dir():
        raise CogError(f"{root}: no such folder; pass --imagenet-root (the ImageNet-21K root)")
    lv = levels if isinstance(levels, list) else read_levels(levels or default_levels())
    if not 1 <= level <= len(lv):
        raise CogError(f"level {level} does not exist: the levels file has {len(lv)} levels")
    sp = splits if isinstance(splits, dict) else read_split_file(splits)
    wnids = sorted(lv[level - 1])
    missing = [w for w in wnids if w not in sp]
    if missing:
        raise CogError(
            f"{len(missing)} concept(s) of level {level} are not in the split file "
            f"(e.g. {', '.join(missing[:5])}); pass the split file made for these levels "
            "(--splits) or rebuild it with cog-build-splits"
        )
    per_class = {w: list(sp[w][split]) for w in wnids}
    folders = {p.split("/", 1)[0] for w in wnids for p in per_class[w][:1]}
    absent = sorted(f for f in folders if not (root / f).is_dir())
    if absent:
        raise CogError(
            f"{root}: {len(absent)} concept folder(s) of level {level} are missing (e.g. "
            f"{', '.join(absent[:5])}); is this the ImageNet-21K root the split file was made "
            "for? Extract <wnid>.tar archives into <wnid>/ folders"
        )
    return _from_class_lists(root, per_class, f"cog_l{level}", split)


def dataset_images(
    dataset: str,
    split: str,
    roots: DataRoots | None = None,
    **paths: str | Path | None,
) -> ImageList:
    """The ImageList of a benchmark dataset ("in1k", "cog_l1".."cog_l5") and split
    ("train" | "test"; the in1k test split is the official validation set), found under
    `roots` (cog.features.options.DataRoots); keyword `paths` name its fields
    (`in1k_root=...`) for a one-off call."""
    r = dataclasses.replace(roots or DataRoots(), **paths)
    in1k_root, imagenet_root, levels, splits = r.in1k_root, r.imagenet_root, r.levels, r.splits
    if dataset not in DATASETS:
        raise CogError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    if split not in SPLITS:
        raise CogError(f"unknown split {split!r}; choose train or test")
    if dataset == "in1k":
        if in1k_root is None:
            raise CogError("dataset in1k needs --in1k-root (the folder holding train/ and val/)")
        return in1k_images(in1k_root, split)
    if imagenet_root is None:
        raise CogError(f"dataset {dataset} needs --imagenet-root (the ImageNet-21K root)")
    return cog_images(int(dataset[-1]), split, imagenet_root, levels, splits)


# ------------------------------------------------------------------ decoding


@contextlib.contextmanager
def _load_truncated():
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


#: default per-image pixel limit (50 megapixels, 150 MB as RGB); $COG_MAX_PIXELS overrides
DEFAULT_MAX_PIXELS = 50_000_000


def max_pixels() -> int:
    """The per-image pixel limit: $COG_MAX_PIXELS if set, else DEFAULT_MAX_PIXELS."""
    text = os.environ.get("COG_MAX_PIXELS", "").strip()
    try:
        return int(float(text)) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        raise CogError(
            f"COG_MAX_PIXELS={text!r} is not a number of pixels (e.g. 50000000)"
        ) from None


class ImageTooLarge(ValueError):
    """An image over the pixel limit that its format cannot decode at reduced size."""


@contextlib.contextmanager
def _no_bomb_check():
    """cog applies its own pixel limit (before decoding); PIL's would refuse a huge JPEG
    that draft mode decodes at 1/8 size."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open(path: Path, draft_short: int | None, limit: int) -> tuple[Image.Image, str]:
    with _no_bomb_check():
        img = Image.open(path)
    w, h = img.size
    note = ""
    want = None
    if draft_short and img.format == "JPEG":
        scale = draft_short / min(w, h)
        if scale <= 0.5:  # DCT scaling only helps when at least a halving keeps the target
            want = (math.ceil(w * scale), math.ceil(h * scale))
    if w * h > limit:
        s = next((s for s in (2, 4, 8) if math.ceil(w / s) * math.ceil(h / s) <= limit), None)
        if img.format != "JPEG" or s is None:
            img.close()
            raise ImageTooLarge(
                f"{w}x{h} ({w * h / 1e6:.0f} megapixels) is over the per-image limit of "
                f"{limit / 1e6:.0f} megapixels and {img.format} cannot be decoded at reduced "
                "size; raise COG_MAX_PIXELS if the memory allows"
            )
        lim = (math.ceil(w / s), math.ceil(h / s))
        want = lim if want is None else (min(want[0], lim[0]), min(want[1], lim[1]))
        note = f"over the pixel limit: {w}x{h} decoded at 1/{s} size or less"
    if want is not None:
        img.draft("RGB", want)
    img.load()
    return img, note


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB without clipping: 16-bit (and 32-bit integer) grey is scaled to 8 bits by its top
    byte, floats in [0, 1] by 255; PIL's convert('RGB') would clip them at 255."""
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.int64)
        shift = 24 if img.mode == "I" and a.max(initial=0) > 65535 else 8  # 32- or 16-bit
        img = Image.fromarray(np.clip(a >> shift, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        a = a * 255 if a.max(initial=0) <= 1.0 else a
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def decode_image(
    path: str | Path, draft_short: int | None = None, limit: int | None = None
) -> tuple[Image.Image, str]:
    """Decode any image file to RGB; returns (image, note), note "" for a plain RGB file.

    `draft_short`: let libjpeg-turbo decode a JPEG at 1/2, 1/4 or 1/8 scale, the smallest
    whose shorter side is still >= draft_short (PIL draft mode). Truncated files are decoded
    as far as they go (note "truncated"). High-bit-depth images are scaled to 8 bits, never
    clipped. An image over `limit` pixels (default `max_pixels()`) is decoded at reduced size
    if it is a JPEG, else ImageTooLarge is raised, so a worker's memory stays bounded.
    Raises the decoder's exception when unreadable.
    """
    path = Path(path)
    limit = max_pixels() if limit is None else int(limit)
    notes = []
    try:
        img, note = _open(path, draft_short, limit)
    except OSError as e:
        if "truncated" not in str(e):
            raise
        with _load_truncated():
            img, note = _open(path, draft_short, limit)
        notes.append("truncated: decoded the readable part")
    if note:
        notes.append(note)
    if img.format and path.suffix.lower() in (".jpeg", ".jpg") and img.format != "JPEG":
        notes.append(f"{img.format} content under a {path.suffix} name")
    if img.mode != "RGB":
        notes.append(f"{img.mode} converted to RGB")
        img = _to_rgb(img)
    return img, "; ".join(notes)

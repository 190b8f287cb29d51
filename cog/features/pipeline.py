"""Images -> device batches: decoding, the card's resize and crop, workers, precision,
and the torchrun process group.

Fast mode applies the card's resize and crop in uint8 with the same PIL calls as torchvision
(so the pixels are the transform's) and normalizes on the device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from cog import CogError
from cog.features import decode as devdecode
from cog.features.images import ImageList, decode_image
from cog.features.settings import DRAFT_NOTE, IMPLICIT, PRECISIONS, _existing_attrs

# ------------------------------------------------------------------ distributed


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    created: bool = False

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _dist_setup() -> _Dist:
    """torchrun sets RANK/WORLD_SIZE; coordination uses gloo (CPU) with a long timeout,
    since ranks meet only at the start and before the merge."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(local_rank=local)
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(days=2))
        created = True
    return _Dist(dist.get_rank(), dist.get_world_size(), local, local_world, created)


def _device(device: str, d: _Dist) -> torch.device:
    if device == "auto":
        device = f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CogError(f"device {device} asked but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(dev)
    return dev


def _precision(precision: str, dev: torch.device, card=None) -> str:
    """auto: fp32 on CPU; on CUDA the card's float16 if it asks for it (CLIP), else bf16."""
    if precision not in PRECISIONS:
        raise CogError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if precision != "auto":
        return precision
    if dev.type == "cuda":
        if getattr(card, "precision", None) == "float16" or not torch.cuda.is_bf16_supported():
            return "fp16"
        return "bf16"
    return "fp32"


def default_workers(dev: torch.device, local_world: int = 1) -> int:
    """Decoding processes per rank: all spare cores on GPU, half of them on CPU (the model
    needs the rest)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    per_rank = max(1, cpus // max(1, local_world))
    if dev.type == "cuda":
        return min(16, max(1, per_rank - 1))
    return max(1, per_rank // 2)


# ------------------------------------------------------------------ preprocessing


class _ResizeCrop:
    """Resize the shorter side to `resize`, then center-crop `crop`, with exactly the PIL calls
    torchvision's Resize + CenterCrop make on a PIL image (resize the whole image, then crop),
    so the uint8 pixels are the transform's; returns a uint8 [3, crop, crop] tensor. (One PIL
    call resampling only the crop window, `box=`, differed by up to 8-11 grey levels.)
    """

    def __init__(self, resize: int | None, crop: int, interpolation: str) -> None:
        self.resize, self.crop = (int(resize) if resize else None), int(crop)
        self.resample = Image.Resampling[str(interpolation).upper()]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        from torchvision.transforms.functional import center_crop, pil_to_tensor

        w, h = img.size
        if self.resize:
            r = self.resize
            nw, nh = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), self.resample)
        return pil_to_tensor(center_crop(img, [self.crop, self.crop]))


def guard_sample(images: ImageList, resize: int, scan: int = 256, most: int = 12) -> list[str]:
    """Paths covering each (file format, orientation, size class) among up to `scan` evenly
    spaced images (headers only): the fidelity guard's sample, not just the first file."""
    n = len(images.paths)
    step = max(1, n // scan)
    picked: dict[tuple, str] = {}
    for p in images.paths[::step][:scan]:
        try:
            with Image.open(images.root / p) as im:
                fmt, (w, h) = im.format, im.size
        except Exception:  # unreadable: reported by the extraction itself
            continue
        shape = "landscape" if w > h else ("portrait" if h > w else "square")
        short = min(w, h)
        size = "small" if short < resize else ("large" if short >= 2 * resize else "medium")
        picked.setdefault((fmt, shape, size), p)
        if len(picked) >= most:
            break
    return list(picked.values())


class _Pipeline:
    """Turns a decoded RGB image into the model input.

    exact: the backbone's own transform on the full-size image. fast: JPEG draft decoding,
    then resize + crop to a uint8 tensor (4x less to copy); `normalize` finishes on the device.
    """

    def __init__(self, backbone, exact: bool, jpeg_draft: bool = False) -> None:
        pre = backbone.card.preprocess
        self.exact = exact
        self.transform = backbone.transform
        self.mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.bgr = str(getattr(pre, "channel_order", "RGB")).upper() == "BGR"
        self.draft = int(pre.resize) if jpeg_draft and not exact and pre.resize else None
        self.crop_side = int(pre.resize or pre.crop)
        self.resize = int(pre.resize or pre.crop)
        self.tol = 1e-3  # float rounding of the normalization only: the uint8 pixels are equal
        self.uint8 = None if exact else _ResizeCrop(pre.resize, pre.crop, pre.interpolation)
        # fast mode decodes plain JPEGs with libjpeg-turbo from the bytes (cog.features.decode); the
        # guard checks it with the uint8 path, a mismatch falls back to PIL with the transform
        self.decode = decode_image if exact else devdecode.decode_file
        self.blank = self._blank()

    def _blank(self) -> torch.Tensor:
        """What a failed image contributes to its batch (its row is then discarded)."""
        side = int(self.draft or self.crop_side)
        return self(Image.new("RGB", (side, side)))

    def use_transform(self) -> None:
        """Fast mode with the card's own transform (after draft decoding, if asked)."""
        self.uint8, self.decode = None, decode_image
        self.blank = self._blank()

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.uint8(img) if self.uint8 is not None else self.transform(img)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Finish a batch on the device (fast mode: uint8 -> normalized float)."""
        if x.dtype != torch.uint8:
            return x
        if self.mean.device != x.device:  # moved once, not per batch
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        x = (x.float() - self.mean) / self.std
        return x.flip(1) if self.bgr else x

    def agrees_with_transform(self, images: ImageList) -> tuple[bool, str]:
        """Check that the fast decoder + uint8 path equals PIL + the card's transform on a
        sample covering every file format, orientation and size class present (`guard_sample`);
        returns (agrees, what was checked or what differs). The caller falls back to the
        transform on a mismatch and records why."""
        if self.uint8 is None:
            return True, "the card's transform (exact mode)"
        checked, worst, kinds = 0, 0.0, set()
        for p in guard_sample(images, self.resize):
            try:
                img, _ = decode_image(images.root / p)
                mine, _ = self.decode(images.root / p)
            except Exception:  # unreadable: the extraction reports it
                continue
            ours = self.normalize(self.uint8(mine)[None])[0]
            ref = self.transform(img)
            if ours.shape != ref.shape:
                shapes = f"{tuple(ours.shape)} vs the transform's {tuple(ref.shape)}"
                return False, f"{p}: shape {shapes}"
            diff = float((ours - ref).abs().max())
            if diff > self.tol:
                grey = diff * float(self.std.min())  # self.std is in grey levels
                return False, (
                    f"{p} ({img.size[0]}x{img.size[1]}): differs from the card's transform by "
                    f"{diff:.4g} after normalization (~{grey:.1f} grey levels)"
                )
            checked, worst = checked + 1, max(worst, diff)
            w, h = img.size
            kinds.add(Path(p).suffix.lower() or "?")
            kinds.add("landscape" if w > h else ("portrait" if h > w else "square"))
        if not checked:
            return False, "no image of the sample could be decoded, so nothing was checked"
        return True, (
            f"{devdecode.cpu_decoder()} decoding + uint8 path (vs PIL + transform) equals the "
            f"card's transform on {checked} sampled images "
            f"({', '.join(sorted(kinds))}; max difference {worst:.2g})"
        )


class _Images(Dataset):
    def __init__(self, images: ImageList, pipeline: _Pipeline) -> None:
        self.root, self.paths, self.pipeline = images.root, images.paths, pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img, note = self.pipeline.decode(self.root / self.paths[i], self.pipeline.draft)
            return self.pipeline(img), i, note, ""
        except Exception as e:  # any decoder failure is recorded, never raised or dropped
            return self.pipeline.blank, i, "", f"{type(e).__name__}: {e}"


class _Bytes(_Images):
    """The device decode path's items: a worker reads the file's bytes; a file the device
    decoder cannot take is decoded here on the CPU path (its note or error kept)."""

    def __getitem__(self, i: int):
        return i, devdecode.read_item(self.root / self.paths[i], lambda: self.cpu(i))

    def cpu(self, i: int) -> tuple:
        x, _, note, err = _Images.__getitem__(self, i)
        return x, note, err


def _decode_first(decode: str, mode: str, dev, out: Path, parts: Path) -> tuple[str, str]:
    """(decode path for the settings, why) before the pipeline exists. auto is cpu without
    CUDA or outside the fast mode; on CUDA it keeps the path of an existing cache or partial
    run (paths never mix) and otherwise waits for the self-check ("check")."""
    if decode != "auto":
        return decode, f"{decode} (asked)"
    if mode != "fast":
        return "cpu", f"auto: cpu ({mode} mode decodes on the CPU)"
    if dev.type != "cuda":
        return "cpu", f"auto: cpu (no CUDA device: the model runs on {dev.type})"
    meta = parts / "meta.json"
    if meta.is_file():
        started = json.loads(meta.read_text())["settings"].get("decode", "cpu")
        return started, f"auto: {started} (the partial run's path)"
    old = _existing_attrs(out) if out.exists() else None
    if old and old.get("complete"):
        kept = str(old.get("decode", IMPLICIT["decode"]))
        return kept, f"auto: {kept} (the existing cache's path)"
    return "check", "auto"


def _decode_path(backbone, images, pipeline, settings, dev, why: str, verbose: bool, d):
    """The device pre-processing (cog.features.decode) when the run takes the device path,
    else None; auto decides by the self-check on a sample of the run's own files (all ranks agree);
    the choice and its reason are recorded in `settings`."""
    if settings["decode"] == "cpu":
        settings["decode_choice"] = why
        return None
    pre = backbone.card.preprocess
    prep = devdecode.DevicePreprocess(pre.resize, pre.crop, pre.interpolation, dev)
    if pipeline.uint8 is None:
        ok, report = False, "the fast path fell back to the card's transform"
        if not why.startswith("auto"):  # the device path makes the fast path's pixels
            raise CogError(f"--decode gpu needs the fast path, but {report}; use --decode cpu")
    else:
        sample = guard_sample(images, pipeline.resize)
        ok, report = devdecode.self_check(backbone, pipeline, prep, images.root, sample, dev)
    if d.world > 1:  # one path for all ranks: the device path only if it passed everywhere
        votes: list = [None] * d.world
        torch.distributed.all_gather_object(votes, ok)
        ok = all(votes)
    auto = why.startswith("auto")
    if auto and not ok and settings["decode"] == "gpu":
        raise CogError(
            f"the partial run decodes on the device but this machine's self-check fails "
            f"({report}); finish it where it started, or pass --decode cpu --overwrite"
        )
    if auto:
        settings["decode"] = "gpu" if ok else "cpu"
        why = f"auto: {settings['decode']} (self-check {'passed' if ok else 'failed'})"
    settings["decode_choice"] = f"{why}: {report}"
    if not ok and not auto and d.rank == 0:  # asked for: runs, but never silently
        print(f"WARNING: --decode gpu misses the fidelity bar here: {report}", file=sys.stderr)
    if verbose:
        tqdm.write(f"decode path {settings['decode_choice']}")
    return prep if settings["decode"] == "gpu" else None


def _checked_pipeline(backbone, images, mode: str, settings: dict, verbose: bool) -> _Pipeline:
    """The input pipeline after the two pre-flight checks, both recorded in `settings` (and
    so in the cache): the model against its card's fingerprint (a mismatch is an error),
    and the fast uint8 path against the card's transform (a mismatch falls back to the
    transform)."""
    from cog.zoo.fingerprint import verify

    settings["fingerprint"] = verify(backbone)
    pipeline = _Pipeline(backbone, mode == "exact", jpeg_draft=mode == "fast+jpeg-draft")
    ok, report = pipeline.agrees_with_transform(images)
    if not ok:
        report = f"fallback to the card's transform: {report}"
        pipeline.use_transform()
        if verbose:
            tqdm.write(f"fast path: {report}")
    settings["fast_path"] = report
    if pipeline.draft:
        settings["jpeg_draft"] = DRAFT_NOTE
    return pipeline

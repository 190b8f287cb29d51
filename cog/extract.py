"""Images -> HDF5 feature cache: fast, resumable after any kill, sharded under torchrun.

How a run survives being killed: the image list is cut into fixed segments (a multiple of the
batch size); each finished segment is written to its own small HDF5 file in `<out>.parts/`
and renamed into place, so a SIGKILL loses at most the segments in flight. A re-run reads
`meta.json` there, refuses it if the settings differ, and processes only the missing
segments with the same batches, so the features are identical to an uninterrupted run. When
all segments exist, rank 0 merges them into the one cache file (temp file + rename, the
`complete` attribute written last). Under torchrun every rank takes every WORLD_SIZE-th
segment; a different world size can resume a run.

Fast mode (default) applies the card's resize and crop in uint8 with the same PIL calls as
torchvision (so the pixels are the transform's) and normalizes on the device; `exact=True`
applies the card's torchvision transform itself. `jpeg_draft=True` (opt-in) also lets
libjpeg-turbo decode large JPEGs at 1/2, 1/4 or 1/8 scale (PIL draft mode, never below the
resize target): faster, but not the protocol's pixels (measured deviation in `DRAFT_NOTE`,
recorded in each cache made that way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import cog
from cog import CogError
from cog import decode as devdecode
from cog.data import ImageList, dataset_images, decode_image
from cog.integrity import seal, verify_file
from cog.integrity import verify as verify_integrity
from cog.io import cog_home, reraise_named

DTYPES = ("float16", "float32")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SEGMENT_IMAGES = 8192
CPU_BATCH, CUDA_BATCH = 32, 256
MODES = ("fast", "exact", "fast+jpeg-draft")
DECODES = devdecode.DECODES
#: measured with real weights (README, "Fast and exact modes"); written into draft caches
DRAFT_NOTE = (
    "JPEG draft decoding (opt-in): JPEGs whose shorter side is >= 2x the resize target are "
    "decoded at 1/2, 1/4 or 1/8 DCT scale, so their pixels are not the protocol's. Measured "
    "with real weights (EfficientNet-Lite0/1/2, benchmarks/bench_real.py, 48 real photos, 6 "
    "of them reduced): cosine to the exact features down to 0.9905 / 0.9912 / 0.9822, top-1 "
    "class changed on 0 / 0 / 2 of 48 images; the default fast path: cosine >= 0.9999998, "
    "no change"
)
#: attributes that must match for a cache (or a partial run) to be reused
STRICT = (
    "model",
    "card",
    "weights_sha256",
    "preprocess",
    "mode",
    "dtype",
    "dataset",
    "split",
    "images_sha256",
    "decode",
)
#: values a cache made before a setting existed holds implicitly
IMPLICIT = {"decode": "cpu"}


RANDOM_INIT_SUFFIX = "+random-init"  # as cog.leaderboard's (pandas-free import here)


def cache_path(model: str, dataset: str, split: str, cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/<model>/<dataset>_<split>.h5`; cache_dir defaults to $COG_HOME/features."""
    base = Path(cache_dir) if cache_dir is not None else cog_home() / "features"
    return base / model / f"{dataset}_{split}.h5"


# ------------------------------------------------------------------ settings and checks


def _jsonable(obj) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json.loads(json.dumps(dataclasses.asdict(obj), default=str))
    return json.loads(json.dumps(obj, default=str))


def _settings(
    backbone, images: ImageList, exact: bool | str, dtype: str, decode: str = "cpu"
) -> dict[str, str]:
    s = _card_settings(backbone.card, backbone.weights_sha256, images, exact, dtype, decode)
    s["checkpoint_load"] = str(getattr(backbone, "checkpoint_load", "weights_only"))
    return s


def _mode(exact: bool, jpeg_draft: bool) -> str:
    if exact and jpeg_draft:
        raise CogError("--exact and --jpeg-draft exclude each other (exact decodes full size)")
    return "exact" if exact else ("fast+jpeg-draft" if jpeg_draft else "fast")


def _card_settings(
    card,
    weights_sha256: str,
    images: ImageList,
    exact: bool | str,
    dtype: str,
    decode: str = "cpu",
) -> dict[str, str]:
    """`exact`: a mode name of MODES, or a bool (True: exact, False: fast); `decode`: the
    decode path taken (cpu or gpu, cog.decode), part of the key: paths never mix."""
    card_d = card.to_dict()
    if isinstance(card_d, dict):  # recording a fingerprint does not change the features
        card_d.pop("fingerprint", None)
    pre = card_d.get("preprocess") if isinstance(card_d, dict) else None
    return {
        "model": str(card.name),
        "card": json.dumps(card_d, sort_keys=True),
        "weights_sha256": str(weights_sha256),
        "preprocess": json.dumps(
            pre if pre is not None else _jsonable(card.preprocess), sort_keys=True
        ),
        "mode": exact if isinstance(exact, str) else ("exact" if exact else "fast"),
        "dtype": dtype,
        "dataset": images.name,
        "split": images.split,
        "images_sha256": images.sha256(),
        "decode": decode,
    }


def _short(v: object) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _mismatch(old: dict, new: dict, precision: str | None = None) -> list[str]:
    diff = [
        f"{k}: {_short(old.get(k))} here, {_short(new[k])} asked"
        for k in STRICT
        if str(old.get(k, IMPLICIT.get(k))) != str(new[k])
    ]
    if precision and old.get("precision") not in (None, precision):
        diff.append(f"precision: {old.get('precision')} here, {precision} asked")
    return diff


def _stale_error(where: Path, diff: list[str], what: str) -> CogError:
    return CogError(
        f"{where}: {what} made with other settings ({'; '.join(diff)}); pass --overwrite "
        "(overwrite=True) to replace it, or write to another path (--cache-dir / --out)"
    )


def _existing_attrs(path: Path) -> dict | None:
    """Attributes as stored (JSON ones kept as text, to compare with `_settings`)."""
    try:
        with h5py.File(path, "r") as h5:
            return {k: v.decode() if isinstance(v, bytes) else v for k, v in h5.attrs.items()}
    except OSError:
        return None


@contextlib.contextmanager
def _atomic_h5(out: Path):
    """An HDF5 file written beside `out`, its `complete` attribute set last, then renamed
    over `out`: readers never see a half-written cache."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as h5:
            yield h5
            seal(h5)  # sha256 of every dataset, verified whenever the file is reused
            h5.attrs["complete"] = True
        os.replace(tmp, out)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        reraise_named(e, out)
        raise


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
        # fast mode decodes plain JPEGs with libjpeg-turbo from the bytes (cog.decode); the
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
    """The device pre-processing (cog.decode) when the run takes the device path, else None;
    auto decides by the self-check on a sample of the run's own files (all ranks agree);
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


# ------------------------------------------------------------------ the run


def _plan(n: int, segment: int, batch: int, done: set[int], d: _Dist) -> list[list[int]]:
    """Batches (lists of image indices) of this rank's missing segments, aligned to the
    segment grid so a resumed run forms exactly the same batches."""
    out = []
    for k, a in enumerate(range(0, n, segment)):
        if a in done or k % d.world != d.rank:
            continue
        e = min(a + segment, n)
        out += [list(range(b, min(b + batch, e))) for b in range(a, e, batch)]
    return out


def _part_name(start: int) -> str:
    return f"seg_{start:010d}.h5"


def _done_segments(parts: Path) -> set[int]:
    return {int(p.name[4:14]) for p in parts.glob("seg_*.h5")} if parts.is_dir() else set()


def _write_part(parts: Path, start: int, buf: dict, dtype: str, dim: int) -> None:
    feats = np.concatenate(buf["features"]) if buf["features"] else np.zeros((0, dim))
    s = h5py.string_dtype()
    with _atomic_h5(parts / _part_name(start)) as h5:
        h5.create_dataset("features", data=feats.astype(dtype))
        h5.create_dataset("index", data=np.asarray(buf["index"], dtype=np.int64))
        h5.create_dataset("failed_index", data=np.asarray(buf["failed"], dtype=np.int64))
        h5.create_dataset("failed_reasons", data=np.asarray(buf["failed_reasons"], dtype=s))
        h5.create_dataset("repaired_index", data=np.asarray(buf["repaired"], dtype=np.int64))
        h5.create_dataset("repaired_reasons", data=np.asarray(buf["repaired_reasons"], dtype=s))


def _new_buffer() -> dict:
    keys = ("features", "index", "failed", "failed_reasons", "repaired", "repaired_reasons")
    return {k: [] for k in keys}


class _Forward:
    """Runs the model under inference mode and autocast; on CUDA out-of-memory it halves the
    micro-batch and retries, so the automatic batch size never kills a long run."""

    def __init__(self, model, dev: torch.device, precision: str) -> None:
        self.model, self.dev = model, dev
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.micro: int | None = None
        # a model already cast to half (zoo cards with precision float16) takes half inputs
        dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
        self.input_dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, i = [], 0
        while i < len(x):
            mb = self.micro or len(x)
            chunk = x[i : i + mb].to(self.input_dtype).contiguous(memory_format=torch.channels_last)
            try:
                with (
                    torch.autocast(self.dev.type, dtype=self.amp)
                    if self.amp
                    else contextlib.nullcontext()
                ):
                    y = self.model(chunk)
            except torch.cuda.OutOfMemoryError:
                if mb == 1:
                    raise
                torch.cuda.empty_cache()
                self.micro = max(1, mb // 2)
                tqdm.write(f"CUDA out of memory: model batch lowered to {self.micro}")
                continue
            out.append(y.float())
            i += len(chunk)
        return torch.cat(out)


def extract(
    backbone,
    images: ImageList,
    out: str | Path,
    *,
    exact: bool = False,
    dtype: str = "float16",
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    precision: str = "auto",
    overwrite: bool = False,
    segment: int | None = None,
    progress: bool = True,
    jpeg_draft: bool = False,
    decode: str = "auto",
) -> Path:
    """Extract `backbone` features of `images` into the HDF5 cache `out` and return `out`.

    A complete cache with the same settings is returned as is; one with other settings is
    an error unless `overwrite`. A partial run left by a kill is resumed. Under torchrun
    (WORLD_SIZE > 1) each rank extracts its share and rank 0 writes `out`.
    `precision`: auto (bf16/fp16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16.
    `segment`: images per resumable unit (rounded up to a multiple of the batch size).
    `jpeg_draft`: fast mode also decodes large JPEGs at reduced DCT scale (opt-in; not the
    protocol's pixels, see DRAFT_NOTE). Before extracting, the model is checked against its
    card's fingerprint and the fast path against the card's transform (both recorded).
    `decode`: cpu, gpu (decode and resize on the model's device, cog.decode) or auto (gpu
    only on CUDA after a start-up self-check on the run's own files passes; recorded).
    """
    mode = _mode(exact, jpeg_draft)
    if decode not in DECODES:
        raise CogError(f"unknown decode path {decode!r}; choose one of {list(DECODES)}")
    if decode == "gpu" and mode != "fast":
        raise CogError(f"--decode gpu needs the fast mode (not {mode}); drop --exact/--jpeg-draft")
    t0 = time.perf_counter()
    out = Path(out)
    if dtype not in DTYPES:
        raise CogError(f"unknown feature dtype {dtype!r}; choose one of {list(DTYPES)}")
    if len(images) == 0:
        raise CogError(f"{images.root}: the image list is empty; nothing to extract")
    d = _dist_setup()
    try:
        with _lock(out) if d.world == 1 else contextlib.nullcontext():
            return _extract(
                backbone,
                images,
                out,
                d,
                mode,
                dtype,
                device,
                batch_size,
                workers,
                precision,
                overwrite,
                segment,
                progress,
                t0,
                decode,
            )
    finally:
        if d.created:
            torch.distributed.destroy_process_group()


def _lock(out: Path):
    """Refuse a second process writing the same cache (torchrun ranks coordinate instead)."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}.lock")

    @contextlib.contextmanager
    def held():
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise CogError(
                    f"{out}: another process (pid {f.read().strip() or '?'}) is "
                    "writing this cache; wait for it or use another path"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return held()


def _extract(
    backbone,
    images,
    out,
    d,
    mode,
    dtype,
    device,
    batch_size,
    workers,
    precision,
    overwrite,
    segment,
    progress,
    t0,
    decode="cpu",
) -> Path:
    dev = _device(device, d)
    prec = _precision(precision, dev, backbone.card)
    parts = out.with_name(out.name + ".parts")
    decode, open_choice = _decode_first(decode, mode, dev, out, parts)
    settings = _settings(backbone, images, mode, dtype, decode)
    asked = None if precision == "auto" else prec
    # read-only checks first: every rank sees the same files and raises the same error
    if out.exists():
        old = _existing_attrs(out)
        diff = (
            ["unreadable or incomplete file"]
            if not old or not old.get("complete")
            else (_mismatch(old, settings, asked))
        )
        if not diff:
            verify_file(out)  # a damaged cache is an error, never reused
            if d.rank == 0 and progress:
                print(f"{out}: up to date, nothing to do", file=sys.stderr)
            return out
        if not overwrite:
            raise _stale_error(out, diff, "a feature cache")
    meta_path = parts / "meta.json"
    if meta_path.is_file() and not overwrite:
        meta = json.loads(meta_path.read_text())
        diff = _mismatch(meta["settings"], settings, asked)
        if meta.get("precision") != prec:
            # never merge segments of two precisions (e.g. started on a GPU in bf16, resumed
            # on a CPU in fp32): the cache would record one and hold both
            started = meta.get("precision")
            how = f"chosen for {dev.type}; --precision {started} finishes it as started"
            diff.append(f"precision: {started} here, {prec} {'asked' if asked else how}")
        if diff:
            raise _stale_error(parts, diff, "a partial extraction")
    pipeline = _checked_pipeline(backbone, images, mode, settings, progress and d.rank == 0)
    prep = _decode_path(
        backbone, images, pipeline, settings, dev, open_choice, progress and d.rank == 0, d
    )
    d.barrier()
    if d.rank == 0:
        _remove_stale_temporaries(out, parts)
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            shutil.rmtree(parts, ignore_errors=True)
        if not meta_path.is_file():
            bs = batch_size or (CUDA_BATCH if dev.type == "cuda" else CPU_BATCH)
            seg = bs * math.ceil((segment or SEGMENT_IMAGES) / bs)
            parts.mkdir(parents=True, exist_ok=True)
            meta = {
                "settings": settings,
                "n": len(images),
                "segment": seg,
                "batch_size": bs,
                "precision": prec,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            tmp = parts / f".meta.json.tmp-{os.getpid()}"
            tmp.write_text(json.dumps(meta, indent=1))
            os.replace(tmp, meta_path)
    d.barrier()
    meta = json.loads(meta_path.read_text())
    bs, seg = int(meta["batch_size"]), int(meta["segment"])
    if batch_size and batch_size != bs and d.rank == 0:
        print(
            f"resuming with batch size {bs} (the partial run's) so features stay identical",
            file=sys.stderr,
        )
    _run(
        backbone,
        images,
        parts,
        settings,
        pipeline,
        dtype,
        dev,
        prec,
        bs,
        seg,
        workers,
        d,
        progress,
        prep,
    )
    d.barrier()
    if d.rank == 0:
        summary = _merge(
            out,
            parts,
            images,
            settings,
            meta,
            backbone.feature_dim,
            prec,
            time.perf_counter() - t0,
        )
        if progress:
            _print_summary(out, summary)
    d.barrier()
    return out


def _checked_pipeline(backbone, images, mode: str, settings: dict, verbose: bool) -> _Pipeline:
    """The input pipeline after the two pre-flight checks, both recorded in `settings` (and
    so in the cache): the model against its card's fingerprint (a mismatch is an error),
    and the fast uint8 path against the card's transform (a mismatch falls back to the
    transform)."""
    from cog.fingerprint import verify

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


def _remove_stale_temporaries(out: Path, parts: Path) -> None:
    """Delete temporary files a killed run left (`.<name>.tmp-<pid>`): never read, since
    only renamed files count, but a merge's can be as large as the cache. Only called while
    this run owns `out` (its lock, or rank 0 before any rank writes)."""
    stale = [*out.parent.glob(f".{out.name}.tmp-*")]
    if parts.is_dir():
        stale += [*parts.glob(".seg_*.tmp-*"), *parts.glob(".meta.json.tmp-*")]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _run(
    backbone,
    images,
    parts,
    settings,
    pipeline,
    dtype,
    dev,
    prec,
    bs,
    seg,
    workers,
    d,
    progress,
    prep=None,
) -> None:
    done = _done_segments(parts)
    batches = _plan(len(images), seg, bs, done, d)
    if not batches:
        return
    nw = default_workers(dev, d.local_world) if workers is None else workers
    loader = DataLoader(
        _Images(images, pipeline) if prep is None else _Bytes(images, pipeline),
        batch_sampler=batches,
        num_workers=nw,
        pin_memory=dev.type == "cuda",
        prefetch_factor=2 if nw > 0 else None,
        collate_fn=None if prep is None else devdecode.collate,
    )
    stream = loader if prep is None else devdecode.DeviceBatches(loader, prep, loader.dataset.cpu)
    model = backbone.to(dev).eval().to(memory_format=torch.channels_last)
    # cudnn.benchmark stays off: its timing-based choice of kernels could differ between a
    # run and its resumption, and resumed features must be identical
    forward = _Forward(model, dev, prec)
    total = sum(len(b) for b in batches)
    bar = tqdm(
        total=total,
        unit="img",
        disable=not progress or d.rank != 0,
        smoothing=0.1,
        desc=f"{settings['model']} {settings['dataset']}/{settings['split']}"
        + (f" rank 0/{d.world}" if d.world > 1 else ""),
    )
    buf, start = _new_buffer(), None
    with torch.inference_mode():
        for x, idx, notes, errors in stream:
            first = int(idx[0])
            if start is None:
                start = first - first % seg
            y = forward(pipeline.normalize(x.to(dev, non_blocking=True)))
            if y.ndim != 2 or y.shape[1] != backbone.feature_dim:
                raise CogError(
                    f"{settings['model']}: the model returned {tuple(y.shape)}, "
                    f"expected [batch, {backbone.feature_dim}] (its feature_dim)"
                )
            ok = torch.tensor([not e for e in errors])
            y = y.cpu()[ok].numpy()
            for i, note, err in zip(idx.tolist(), notes, errors, strict=True):
                if err:
                    buf["failed"].append(i)
                    buf["failed_reasons"].append(err)
                    continue
                buf["index"].append(i)
                if note:
                    buf["repaired"].append(i)
                    buf["repaired_reasons"].append(note)
            buf["features"].append(y.astype(dtype))
            last = int(idx[-1]) + 1
            if last == min(start + seg, len(images)):
                _write_part(parts, start, buf, dtype, backbone.feature_dim)
                buf, start = _new_buffer(), None
            bar.update(len(idx))
    bar.close()
    if prep is not None and progress and stream.routed:
        tqdm.write(
            f"rank {d.rank}: {stream.routed} of {total} files took the CPU path (not plain "
            "JPEG, or refused by the device decoder); their repairs and failures are recorded"
        )


def _merge(
    out: Path,
    parts: Path,
    images: ImageList,
    settings: dict,
    meta: dict,
    dim: int,
    prec: str,
    seconds: float,
) -> dict:
    starts = list(range(0, len(images), int(meta["segment"])))
    missing = [s for s in starts if not (parts / _part_name(s)).is_file()]
    if missing:
        raise CogError(
            f"{parts}: segments starting at {missing[:5]} are missing (a rank "
            "failed?); re-run the same command to finish them"
        )
    idx, failed, failed_r, rep, rep_r = [], [], [], [], []
    for s in starts:
        with h5py.File(parts / _part_name(s), "r") as h5:
            verify_integrity(h5, parts / _part_name(s))
            idx.append(h5["index"][()])
            failed += h5["failed_index"][()].tolist()
            failed_r += [
                r.decode() if isinstance(r, bytes) else r for r in h5["failed_reasons"][()]
            ]
            rep += h5["repaired_index"][()].tolist()
            rep_r += [r.decode() if isinstance(r, bytes) else r for r in h5["repaired_reasons"][()]]
    index = np.concatenate(idx)
    m = len(index)
    summary = {
        "images": m,
        "failed": len(failed),
        "repaired": len(rep),
        "repaired_kinds": dict(Counter(n.split(":")[0] for r in rep_r for n in r.split("; "))),
        "seconds": round(seconds, 2),
        "images_per_s": round(m / max(seconds, 1e-9), 1),
        "failed_paths": ([p for p, _ in images.failed] + [images.paths[i] for i in failed])[:20],
    }
    summary["failed"] += len(images.failed)  # listed as images but not readable files
    with _atomic_h5(out) as h5:
        rows = max(1, min(m, (1 << 20) // (dim * np.dtype(settings["dtype"]).itemsize)))
        feats = h5.create_dataset(
            "features",
            shape=(m, dim),
            dtype=settings["dtype"],
            chunks=(rows, dim) if m else None,
        )
        pos = 0
        for st in starts:
            with h5py.File(parts / _part_name(st), "r") as part:
                f = part["features"][()]
            feats[pos : pos + len(f)] = f
            pos += len(f)
        p = images.paths
        _write_lists(
            h5,
            images.labels[index],
            [p[i] for i in index],
            images.classes,
            [*images.failed, *((p[i], r) for i, r in zip(failed, failed_r, strict=True))],
            [(p[i], r) for i, r in zip(rep, rep_r, strict=True)],
        )
        for k, v in settings.items():
            h5.attrs[k] = v
        h5.attrs["precision"] = prec
        h5.attrs["images_root"] = str(images.root)
        h5.attrs["cog_version"] = cog.__version__
        h5.attrs["torch_version"] = str(torch.__version__)
        h5.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        h5.attrs["summary"] = json.dumps(summary)
    shutil.rmtree(parts, ignore_errors=True)
    return summary


def _write_lists(h5, labels, paths, classes, failed, repaired) -> None:
    """The cache's per-image and per-class datasets; failed/repaired are (path, reason)."""
    s = h5py.string_dtype()
    h5.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    h5.create_dataset("paths", data=np.asarray(paths, dtype=s))
    h5.create_dataset("classes", data=np.asarray(classes, dtype=s))
    for name, items in (("failed", failed), ("repaired", repaired)):
        h5.create_dataset(f"{name}_paths", data=np.asarray([p for p, _ in items], dtype=s))
        h5.create_dataset(f"{name}_reasons", data=np.asarray([r for _, r in items], dtype=s))


def _print_summary(out: Path, s: dict) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in s["repaired_kinds"].items())
    print(
        f"{out}: {s['images']} images, {s['failed']} failed, {s['repaired']} decoded after "
        f"a fix{f' ({kinds})' if kinds else ''}; {s['seconds']:.1f} s, "
        f"{s['images_per_s']:.1f} images/s",
        file=sys.stderr,
    )
    for p in s["failed_paths"]:
        print(f"  failed: {p}", file=sys.stderr)
    if s["failed"] > 0.01 * (s["images"] + s["failed"]):
        print(
            f"WARNING: {s['failed']} of {s['images'] + s['failed']} images could not be "
            "decoded; check the image root (failed_paths/failed_reasons in the file)",
            file=sys.stderr,
        )
    if s["failed"] > len(s["failed_paths"]):
        print(
            f"  ... and {s['failed'] - len(s['failed_paths'])} more (failed_paths in the file)",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ from model names


def ensure_features(
    model: str,
    dataset: str,
    split: str,
    *,
    cache_dir: str | Path | None = None,
    in1k_root: str | Path | None = None,
    imagenet_root: str | Path | None = None,
    levels: str | Path | None = None,
    splits: str | Path | None = None,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    exact: bool = False,
    device: str = "auto",
    dtype: str = "float16",
    precision: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    jpeg_draft: bool = False,
    decode: str = "auto",
) -> Path:
    """The cache of zoo model `model` on (dataset, split), extracting (or resuming) it if
    needed. Composite cards (card.base) project the base model's cache, never re-decoding."""
    from cog import zoo

    card = zoo.get_card(model)
    # random weights get their own folder (named like their leaderboard rows), so that a
    # smoke run never sits beside, or is mistaken for, the trained model's cache
    folder = f"{card.name}{RANDOM_INIT_SUFFIX}" if random_init else card.name
    out = cache_path(folder, dataset, split, cache_dir)
    kw = dict(
        cache_dir=cache_dir,
        in1k_root=in1k_root,
        imagenet_root=imagenet_root,
        levels=levels,
        splits=splits,
        checkpoint=checkpoint,
        random_init=random_init,
        exact=exact,
        device=device,
        dtype=dtype,
        precision=precision,
        batch_size=batch_size,
        workers=workers,
        overwrite=False,
        progress=progress,
        jpeg_draft=jpeg_draft,
        decode=decode,
    )
    if getattr(card, "base", None):
        base = ensure_features(card.base, dataset, split, **kw)
        return project_features(card, base, out, dtype=dtype, overwrite=overwrite)
    images = dataset_images(
        dataset,
        split,
        in1k_root=in1k_root,
        imagenet_root=imagenet_root,
        levels=levels,
        splits=splits,
    )
    # a complete cache is checked without loading the model when the weights' digest is
    # known beforehand: random init, a checkpoint file, or the card's weights already on
    # disk (zoo.load hashes the same file, so the digests agree)
    if random_init:
        known = "random-init"
    elif checkpoint:
        ckpt = Path(checkpoint).expanduser()
        known = zoo.file_sha256(ckpt) if ckpt.is_file() else None  # load() names a bad path
    else:
        known = zoo.cached_weights_sha256(card)
    if known and out.exists() and not overwrite:
        old = _existing_attrs(out)
        path = decode
        if decode == "auto":  # cpu without CUDA; on CUDA either checked path is accepted
            cuda = device != "cpu" and torch.cuda.is_available()
            path = str((old or {}).get("decode", IMPLICIT["decode"])) if cuda else "cpu"
        mode = _mode(exact, jpeg_draft)
        settings = _card_settings(card, known, images, mode, dtype, path)
        if (
            old
            and old.get("complete")
            and not _mismatch(old, settings, None if precision == "auto" else precision)
        ):
            verify_file(out)  # a damaged cache is an error, never reused
            return out
    backbone = zoo.load(card.name, checkpoint=checkpoint, random_init=random_init, device="cpu")
    return extract(
        backbone,
        images,
        out,
        exact=exact,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        workers=workers,
        precision=precision,
        overwrite=overwrite,
        progress=progress,
        jpeg_draft=jpeg_draft,
        decode=decode,
    )


def project_features(
    card,
    base: str | Path,
    out: str | Path,
    *,
    dtype: str = "float16",
    overwrite: bool = False,
    chunk: int = 65536,
) -> Path:
    """Write the cache of a composite card: `cog.tldr.load_projection(card.projection.path)`
    applied chunk by chunk to the base model's cache `base` (no image is decoded)."""
    from cog import zoo
    from cog.features import open_features
    from cog.tldr import load_projection

    out = Path(out)
    proj = card.projection
    field = proj.get if isinstance(proj, dict) else lambda k: getattr(proj, k, None)
    proj_path, proj_sha = zoo.projection_file(
        card.name, card.source_file, field("path"), field("sha256")
    )
    with open_features(base) as fs:
        attrs = _existing_attrs(Path(base)) or {}
        fitted_on = (card.training or {}).get("base_weights_sha256")
        if fitted_on and str(attrs.get("weights_sha256")) != str(fitted_on):
            raise CogError(
                f"{card.name}: its projection was fitted on {card.base} features of weights "
                f"{fitted_on}, but {base} holds features of weights "
                f"{attrs.get('weights_sha256')}; refit it on these features with "
                f"`cog-tldr fit {card.base} ...` (random-init and trained weights never mix)"
            )
        settings = {k: str(attrs.get(k, IMPLICIT.get(k))) for k in STRICT}
        settings.update(
            model=str(card.name), card=json.dumps(card.to_dict(), sort_keys=True), dtype=dtype
        )
        settings["weights_sha256"] = f"{attrs.get('weights_sha256')}+projection:{proj_sha}"
        if out.exists():
            old = _existing_attrs(out)
            diff = (
                ["unreadable or incomplete file"]
                if not old or not old.get("complete")
                else (_mismatch(old, settings))
            )
            if not diff:
                verify_file(out)
                return out
            if not overwrite:
                raise _stale_error(out, diff, "a feature cache")
        module = load_projection(proj_path).eval()
        with _atomic_h5(out) as h5, torch.inference_mode():
            feats = None
            pos = 0
            for x in tqdm(
                fs.iter_chunks(chunk),
                total=math.ceil(len(fs) / chunk),
                desc=f"{card.name}: projecting {card.base}",
                unit="chunk",
            ):
                y = module(torch.from_numpy(x)).float().numpy()
                if feats is None:
                    feats = h5.create_dataset(
                        "features",
                        shape=(len(fs), y.shape[1]),
                        dtype=dtype,
                        chunks=(min(len(fs), 1024), y.shape[1]),
                    )
                feats[pos : pos + len(y)] = y
                pos += len(y)
            if feats is None:
                raise CogError(f"{base}: the base cache holds no features to project")
            _write_lists(h5, fs.labels, fs.paths, fs.classes, fs.failed, fs.repaired)
            for k, v in {**attrs, **settings}.items():
                if k != "complete":
                    h5.attrs[k] = v
            h5.attrs["base_model"] = str(card.base)
            h5.attrs["base_weights_sha256"] = str(attrs.get("weights_sha256"))
            h5.attrs["projection_sha256"] = proj_sha
            h5.attrs["cog_version"] = cog.__version__
    return out

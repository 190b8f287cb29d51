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
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import cog
from cog import CogError
from cog.features import decode as devdecode
from cog.features.images import ImageList
from cog.features.integrity import seal, verify_file
from cog.features.integrity import verify as verify_integrity
from cog.features.options import ExtractOptions, updated_options
from cog.features.pipeline import (
    _Bytes,
    _checked_pipeline,
    _decode_first,
    _decode_path,
    _device,
    _Dist,
    _dist_setup,
    _Images,
    _precision,
    default_workers,
)
from cog.features.settings import (
    _existing_attrs,
    _mismatch,
    _settings,
    _stale_error,
)
from cog.io import reraise_named

SEGMENT_IMAGES = 8192
CPU_BATCH, CUDA_BATCH = 32, 256


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
    options: ExtractOptions | None = None,
    *,
    overwrite: bool = False,
    segment: int | None = None,
    **settings: Any,
) -> Path:
    """Extract `backbone` features of `images` into the HDF5 cache `out` and return `out`.

    `options` (cog.features.options.ExtractOptions) says how; keyword `settings` name its
    fields for a one-off call (`extract(bb, images, out, exact=True)`). A complete cache
    with the same settings is returned as is; one with other settings is an error unless
    `overwrite`. A partial run left by a kill is resumed. Under torchrun (WORLD_SIZE > 1)
    each rank extracts its share and rank 0 writes `out`. `segment`: images per resumable
    unit (rounded up to a multiple of the batch size). Before extracting, the model is
    checked against its card's fingerprint and the fast path against the card's transform
    (both recorded); `decode` auto takes the device path only on CUDA after a self-check on
    the run's own files passes (recorded).
    """
    opts = updated_options(options, settings)
    t0 = time.perf_counter()
    out = Path(out)
    if len(images) == 0:
        raise CogError(f"{images.root}: the image list is empty; nothing to extract")
    d = _dist_setup()
    try:
        with _lock(out) if d.world == 1 else contextlib.nullcontext():
            return _extract(backbone, images, out, d, opts, overwrite, segment, t0)
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


@dataclass
class _Job:
    """One extraction past its checks: what the segment loop needs."""

    backbone: Any
    images: ImageList
    settings: dict
    pipeline: Any
    opts: ExtractOptions
    dev: torch.device
    prec: str
    d: _Dist
    prep: Any = None  # the device pre-processing (cog.features.decode), None on the CPU path

    @property
    def talk(self) -> bool:
        return self.opts.progress and self.d.rank == 0


def _extract(
    backbone, images, out: Path, d: _Dist, opts: ExtractOptions, overwrite: bool, segment, t0
) -> Path:
    dev = _device(opts.device, d)
    prec = _precision(opts.precision, dev, backbone.card)
    parts = out.with_name(out.name + ".parts")
    decode, open_choice = _decode_first(opts.decode, opts.mode, dev, out, parts)
    settings = _settings(backbone, images, opts.mode, opts.dtype, decode)
    asked = None if opts.precision == "auto" else prec
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
            if d.rank == 0 and opts.progress:
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
    talk = opts.progress and d.rank == 0
    pipeline = _checked_pipeline(backbone, images, opts.mode, settings, talk)
    prep = _decode_path(backbone, images, pipeline, settings, dev, open_choice, talk, d)
    job = _Job(backbone, images, settings, pipeline, opts, dev, prec, d, prep)
    d.barrier()
    if d.rank == 0:
        _remove_stale_temporaries(out, parts)
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            shutil.rmtree(parts, ignore_errors=True)
        if not meta_path.is_file():
            bs = opts.batch_size or (CUDA_BATCH if dev.type == "cuda" else CPU_BATCH)
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
    if opts.batch_size and opts.batch_size != bs and d.rank == 0:
        print(
            f"resuming with batch size {bs} (the partial run's) so features stay identical",
            file=sys.stderr,
        )
    _run(job, parts, bs, seg)
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
        if opts.progress:
            _print_summary(out, summary)
    d.barrier()
    return out


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


def _run(job: _Job, parts: Path, bs: int, seg: int) -> None:
    """Extract the segments of this rank that `parts` lacks, each written when complete."""
    images, pipeline, settings, dev, d = job.images, job.pipeline, job.settings, job.dev, job.d
    backbone, prep, dtype, workers = job.backbone, job.prep, job.opts.dtype, job.opts.workers
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
    forward = _Forward(model, dev, job.prec)
    total = sum(len(b) for b in batches)
    bar = tqdm(
        total=total,
        unit="img",
        disable=not job.talk,
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
    if prep is not None and job.opts.progress and stream.routed:
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

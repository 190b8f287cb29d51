"""The MoCo-v2 / MoCHi training loop behind `cog-train-mochi`: data, augmentation, DDP,
mixed precision, the cosine schedule, resumable checkpoints in the public MoCo layout, the
JSON-lines log, and the zoo card that makes the result evaluable by name.

Resuming is exact at epoch boundaries: the checkpoint holds the model (both encoders, the
queue), the optimizer, the AMP scaler and every process's RNG states, and each epoch's data
order is a function of (seed, epoch). A run killed mid-epoch restarts that epoch.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import cog
from cog import CogError
from cog.io import atomic_write, sha256_file
from cog.ssl.config import TrainConfig, TrainingInterrupted
from cog.ssl.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ImageSet,
    eval_transform,
    find_images,
    moco_v2_augmentation,
)
from cog.ssl.mochi import MochiParams, MoCo, encode, feature_metrics, parse_arch
from cog.ssl.runtime import (
    CHECKPOINT,
    LOG,
    Runtime,
    _gather_objects,
    _log,
    _rng_state,
    _set_rng_state,
    _trim_log,
    load_checkpoint,
    save_checkpoint,
    setup_runtime,
)

# settings a checkpoint cannot be resumed under if they change
STRUCTURAL = ("arch", "dim", "mlp_dim", "queue", "data")


# ---------------------------------------------------------------------------------------------
# training


def cosine_lr(base: float, epoch_float: float, epochs: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch_float / epochs))


@torch.no_grad()
def evaluate_heldout(encoder: nn.Module, loader: DataLoader, rt: Runtime) -> dict[str, Any]:
    """Alignment/uniformity of backbone features and head outputs on the held-out images."""
    was_training = encoder.training
    encoder.eval()
    feats, heads, labels = [], [], []
    for x, y in loader:
        with _autocast(rt):
            f, h = encode(encoder, x.to(rt.device, non_blocking=True))
        feats.append(f.float().cpu())
        heads.append(h.float().cpu())
        labels.append(y)
    encoder.train(was_training)
    y = torch.cat(labels)
    return {
        "backbone": feature_metrics(torch.cat(feats), y),
        "head": feature_metrics(torch.cat(heads), y),
    }


def _autocast(rt: Runtime) -> contextlib.AbstractContextManager:
    if rt.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype)


def _split(images: ImageSet, cfg: TrainConfig) -> tuple[ImageSet, ImageSet | None]:
    """Hold `cfg.holdout` images (seeded) out of training for the feature-space metrics."""
    n = len(images.paths)
    n_hold = min(cfg.holdout, n // 5)
    if n_hold < 2:
        return images, None
    order = np.random.default_rng(cfg.seed).permutation(n)
    return images.subset(np.sort(order[n_hold:])), images.subset(np.sort(order[:n_hold]))


def _build_model(cfg: TrainConfig, rt: Runtime) -> MoCo:
    torch.manual_seed(cfg.seed)  # identical initial weights and queue on every process
    model = MoCo(
        arch=resolve_arch(cfg.arch),
        dim=cfg.dim,
        mlp_dim=cfg.mlp_dim,
        queue_size=cfg.queue,
        momentum=cfg.key_momentum,
        temperature=cfg.temperature,
        shuffle_bn=cfg.bn == "shuffle",
    )
    if cfg.bn == "sync" and rt.world > 1:
        if rt.device.type != "cuda":
            raise CogError("--bn sync needs GPUs; use --bn shuffle on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(rt.device)
    if rt.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def resolve_arch(arch: str) -> str:
    """A timm/torchvision architecture for `--arch`: "resnet50", "timm:NAME",
    "torchvision:NAME", or a zoo model name (its card's architecture, randomly initialised)."""
    import timm

    lib, name = parse_arch(arch)
    if ":" in arch or "/" in arch or timm.is_model(name):
        return f"{lib}:{name}"
    try:
        from cog import zoo
    except ImportError:
        return f"{lib}:{name}"
    try:
        card = zoo.get_card(arch)
    except CogError:
        return f"{lib}:{name}"  # build_encoder names close timm matches
    if card.arch is None or card.arch.source not in ("timm", "torchvision"):
        source = "a composite card" if card.arch is None else f"cog.zoo.archs ({card.arch.name})"
        raise CogError(
            f"--arch {arch}: zoo model {card.name} is built from {source}, which the trainer "
            "cannot build; pass a timm or torchvision architecture (e.g. --arch resnet50)"
        )
    return f"{card.arch.source}:{card.arch.name}"


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> Path:
    """Train (or, with `resume`, continue) a run; returns the final checkpoint's path.

    Writes `<out>/checkpoint.pth.tar` after every epoch and, at the end, the immutable
    `<out>/checkpoint_<epochs>.pth.tar` that the zoo card points at.
    """
    cfg.validate()
    mochi = cfg.mochi_params()
    rt = setup_runtime(cfg)
    if cfg.batch_size % rt.world:
        raise CogError(f"--batch-size {cfg.batch_size} is not divisible by {rt.world} processes")
    out = cfg.out_dir()
    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    if ckpt_path.exists() and not resume:
        raise CogError(
            f"{ckpt_path}: a run already exists here; pass --resume to continue it or choose "
            "another --out/--name"
        )
    images = find_images(cfg.data)
    train_set, held = _split(images, cfg)
    local_batch = cfg.batch_size // rt.world
    iters = len(train_set.paths) // rt.world // local_batch
    if iters == 0:
        raise CogError(
            f"--data {cfg.data}: {len(train_set.paths)} training images are fewer than one "
            f"batch ({cfg.batch_size}); lower --batch-size"
        )

    model = _build_model(cfg, rt)
    torch.manual_seed(cfg.seed + rt.rank)  # distinct augmentation streams per process
    np.random.seed(cfg.seed + rt.rank)
    random.seed(cfg.seed + rt.rank)
    base_lr = cfg.lr * cfg.batch_size / 256
    opt = torch.optim.SGD(
        model.encoder_q.parameters(),
        lr=base_lr,
        momentum=cfg.sgd_momentum,
        weight_decay=cfg.weight_decay,
    )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    start_epoch = 0
    if resume and ckpt_path.exists():
        start_epoch = _restore(ckpt_path, cfg, rt, model, opt, scaler)
    net: nn.Module = model
    if rt.world > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        # the queue is updated identically everywhere: never re-broadcast it each step
        quiet = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers"
            in inspect.signature(nn.parallel.DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids, **quiet)

    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "config.json") as f:
            json.dump(cfg.to_dict(), f, indent=2)
        if start_epoch:
            _trim_log(log_path, start_epoch)
            _log(log_path, {"event": "resume", "epoch": start_epoch, "world_size": rt.world})
        else:
            log_path.unlink(missing_ok=True)
            _log(log_path, _start_record(cfg, images, train_set, held, rt, model))

    dataset = ImageDataset(train_set, moco_v2_augmentation(cfg.image_size), two_views=True)
    sampler = DistributedSampler(
        dataset, num_replicas=rt.world, rank=rt.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    loader = DataLoader(
        dataset,
        batch_size=local_batch,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=rt.device.type == "cuda",
        drop_last=True,
        persistent_workers=False,  # fresh worker seeds each epoch: resumption stays exact
    )
    held_loader = None
    if held is not None and rt.main:
        held_loader = DataLoader(
            ImageDataset(held, eval_transform(cfg.eval_size), two_views=False),
            batch_size=max(1, min(256, local_batch)),
            num_workers=min(cfg.workers, 4),
            generator=torch.Generator().manual_seed(cfg.seed),  # leaves the training RNG alone
        )

    loop = _Loop(
        net, loader, opt, scaler, cfg, rt, iters, base_lr, log_path, progress, stop_after_steps
    )
    step = start_epoch * iters
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        mixing = mochi if (mochi is not None and epoch >= cfg.mochi_warmup) else None
        summary = _train_epoch(loop, epoch, mixing, step)
        step += iters
        record = {"event": "epoch", "epoch": epoch, **summary}
        if held_loader is not None and (
            (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        ):
            record["heldout"] = evaluate_heldout(model.encoder_q, held_loader, rt)
        rngs = _gather_objects(_rng_state(), rt)
        if rt.main:
            _log(log_path, record)
            ckpt = _checkpoint(cfg, model, opt, scaler, epoch + 1, rngs)
            save_checkpoint(ckpt_path, ckpt)
        if rt.world > 1:
            dist.barrier()
    final = out / f"checkpoint_{cfg.epochs:04d}.pth.tar"
    if rt.main and not final.exists():
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        os.link(ckpt_path, tmp)
        os.replace(tmp, final)
    if rt.world > 1:
        dist.barrier()
    return final


def _batches(loader: DataLoader) -> Iterator:
    """The loader's batches; a CogError from a worker keeps its one-line message."""
    try:
        yield from loader
    except CogError as e:
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise CogError(lines[-1].removeprefix("cog.CogError: ") if lines else str(e)) from None


@dataclass
class _Loop:
    """What every epoch of a run shares."""

    net: nn.Module
    loader: DataLoader
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    cfg: TrainConfig
    rt: Runtime
    iters: int
    base_lr: float
    log_path: Path
    progress: bool
    stop_after_steps: int | None


def _train_epoch(loop: _Loop, epoch: int, mixing: MochiParams | None, step: int) -> dict[str, Any]:
    """One pass over the data; returns the epoch's summary record."""
    net, opt, scaler, cfg, rt, iters = (
        loop.net, loop.opt, loop.scaler, loop.cfg, loop.rt, loop.iters
    )  # fmt: skip
    net.train()
    losses = torch.zeros((), device=rt.device)
    t0 = t_last = time.perf_counter()
    last_it = -1
    bar = tqdm(
        total=iters,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (loop.progress and rt.main),
        leave=False,
        dynamic_ncols=True,
    )
    oracle: dict[str, list[float]] = {}
    for it, (im_q, im_k, labels) in enumerate(_batches(loop.loader)):
        lr = cosine_lr(loop.base_lr, epoch + it / iters, cfg.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        im_q = im_q.to(rt.device, non_blocking=True)
        im_k = im_k.to(rt.device, non_blocking=True)
        if rt.device.type == "cuda":
            im_q = im_q.contiguous(memory_format=torch.channels_last)
            im_k = im_k.contiguous(memory_format=torch.channels_last)
        analyse = it % cfg.log_every == 0 or it == iters - 1
        with _autocast(rt):
            loss, stats = net(im_q, im_k, labels.to(rt.device), mochi=mixing, analyse=analyse)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses += loss.detach()
        bar.update(1)
        if analyse:
            now = time.perf_counter()
            n_img = (it - last_it) * cfg.batch_size
            rec = {
                "event": "step",
                "epoch": epoch,
                "step": step + it,
                "loss": float(loss.detach()),
                "lr": lr,
                "images_per_s": n_img / max(now - t_last, 1e-9),
                "mixing": mixing is not None,
                **stats,
            }
            for k, v in stats.items():
                oracle.setdefault(k, []).append(v)
            t_last, last_it = now, it
            if rt.main:
                _log(loop.log_path, rec)
                bar.set_postfix(
                    loss=f"{rec['loss']:.3f}", lr=f"{lr:.4f}", ips=f"{rec['images_per_s']:.0f}"
                )
        if loop.stop_after_steps is not None and step + it + 1 >= loop.stop_after_steps:
            bar.close()
            raise TrainingInterrupted(f"stopped after step {step + it + 1}")
    bar.close()
    if rt.world > 1:
        dist.all_reduce(losses)
        losses /= rt.world
    elapsed = time.perf_counter() - t0
    return {
        "loss": float(losses) / iters,
        "lr": lr,
        "images_per_s": iters * cfg.batch_size / elapsed,
        "time_s": elapsed,
        "mixing": mixing is not None,
        **{k: float(np.nanmean(v)) for k, v in oracle.items() if not all(map(math.isnan, v))},
    }


def _start_record(cfg, images, train_set, held, rt, model) -> dict[str, Any]:
    return {
        "event": "start",
        "epoch": 0,
        "config": cfg.to_dict(),
        "data_root": str(images.root),
        "n_images": len(images.paths),
        "n_train": len(train_set.paths),
        "n_heldout": 0 if held is None else len(held.paths),
        "heldout_seed": cfg.seed,
        "n_classes": len(images.classes),
        "world_size": rt.world,
        "device": str(rt.device),
        "precision": str(rt.amp_dtype or "fp32"),
        "arch": model.arch,
        "feature_dim": model.feature_dim,
        "torch": torch.__version__,
        "cog_version": cog.__version__,
    }


def _checkpoint(cfg, model: MoCo, opt, scaler, epoch: int, rngs: list) -> dict[str, Any]:
    """The public MoCo layout (`module.`-prefixed state_dict, `epoch` = next epoch, `arch`,
    `optimizer`) plus what exact resumption needs."""
    return {
        "epoch": epoch,
        "arch": model.arch,
        "state_dict": {f"module.{k}": v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_states": rngs,
        "config": cfg.to_dict(),
        "feature_dim": model.feature_dim,
        "cog_version": cog.__version__,
    }


def _restore(path: Path, cfg: TrainConfig, rt: Runtime, model: MoCo, opt, scaler) -> int:
    ckpt = load_checkpoint(path)
    old = ckpt["config"]
    changed = [k for k in STRUCTURAL if str(old.get(k)) != str(getattr(cfg, k))]
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in changed)
        raise CogError(
            f"{path}: cannot resume with changed settings ({diffs}); use the original values "
            "or a new --out"
        )
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    opt.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    rngs = ckpt.get("rng_states") or []
    if len(rngs) == rt.world:
        _set_rng_state(rngs[rt.rank])
    return int(ckpt["epoch"])


# ---------------------------------------------------------------------------------------------
# the zoo card


def mochi_card(cfg: TrainConfig, checkpoint: str | Path) -> dict[str, Any]:
    """A `local` zoo card for a finished run: weights = `module.encoder_q.*` minus the head."""
    checkpoint = Path(checkpoint).resolve()
    ckpt = load_checkpoint(checkpoint)
    lib, name = parse_arch(ckpt["arch"])
    mochi = cfg.mochi_params()
    return {
        "name": cfg.name,
        "group": "local",
        # torchvision encoders keep their `fc` in the module (build_encoder swaps it for an
        # identity) while the moco converter drops `fc.*`: the card says so, as shipped ones do
        "arch": {"source": lib, "name": name, "identity": ["fc"]}
        if lib == "torchvision"
        else f"{lib}:{name}",
        "checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)},
        "converter": "moco",
        "feature_dim": int(ckpt["feature_dim"]),
        "preprocess": {
            "resize": cfg.eval_size,
            "crop": cfg.eval_size,
            "interpolation": "bicubic",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "channel_order": "RGB",
        },
        "description": (
            f"MoCo-v2 + MoCHi({mochi})" if mochi else "MoCo-v2 (no hard negative mixing)"
        )
        + f", {ckpt['epoch']} epochs on {cfg.data}, trained here by cog-train-mochi",
        "training": {**cfg.to_dict(), "epochs_trained": int(ckpt["epoch"])},
    }

"""The training run's process state: devices and DDP, RNG states, checkpoints in the
public MoCo layout, the JSON-lines log.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from cog import CogError
from cog.io import atomic_write
from cog.ssl.config import TrainConfig

CHECKPOINT = "checkpoint.pth.tar"
LOG = "log.jsonl"


# ---------------------------------------------------------------------------------------------
# processes, devices, precision


@dataclass
class Runtime:
    rank: int
    world: int
    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Join the torchrun process group when there is one (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CogError(f"--device {cfg.device}: CUDA is not available; use --device cpu")
        device = torch.device("cuda", local if world > 1 else torch.device(want).index or 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device(want)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    precision = cfg.precision
    if precision == "auto":
        if device.type != "cuda":
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision != "fp32" and device.type != "cuda":
        raise CogError(f"--precision {precision}: mixed precision needs a GPU; use fp32 on CPU")
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Runtime(rank, world, device, amp)


def _rng_state() -> dict[str, Any]:
    """This process's RNG streams, in types `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _gather_objects(obj: Any, rt: Runtime) -> list[Any]:
    if rt.world == 1:
        return [obj]
    out: list[Any] = [None] * rt.world
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------
# checkpoints and log


def save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    """Atomic torch.save: a half-written checkpoint never replaces a good one."""
    with atomic_write(path, "wb") as f:
        torch.save(ckpt, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CogError(f"{path}: not a readable checkpoint ({e}); delete it to start over") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise CogError(f"{path}: not a cog-train-mochi checkpoint (no state_dict/config)")
    return ckpt


def _log(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; NaN (e.g. no labelled negative yet) is written as null."""
    record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _trim_log(path: Path, start_epoch: int) -> None:
    """Drop records of epochs that the resumed run will train again."""
    if not path.is_file():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if json.loads(ln).get("epoch", 0) < start_epoch
    ]
    with atomic_write(path) as f:
        f.write("".join(ln + "\n" for ln in keep))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a run's log.jsonl (in the order written)."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]

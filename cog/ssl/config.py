"""`TrainConfig`: every setting of a MoCo-v2 / MoCHi run, checked, and what may change
on resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cog import CogError
from cog.io import cog_home
from cog.ssl.mochi import MochiParams


class TrainingInterrupted(RuntimeError):
    """Raised by `train(..., stop_after_steps=n)`: simulates a kill, for resume tests."""


@dataclass
class TrainConfig:
    """Every setting of a run; saved in the checkpoint and the zoo card's `training` field."""

    data: str
    name: str
    out: str | None = None
    arch: str = "resnet50"
    epochs: int = 200
    batch_size: int = 256  # global, over all processes
    image_size: int = 224
    queue: int = 65536
    dim: int = 128
    mlp_dim: int | None = None  # hidden width of the head; None = backbone feature width
    key_momentum: float = 0.999
    temperature: float = 0.2
    mochi: str = "512,1024,512"  # "N,s,s'" or "off"
    mochi_warmup: int = 15  # epochs of plain MoCo-v2 before mixing starts
    lr: float = 0.03  # for a batch of 256, scaled linearly
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4
    workers: int = 8
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    bn: str = "shuffle"  # shuffle | sync | local (multi-process only)
    seed: int = 0
    holdout: int = 512  # images kept out of training for alignment/uniformity
    eval_every: int = 10
    log_every: int = 50
    eval_size: int = 224  # evaluation preprocessing (card): resize short side, centre crop
    extra: dict = field(default_factory=dict)

    def mochi_params(self) -> MochiParams | None:
        return MochiParams.parse(self.mochi)

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else cog_home() / "train" / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 2, "--batch-size must be at least 2"),
            (self.image_size >= 16, "--image-size must be at least 16"),
            (
                self.precision in ("auto", "fp32", "bf16", "fp16"),
                "--precision: auto|fp32|bf16|fp16",
            ),
            (self.bn in ("shuffle", "sync", "local"), "--bn: shuffle|sync|local"),
            (0 <= self.key_momentum < 1, "--key-momentum must be in [0, 1)"),
            (self.temperature > 0, "--temperature must be positive"),
            (self.holdout >= 0 and self.mochi_warmup >= 0, "--holdout/--mochi-warmup >= 0"),
            (self.eval_every >= 1 and self.log_every >= 1, "--eval-every/--log-every >= 1"),
            (self.workers >= 0 and self.eval_size >= 16, "--workers >= 0, --eval-size >= 16"),
            (self.lr > 0 and self.dim >= 1 and self.queue >= 1, "--lr, --dim, --queue > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CogError(f"{self.name}: {msg}")
        params = self.mochi_params()
        if params is not None and params.n_hard > self.queue:
            raise CogError(
                f"--mochi {self.mochi}: N={params.n_hard} exceeds the queue (--queue "
                f"{self.queue}); lower N or enlarge the queue"
            )

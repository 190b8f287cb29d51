"""`Backbone`, the frozen feature extractor `cog.zoo.load` returns (also `cog.zoo.Backbone`).

Kept apart from cog.zoo so that reading model cards does not import torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from cog.zoo import ModelCard


class Backbone(nn.Module):
    """A frozen feature extractor: preprocessed images [B,3,H,W] -> features [B, D] float32."""

    def __init__(
        self,
        net: nn.Module,
        card: ModelCard,
        weights_sha256: str,
        projection: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.projection = projection
        self.card = card
        self.feature_dim = card.feature_dim
        self.weights_sha256 = weights_sha256
        self.checkpoint_load = "weights_only"  # how load() read the file (see load_checkpoint)
        self.transform = card.preprocess.transform()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.card.base is None and next(net.parameters()).dtype == torch.float16:
            x = x.half()
        if isinstance(net, Backbone) or self.card.feature_pool == "head":
            f = net(x)
        else:  # "cls": final-norm CLS token, never the distillation token
            f = net.forward_features(x)[:, 0]
        f = f.float()
        if self.projection is not None:
            f = self.projection(f).float()
        return f.flatten(1)

    def train(self, mode: bool = True) -> Backbone:
        """Always eval: a frozen extractor never updates BN statistics or applies dropout."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"model={self.card.name!r}, feature_dim={self.feature_dim}"

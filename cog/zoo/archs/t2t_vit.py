"""T2T-ViT_t-14 (Yuan et al., Tokens-to-Token ViT), the variant with transformer T2T layers.

Rebuilt after github.com/yitu-opensource/T2T-ViT (models/t2t_vit.py `T2t_vit_t_14`,
models/token_transformer.py, models/transformer_block.py). Module names follow that code so
the released checkpoint (a timm training checkpoint whose EMA weights sit under
`state_dict_ema`) loads without renaming. The feature is the final-norm CLS token (384-d).

`qk_scale`: the registered model function only sets `qk_scale = 384 ** -0.5` when called with
`pretrained=True`; the training script and the CoG authors create the model with
`pretrained=False`, so the attention scale is head_dim ** -0.5 (None here). It is a
parameter so the other choice can be tried.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cog.zoo.archs._common import StateDict, convert_state_dict

DROPPED = ("head.*",)


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """[1, n_position, dim] fixed sin/cos table: sin on even, cos on odd channels."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    rate = torch.tensor([10000 ** (2 * (j // 2) / dim) for j in range(dim)], dtype=torch.float64)
    table = pos / rate
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table.float().unsqueeze(0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention; `out_dim` != `dim` gives the T2T token attention."""

    def __init__(
        self, dim: int, num_heads: int, out_dim: int | None = None, qk_scale: float | None = None
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.out_dim = out_dim or dim
        # the T2T layers scale by the INPUT width per head, the ViT blocks by the head width
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, self.out_dim * 3, bias=False)
        self.proj = nn.Linear(self.out_dim, self.out_dim)

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        head = self.out_dim // self.num_heads
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, head).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.out_dim)), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]


class TokenTransformer(nn.Module):
    """T2T layer: single-head attention that changes the width, residual taken from v."""

    def __init__(self, dim: int, out_dim: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=1, out_dim=out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, v = self.attn.attend(self.norm1(x))
        x = v.squeeze(1) + out
        return x + self.mlp(self.norm2(x))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qk_scale: float | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qk_scale=qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class T2TModule(nn.Module):
    """Soft split (7x7/4) -> T2T layer -> soft split (3x3/2) -> T2T layer -> split -> project."""

    def __init__(self, embed_dim: int, token_dim: int = 64, in_chans: int = 3) -> None:
        super().__init__()
        self.soft_split0 = nn.Unfold(kernel_size=7, stride=4, padding=2)
        self.soft_split1 = nn.Unfold(kernel_size=3, stride=2, padding=1)
        self.soft_split2 = nn.Unfold(kernel_size=3, stride=2, padding=1)
        self.attention1 = TokenTransformer(in_chans * 7 * 7, token_dim)
        self.attention2 = TokenTransformer(token_dim * 3 * 3, token_dim)
        self.project = nn.Linear(token_dim * 3 * 3, embed_dim)

    @staticmethod
    def _to_map(x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        side = math.isqrt(n)
        return x.transpose(1, 2).reshape(b, c, side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention1(self.soft_split0(x).transpose(1, 2))
        x = self.attention2(self.soft_split1(self._to_map(x)).transpose(1, 2))
        return self.project(self.soft_split2(self._to_map(x)).transpose(1, 2))


class T2TViT(nn.Module):
    """T2T-ViT without its classification head: forward returns the final-norm CLS token."""

    def __init__(
        self,
        img_size: int = 224,
        embed_dim: int = 384,
        depth: int = 14,
        num_heads: int = 6,
        mlp_ratio: float = 3.0,
        qk_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.tokens_to_token = T2TModule(embed_dim)
        num_patches = (img_size // 16) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            sinusoid_table(num_patches + 1, embed_dim), requires_grad=False
        )
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qk_scale) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.feature_dim = embed_dim
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens_to_token(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def t2t_vit_t_14(qk_scale: float | None = None) -> T2TViT:
    """T2T-ViT_t-14: 384 wide, 14 blocks, 6 heads, MLP ratio 3 (21.5M params with its head)."""
    return T2TViT(embed_dim=384, depth=14, num_heads=6, mlp_ratio=3.0, qk_scale=qk_scale)


def convert_t2t_vit_t_14(ckpt: Any) -> tuple[StateDict, list[str]]:
    """timm training checkpoint -> t2t_vit_t_14, EMA weights first (as load_checkpoint(use_ema))."""
    return convert_state_dict(
        ckpt,
        arch="t2t_vit_t_14",
        builder=t2t_vit_t_14,
        entries=("state_dict_ema", "state_dict"),
        dropped=DROPPED,
    )

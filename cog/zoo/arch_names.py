"""The names of the architectures cog.zoo.archs builds, each with its checkpoint converter.

The one list of them, kept free of torch so cards may name an architecture (and
cog.zoo.convert list its converter) before cog.zoo.archs is importable.
"""

from __future__ import annotations

ARCH_NAMES: tuple[str, ...] = (
    "nat_m4",
    "t2t_vit_t_14",
    "pycls_effnet_b1",
    "pycls_effnet_b4",
    "byol_resnet50",
    "simclrv2_resnet50",
    "clip_rn50",
)

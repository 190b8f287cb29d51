"""The torch device a run uses: "auto" (CUDA when available) or an explicit one,
checked once with a clear error.
"""

from __future__ import annotations

import torch

from cog import CogError

# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise CogError(f"device {device!r} is not a torch device; use auto, cpu or cuda") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CogError(f"device {device!r} asked for, but torch sees no CUDA device; use cpu")
    return dev

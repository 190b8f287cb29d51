"""The architectures of cog.zoo.archs: images/s in fp32 (the baseline) against fp16 autocast,
and how far the fp16 features drift (the paper ran CLIP in fp16 on a V100).

    python benchmarks/bench_archs.py [--batch 64] [--iters 10] [--device auto] [--names ...]

Random weights (speed does not depend on them); inputs at each architecture's input size;
`torch.inference_mode()`; CUDA timings synchronised, after 2 warm-up batches.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from cog.io import atomic_write
from cog.zoo.archs import ARCHS, INPUT_SIZES

HERE = Path(__file__).resolve().parent


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _run(model, x, iters: int, fp16: bool) -> tuple[torch.Tensor, float]:
    dev = x.device

    def once():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            return model(x).float()

    with torch.inference_mode():
        for _ in range(2):
            out = once()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            out = once()
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return out, x.shape[0] * iters / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--names", nargs="*", default=sorted(ARCHS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "archs.json")
    args = ap.parse_args(argv)
    dev = _device(args.device)
    rows = {}
    for name in tqdm(args.names, desc="architectures"):
        torch.manual_seed(0)
        model = ARCHS[name]().eval().to(dev)
        size = INPUT_SIZES[name]
        x = torch.randn(args.batch, 3, size, size, device=dev)
        full, ips32 = _run(model, x, args.iters, fp16=False)
        half, ips16 = _run(model, x, args.iters, fp16=True)
        cos = torch.nn.functional.cosine_similarity(full, half, dim=1)
        rows[name] = {
            "input_size": size,
            "feature_dim": full.shape[1],
            "images_per_s_fp32": round(ips32, 2),
            "images_per_s_fp16": round(ips16, 2),
            "fp16_speedup": round(ips16 / ips32, 3),
            "fp16_min_cosine": round(float(cos.min()), 6),
            "fp16_max_rel_diff": float((full - half).abs().max() / full.abs().max()),
        }
        print(name, rows[name], flush=True)
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.node(),
        "torch": torch.__version__,
        "batch": args.batch,
        "iters": args.iters,
        "archs": rows,
    }
    with atomic_write(args.out) as f:
        f.write(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""TLDR and PCA-w fit time and peak memory against the number of points N and the input
dimension D.

    python benchmarks/bench_tldr.py                      # small CPU grid (this machine)
    python benchmarks/bench_tldr.py --n 1281167 --dims-in 2048 --epochs 100 --device cuda \
        --tf32 --out benchmarks/results/tldr_h100.json   # ImageNet-1K train size on a GPU

Each (N, D) point runs in a fresh process, so the peak resident memory (ru_maxrss) belongs
to that fit alone; on CUDA the peak allocated GPU memory is recorded too. Features are
Gaussian clusters (100 centres) generated in the worker; TLDR timings are split into the kNN
graph and the training epochs, and a short run (--epochs) is extrapolated to the authors'
100 epochs. PCA-w is fitted on the same data.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cog.io import atomic_write

HERE = Path(__file__).resolve().parent


def features(n: int, dim: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """float32 [n, dim]: 100 Gaussian clusters, generated on `device` in blocks."""
    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(100, dim, generator=g, device=device) * 2
    out = torch.empty((n, dim), dtype=torch.float32, device=device)
    for a in range(0, n, 65536):
        m = min(65536, n - a)
        lab = torch.randint(0, 100, (m,), generator=g, device=device)
        out[a : a + m] = centres[lab] + torch.randn(m, dim, generator=g, device=device)
    return out


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(cfg: dict, queue: mp.Queue) -> None:
    from cog.compress.pcaw import PCAW
    from cog.compress.tldr import TLDR

    torch.backends.cuda.matmul.allow_tf32 = cfg["tf32"]
    dev = torch.device(cfg["device"])
    X = features(cfg["n"], cfg["dim_in"], dev).cpu().numpy()
    base_rss = rss_mib()
    row = {
        "n": cfg["n"],
        "dim_in": cfg["dim_in"],
        "dim_out": cfg["dim_out"],
        "data_mib": round(X.nbytes / 2**20, 1),
        "rss_after_data_mib": round(base_rss),
    }
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = time.perf_counter()
    model = TLDR(
        n_components=cfg["dim_out"],
        epochs=cfg["epochs"],
        device=str(dev),
        knn=cfg["knn"],
        verbose=cfg["verbose"],
    ).fit(X)
    total = time.perf_counter() - t
    info = model.fit_info_
    per_epoch = info["train_s"] / cfg["epochs"]
    row["tldr"] = {
        "epochs": cfg["epochs"],
        "fit_s": round(total, 2),
        "knn_s": info["knn_s"],
        "train_s": info["train_s"],
        "epoch_s": round(per_epoch, 3),
        "fit_100_epochs_s_estimated": round(info["knn_s"] + 100 * per_epoch, 1),
        "steps_per_epoch": info["steps_per_epoch"],
        "final_loss": round(info["final_loss"], 4),
        "peak_rss_mib": round(rss_mib()),
    }
    if dev.type == "cuda":
        row["tldr"]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
        torch.cuda.reset_peak_memory_stats(dev)
    t = time.perf_counter()
    PCAW(n_components=cfg["dim_out"], device=str(dev)).fit(X)
    row["pcaw"] = {"fit_s": round(time.perf_counter() - t, 2), "peak_rss_mib": round(rss_mib())}
    if dev.type == "cuda":
        row["pcaw"]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
    queue.put(row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=lambda s: [int(v) for v in s.split(",")], default=[5000, 20000])
    p.add_argument("--dims-in", type=lambda s: [int(v) for v in s.split(",")], default=[256, 2048])
    p.add_argument("--dim-out", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs (extrapolated to 100)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--knn", default="exact", choices=("auto", "exact", "faiss"))
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls on CUDA (kNN, training)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results" / "tldr.json")
    args = p.parse_args()
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    ctx = mp.get_context("spawn")
    rows = []
    load_before = os.getloadavg()
    for dim_in in args.dims_in:
        for n in args.n:
            cfg = dict(
                n=n,
                dim_in=dim_in,
                dim_out=args.dim_out,
                epochs=args.epochs,
                device=dev,
                knn=args.knn,
                tf32=args.tf32,
                verbose=args.verbose,
            )
            queue = ctx.Queue()
            proc = ctx.Process(target=worker, args=(cfg, queue))
            proc.start()
            row = queue.get()
            proc.join()
            print(json.dumps(row))
            rows.append(row)
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else None
    result = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "device": dev,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "settings": "TLDR defaults (linear encoder, mlp-2-2048 projector, LARS, batch 1024, "
        "k=5, exact kNN unless --knn); PCA-w float64 covariance",
        "results": rows,
    }
    with atomic_write(args.out) as f:
        f.write(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

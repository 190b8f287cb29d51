"""Fast probe against the authors' reference protocol on the same features: time ratio and
top-1 difference per feature set.

    python benchmarks/bench_probe.py --threads 1                 # generated sets, full reference
    python benchmarks/bench_probe.py --sets easy-100c-512d --trials 5 --epochs 100
    python benchmarks/bench_probe.py --features TRAIN.h5 --test-features TEST.h5
    python benchmarks/bench_probe.py --level --device cuda       # one CoG-sized level (GPU)

Generated sets mimic pooled backbone features: non-negative (ReLU), anisotropic per
dimension, class centres grouped around superclass centres (fine-grained confusions); the
separation (distance between class centres in noise standard deviations, over sqrt 2) sets
the difficulty. Both protocols see the same features, labels, seed and thread count.

`--level` writes one CoG-sized level (1000 classes, 732 train and 50 test images each,
2048-d float16, as `cog-extract` stores it) to HDF5 chunk by chunk, then times the fast
probe reading from that file, the kNN score, and `--level-ref-trials` full reference trials
(100 epochs each) plus the refit; the 30-trial reference time is extrapolated from them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from cog.device import resolve_device
from cog.protocols.lbfgs import _Objective
from cog.protocols.metrics import knn_scores
from cog.protocols.probe import LogRegProbe
from cog.protocols.store import FeatureStore, load_features, peak_memory

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SetSpec:
    name: str
    classes: int
    train_per_class: int
    test_per_class: int
    dim: int
    separation: float
    superclasses: int = 10


SETS = [
    SetSpec("easy-100c-512d", 100, 30, 20, 512, 7.0),
    SetSpec("medium-100c-256d", 100, 40, 20, 256, 4.0),
    SetSpec("hard-100c-2048d", 100, 30, 20, 2048, 4.0),
    SetSpec("medium-1000c-256d", 1000, 5, 5, 256, 6.0, superclasses=50),
    SetSpec("hard-300c-1024d", 300, 12, 10, 1024, 4.0, superclasses=30),
    SetSpec("many-100c-512d", 100, 200, 20, 512, 3.0),
    # many SGD steps an epoch (49): the reference is not starved of updates here
    SetSpec("long-10c-128d", 10, 5000, 500, 128, 1.5, superclasses=3),
]
LEVEL = SetSpec("cog-level-1000c-2048d", 1000, 732, 50, 2048, 5.0, superclasses=50)


class Generator:
    """Class-conditional features: relu(offset + scale * (centre[y] + noise))."""

    def __init__(self, spec: SetSpec, seed: int = 0, device: str = "cpu"):
        rng = np.random.default_rng(seed)
        d = spec.dim
        sigma = spec.separation / np.sqrt(d)
        sup = rng.normal(size=(spec.superclasses, d)) * sigma
        parent = rng.integers(0, spec.superclasses, spec.classes)
        centers = sup[parent] + 0.7 * sigma * rng.normal(size=(spec.classes, d))

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        self.spec, self.device = spec, device
        self.scale = t(np.exp(rng.normal(0, 0.5, d)) * 4 / np.sqrt(d))
        self.offset = t(np.abs(rng.normal(0.3, 0.3, d)))
        self.centers = t(centers)

    def draw(self, y: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn((len(y), self.spec.dim), generator=gen, device=self.device)
        yt = torch.as_tensor(y, device=self.device)
        return (self.offset + self.scale * (self.centers[yt] + noise)).clamp_min_(0)

    def split(self, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.random.default_rng(seed).permutation(
            np.repeat(np.arange(self.spec.classes), per_class)
        )
        gen = torch.Generator(self.device).manual_seed(seed)
        return self.draw(y, gen).cpu().numpy(), y

    def write_h5(self, path: Path, per_class: int, seed: int, chunk: int = 65536) -> None:
        """Write a cog-extract-like cache (float16 `features`, int64 `labels`) in chunks."""
        y = np.random.default_rng(seed).permutation(
            np.repeat(np.arange(self.spec.classes), per_class)
        )
        gen = torch.Generator(self.device).manual_seed(seed)
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(
                "features",
                (len(y), self.spec.dim),
                dtype="float16",
                chunks=(min(1024, len(y)), self.spec.dim),
            )
            for a in range(0, len(y), chunk):
                ds[a : a + chunk] = self.draw(y[a : a + chunk], gen).half().cpu().numpy()
            f["labels"] = y


def run_probe(protocol: str, data: tuple, seed: int, device: str, **kw) -> dict:
    """Fit on data[:2], score on data[2:]; the probe's timings, memory and choices."""
    Xtr, ytr, Xte, yte = data
    t = time.perf_counter()
    p = LogRegProbe(protocol=protocol, seed=seed, device=device, **kw).fit(Xtr, ytr)
    fit_s = time.perf_counter() - t
    s = p.scores(Xte, yte)
    return {
        "fit_s": round(fit_s, 3),
        "top1": s["top1"],
        "top5": s["top5"],
        "best_params": p.best_params_,
        "timings": {k: round(v, 3) for k, v in p.timings_.items()},
        "path_points" if protocol == "fast" else "trials": len(p.cv_results_),
        "peak_memory": p.peak_memory_,
        "storage_dtype": p.storage_dtype_,
        "device": p.device_,
    }


def compare(name: str, Xtr, ytr, Xte, yte, args, extra: dict | None = None) -> dict:
    row = {
        "set": name,
        "n_train": len(ytr),
        "n_test": len(yte),
        "dim": int(Xtr.shape[1]),
        "classes": len(np.unique(ytr)),
        **(extra or {}),
    }
    row["fast"] = run_probe("fast", (Xtr, ytr, Xte, yte), args.seed, args.device)
    print(
        json.dumps({"set": name, "fast": row["fast"]["top1"], "s": row["fast"]["fit_s"]}),
        flush=True,
    )
    if not args.skip_reference:
        row["reference"] = run_probe(
            "reference",
            (Xtr, ytr, Xte, yte),
            args.seed,
            args.device,
            n_trials=args.trials,
            epochs=args.epochs,
            verbose=args.verbose,
        )
        f, r = row["fast"], row["reference"]
        row["time_ratio"] = round(r["fit_s"] / f["fit_s"], 1)
        row["top1_diff_fast_minus_reference"] = round(f["top1"] - r["top1"], 4)
        row["top5_diff_fast_minus_reference"] = round(f["top5"] - r["top5"], 4)
        print(
            json.dumps(
                {k: row[k] for k in ("set", "time_ratio", "top1_diff_fast_minus_reference")}
                | {"ref_top1": r["top1"], "ref_s": r["fit_s"]}
            ),
            flush=True,
        )
    return row


def warm_up(device: str) -> None:
    """Pay one-time costs (torch.optim's lazy imports, BLAS and CUDA start-up) before timing."""
    x = np.abs(np.random.default_rng(0).normal(size=(40, 8))).astype(np.float32)
    y = np.arange(40) % 2
    LogRegProbe(device=device, l2_grid=[1.0]).fit(x, y)
    LogRegProbe(protocol="reference", device=device, n_trials=1, epochs=1).fit(x, y)


def read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["features"][()].astype(np.float32), f["labels"][()]


def level(args) -> dict:
    """One CoG-sized level from an HDF5 file: fast probe, kNN, a few reference trials."""
    dev = str(resolve_device(args.device))
    spec = replace(LEVEL, train_per_class=args.level_train_per_class)
    workdir = Path(args.level_dir or tempfile.mkdtemp(prefix="cog-bench-level-"))
    workdir.mkdir(parents=True, exist_ok=True)
    gen = Generator(spec, device=dev)
    t = time.perf_counter()
    for split, per, seed in (("train", spec.train_per_class, 1), ("test", spec.test_per_class, 2)):
        path = workdir / f"{split}.h5"
        if not path.exists():
            gen.write_h5(path, per, seed)
    out = {"set": spec.name, "spec": asdict(spec), "generate_s": round(time.perf_counter() - t, 1)}
    with h5py.File(workdir / "train.h5", "r") as ftr, h5py.File(workdir / "test.h5", "r") as fte:
        Xtr, ytr, Xte, yte = ftr["features"], ftr["labels"][()], fte["features"], fte["labels"][()]
        out["n_train"], out["n_test"] = len(ytr), len(yte)
        out["fast"] = run_probe("fast", (Xtr, ytr, Xte, yte), args.seed, dev, verbose=args.verbose)
        print(json.dumps({"fast": out["fast"]}), flush=True)
        t = time.perf_counter()
        out["knn"] = knn_scores(Xtr, ytr, Xte, yte, device=dev)
        out["knn"]["time_s"] = round(time.perf_counter() - t, 2)
        print(json.dumps({"knn": out["knn"]}), flush=True)
        if not args.skip_reference and args.level_ref_trials > 0:
            ref = run_probe(
                "reference",
                (Xtr, ytr, Xte, yte),
                args.seed,
                dev,
                n_trials=args.level_ref_trials,
                epochs=args.epochs,
                verbose=args.verbose,
            )
            # 30 trials of 100 epochs and the 100-epoch refit, from the measured per-epoch costs
            t, scale = ref["timings"], 100 / args.epochs
            per_trial = t["tune_s"] / args.level_ref_trials
            ref["full_30_trials_estimated_s"] = round(
                (30 * per_trial + t["refit_s"]) * scale + t["load_s"]
            )
            out["reference_few_trials"] = ref
            out["time_ratio_vs_30_trials_estimated"] = round(
                ref["full_30_trials_estimated_s"] / out["fast"]["fit_s"], 1
            )
            out["top1_diff_fast_minus_reference_few_trials"] = round(
                out["fast"]["top1"] - ref["top1"], 4
            )
    out["peak_memory"] = peak_memory(torch.device(dev))
    return out


def _write(spec: SetSpec, device: str, path: Path, per: int) -> None:
    Generator(spec, device=device).write_h5(path, per, 1)


def memory_check(args) -> dict:
    """Peak memory of the fast probe's data path on an ImageNet-1K-sized HDF5 cache.

    Streams the file into the feature store (float16 when float32 would not fit), computes the
    standardisation statistics and one full-batch loss and gradient over every row (the
    solver's largest working set; each L-BFGS evaluation repeats it), then scores 50k rows.
    """
    dev = resolve_device(args.device)
    per = -(-args.memory_rows // args.memory_classes)
    spec = SetSpec("in1k-sized", args.memory_classes, per, 50, 2048, 5.0, superclasses=50)
    workdir = Path(args.level_dir or tempfile.mkdtemp(prefix="cog-bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"train_{spec.classes}x{per}.h5"
    if not path.exists():  # written by a child process, so its memory is not counted here
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_write, args=(spec, str(dev), path, per))
        child.start()
        child.join()
    out = {
        "set": spec.name,
        "rows": spec.classes * per,
        "dim": spec.dim,
        "classes": spec.classes,
        "file_bytes": path.stat().st_size,
        "rss_before_bytes": peak_memory()["cpu_peak_rss_bytes"],
    }
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        store = load_features(f["features"], dev, args.storage_dtype)
        y = torch.as_tensor(f["labels"][()], device=dev)
    out["load_s"] = round(time.perf_counter() - t, 1)
    out["storage_dtype"] = str(store.data.dtype).replace("torch.", "")
    out["store_bytes"] = store.data.numel() * store.data.element_size()
    idx = torch.arange(store.n, device=dev)
    mu, inv = store.stats(idx)
    W = torch.zeros((spec.classes, spec.dim), device=dev)
    b = torch.zeros(spec.classes, device=dev)
    t = time.perf_counter()
    loss, _, _ = _Objective(store, idx, y, mu, inv, spec.classes)(W, b)
    out["loss_and_gradient_s"] = round(time.perf_counter() - t, 1)
    out["loss_at_zero"] = loss
    probe = LogRegProbe(device=str(dev))
    probe.classes_ = np.arange(spec.classes)
    probe.coef_, probe.intercept_ = W, b
    probe.n_features_in_ = spec.dim
    probe.predict(FeatureStore(store.data[:50_000], "first 50k rows"))
    out["peak_memory"] = peak_memory(dev)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=None, help=f"subset of {[s.name for s in SETS]}")
    p.add_argument("--features", type=Path, help="an HDF5 train cache (features, labels)")
    p.add_argument("--test-features", type=Path, help="the matching HDF5 test cache")
    p.add_argument("--trials", type=int, default=30, help="reference Optuna trials (30)")
    p.add_argument("--epochs", type=int, default=100, help="reference epochs (100)")
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (both sides)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--level", action="store_true", help="one CoG-sized level from HDF5")
    p.add_argument("--level-dir", type=Path, help="where the level's HDF5 files go (reused)")
    p.add_argument("--level-train-per-class", type=int, default=732)
    p.add_argument("--level-ref-trials", type=int, default=2)
    p.add_argument("--memory-check", action="store_true", help="peak memory, IN-1K-sized file")
    p.add_argument("--memory-rows", type=int, default=1_281_167)
    p.add_argument("--memory-classes", type=int, default=1000)
    p.add_argument("--storage-dtype", default="auto", help="feature store dtype (memory check)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    warm_up(args.device)
    rows = []
    if args.memory_check:
        rows.append(memory_check(args))
    elif args.level:
        rows.append(level(args))
    else:
        chosen = [s for s in SETS if args.sets is None or s.name in args.sets]
        for spec in chosen:
            g = Generator(spec)
            Xtr, ytr = g.split(spec.train_per_class, 1)
            Xte, yte = g.split(spec.test_per_class, 2)
            rows.append(
                compare(spec.name, Xtr, ytr, Xte, yte, args, {"separation": spec.separation})
            )
        if args.features:
            if not args.test_features:
                p.error("--features needs --test-features")
            rows.append(
                compare(
                    args.features.name, *read_h5(args.features), *read_h5(args.test_features), args
                )
            )
    name = "probe_memory" if args.memory_check else "probe_level" if args.level else "probe"
    out = args.out or HERE / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "reference": {"trials": args.trials, "epochs": args.epochs},
        "seed": args.seed,
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

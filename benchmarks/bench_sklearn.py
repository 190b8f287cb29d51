"""cog's fast probe against a scikit-learn C search on the same validation split: fit time
and test top-1 side by side.

    python benchmarks/bench_sklearn.py --threads 1              # CPU -> results/sklearn_cpu.json
    python benchmarks/bench_sklearn.py --device cuda --out results/sklearn_gpu.json

Both sides see the same generated features (bench_probe's generator), L2-normalised and
standardised with the tuning rows' statistics, the same 20%-per-class validation split
(cog.protocols.sampling.validation_split, seed 22) and the same L2 path:
C = 1 / (l2 * n_tune) for each
of cog's default grid values, scikit-learn's LogisticRegression(solver="lbfgs") fitted per C
(warm-started along the path like cog), the best validation top-1 refitted on all training
rows at the same per-sample strength. scikit-learn always runs on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_probe import SETS, Generator  # noqa: E402

from cog.protocols.probe import DEFAULT_L2_GRID, LogRegProbe  # noqa: E402
from cog.protocols.sampling import validation_split  # noqa: E402


def sklearn_search(Xtr, ytr, Xte, yte, seed: int, grid=DEFAULT_L2_GRID) -> dict:
    """cog's protocol with scikit-learn as the solver: path on the tuning rows, refit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    caught = warnings.catch_warnings(record=True)
    seen = caught.__enter__()
    warnings.simplefilter("always", ConvergenceWarning)
    t0 = time.perf_counter()
    classes, y = np.unique(ytr, return_inverse=True)
    tr, va = validation_split(y, seed)
    Xn = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)
    mu, sd = Xn[tr].mean(0), Xn[tr].std(0)
    inv = np.where(sd > 1e-8, 1 / np.maximum(sd, 1e-8), 1.0)
    Z = (Xn - mu) * inv
    best, path = None, []
    clf = LogisticRegression(warm_start=True, max_iter=100, tol=1e-4)
    for lam in sorted(grid, reverse=True):
        clf.set_params(C=1.0 / (lam * len(tr)))
        clf.fit(Z[tr], y[tr])
        acc = float((clf.predict(Z[va]) == y[va]).mean())
        path.append({"l2": lam, "val_top1": acc})
        if best is None or acc > best[1]:
            best = (lam, acc)
    lam = best[0] * len(tr) / len(y)
    final = LogisticRegression(C=1.0 / (lam * len(y)), max_iter=100, tol=1e-4).fit(Z, y)
    fit_s = time.perf_counter() - t0
    caught.__exit__(None, None, None)
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in seen)
    Zte = (Xte / np.linalg.norm(Xte, axis=1, keepdims=True) - mu) * inv
    top1 = float((classes[final.predict(Zte)] == yte).mean())
    return {
        "fit_s": round(fit_s, 3),
        "top1": top1,
        "best_l2": best[0],
        "fits_at_max_iter": unconverged,  # of len(grid) + 1 fits (max_iter=100, tol=1e-4)
        "path": path,
    }


def cog_probe(Xtr, ytr, Xte, yte, seed: int, device: str) -> dict:
    t0 = time.perf_counter()
    p = LogRegProbe(seed=seed, device=device, refine=False).fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    return {
        "fit_s": round(fit_s, 3),
        "top1": float(p.scores(Xte, yte)["top1"]),
        "best_l2": p.best_params_["l2"],
        "device": p.device_,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sets",
        default="easy-100c-512d,medium-100c-256d,hard-300c-1024d,many-100c-512d,long-10c-128d",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch/BLAS threads (0: default)")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sklearn_cpu.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = {s.name: s for s in SETS}
    rows = []
    for name in args.sets.split(","):
        gen = Generator(specs[name])
        Xtr, ytr = gen.split(specs[name].train_per_class, seed=1)
        Xte, yte = gen.split(specs[name].test_per_class, seed=2)
        row = {"set": name, "n_train": len(ytr), "dim": int(Xtr.shape[1])}
        row["cog"] = cog_probe(Xtr, ytr, Xte, yte, args.seed, args.device)
        row["sklearn"] = sklearn_search(Xtr, ytr, Xte, yte, args.seed)
        row["speedup"] = round(row["sklearn"]["fit_s"] / row["cog"]["fit_s"], 1)
        row["top1_diff_cog_minus_sklearn"] = round(row["cog"]["top1"] - row["sklearn"]["top1"], 4)
        print(json.dumps({k: v for k, v in row.items() if k not in ("sklearn",)}), flush=True)
        rows.append(row)
    info = {"machine": platform.processor() or platform.machine(), "threads": args.threads}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

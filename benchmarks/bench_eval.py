"""`cog-eval` end to end against the same work written by hand: what the orchestration costs.

    python benchmarks/bench_eval.py [--model sup_resnet50] [--classes 20] [--train 40]
                                    [--device auto]

On generated ImageNet-1K and ImageNet-21K trees (five levels of `--classes` concepts, real
JPEG files) it extracts the twelve caches once (random init: speed does not depend on the
weights), then on the same caches times

* `cog-eval`: validation (class sets, a finite-value scan of every cache, few-shot counts),
  probes per seed (all data and few-shot), kNN, alignment/uniformity, run JSONs with resume
  bookkeeping, leaderboard update under a lock;
* the hand-written loop a user would write with the same library calls (open the caches,
  `LogRegProbe.fit` / `scores` per seed and N, `knn_scores`, `alignment`, `uniformity`),
  without checks or outputs;
* a last `cog-eval` call that finds every run finished (the resume path).

The two are timed alternately `--repeats` times (minimum kept). It reports the overhead ratio
(cog-eval / hand loop), the time of the validation scan, and the top-1 agreement of the two
(they must be identical: same calls, same seeds).
Writes benchmarks/results/eval_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def make_data(work: Path, classes: int, n_train: int, n_test: int) -> dict:
    """Trees, a levels pickle and a split pickle (via cog.concepts.splits) under `work`."""
    import pickle

    from cog.concepts.levels import DEFAULT_POOL, DEFAULT_SEEN
    from cog.concepts.splits import build_splits, write_splits
    from cog.features.synthetic import make_imagenet1k, make_imagenet21k
    from cog.io import read_wnid_list

    seen = read_wnid_list(DEFAULT_SEEN)
    pool = read_wnid_list(DEFAULT_POOL)
    unseen = [w for w in pool if w not in set(seen)][::7][: 5 * classes]
    in1k = make_imagenet1k(work / "in1k", seen[:classes], n_train=n_train, n_val=n_test)
    in21k = make_imagenet21k(work / "in21k", unseen, n_per_class=n_train + n_test)
    levels = [sorted(unseen[k * classes : (k + 1) * classes]) for k in range(5)]
    (work / "levels.pkl").write_bytes(pickle.dumps(levels))
    res = build_splits(
        in21k, levels, n_test=n_test, min_train=n_train, max_train=n_train, progress=False
    )
    write_splits(res, work / "splits")
    return {
        "in1k_root": in1k,
        "imagenet_root": in21k,
        "levels": work / "levels.pkl",
        "splits": work / "splits" / "cog_concepts_split_file.pkl",
    }


def register_tiny() -> str:
    """A random-init timm `test_resnet` card at 64 px in $COG_HOME (for CPU runs)."""
    from cog import zoo

    weights = Path(os.environ["COG_HOME"]) / "bench_test_resnet.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, weights)  # never read: the benchmark runs with random init
    card = {
        "name": "bench_test_resnet",
        "group": "local",
        "arch": {"source": "timm", "name": "test_resnet", "kwargs": {}},
        "feature": {"dim": 96, "layer": "global-average-pooled last stage", "pool": "head"},
        "preprocess": {"resize": 72, "crop": 64, "interpolation": "bicubic"},
        "weights": [{"path": str(weights)}],
    }
    zoo.register_card(card, overwrite=True)
    return card["name"]


def hand_loop(caches: dict, seeds, shots, device: str) -> tuple[float, dict]:
    """The same library calls as cog-eval, written by hand: no checks, no outputs."""
    from cog.features.cache import open_features
    from cog.protocols import metrics
    from cog.protocols.probe import LogRegProbe

    top1 = {}
    t0 = time.perf_counter()
    for ds, (ptr, pte) in caches.items():
        tr, te = open_features(ptr), open_features(pte)
        for n in (0, *shots):
            for s in seeds:
                p = LogRegProbe(protocol="fast", seed=s, device=device, n_shot=n or None)
                p.fit(tr.features, tr.labels)
                top1[(ds, n, s)] = 100.0 * p.scores(te.features, te.labels)["top1"]
        metrics.knn_scores(tr.features, tr.labels, te.features, te.labels, device=device)
        metrics.alignment(te.features, te.labels)
        metrics.uniformity(te.features)
        tr.close()
        te.close()
    return time.perf_counter() - t0, top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sup_resnet50", help="zoo model (random init)")
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="register and use a timm test_resnet card at 64 px (CPU runs)",
    )
    ap.add_argument("--classes", type=int, default=20, help="IN-1K classes and concepts/level")
    ap.add_argument("--train", type=int, default=40, help="training images per class")
    ap.add_argument("--test", type=int, default=10, help="test images per class")
    ap.add_argument("--seeds", default="22,37,45,77,93")
    ap.add_argument("--shots", default="1,2,4,8")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="result JSON (default: results/eval_<device>.json)")
    args = ap.parse_args()

    from cog.bench.config import check_finite, open_split
    from cog.cli.eval import main as cog_eval
    from cog.device import resolve_device
    from cog.features.ensure import ensure_features
    from cog.protocols.probe import LogRegProbe

    dev = resolve_device(args.device)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    shots = tuple(int(s) for s in args.shots.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        os.environ["COG_HOME"] = str(work / "home")  # zoo cards and caches stay in `work`
        data = make_data(work, args.classes, args.train, args.test)
        if args.tiny:
            args.model = register_tiny()
        cache = work / "features"
        datasets = ["in1k", *(f"cog_l{k}" for k in range(1, 6))]
        t = time.perf_counter()
        caches = {
            ds: tuple(
                ensure_features(
                    args.model,
                    ds,
                    s,
                    cache_dir=cache,
                    random_init=True,
                    device=str(dev),
                    progress=False,
                    **data,
                )
                for s in ("train", "test")
            )
            for ds in datasets
        }
        t_extract = time.perf_counter() - t

        warm = open_split(caches["in1k"][0], "in1k", "train")  # first-call costs, untimed
        LogRegProbe(device=str(dev)).fit(warm.features, warm.labels)
        warm.features.close()

        t = time.perf_counter()
        for ds, paths in caches.items():
            for p, s in zip(paths, ("train", "test"), strict=True):
                sp = open_split(p, ds, s)
                check_finite(sp)
                sp.features.close()
        t_scan = time.perf_counter() - t

        cli = [
            args.model,
            "--random-init",
            "--cache-dir",
            str(cache),
            "--out",
            str(work / "res"),
            "--device",
            str(dev),
            "--few-shot",
            "--shots",
            args.shots,
            "--seeds",
            args.seeds,
            "--quiet",
            *[a for k, v in data.items() for a in (f"--{k.replace('_', '-')}", str(v))],
        ]
        # interleaved repeats, minimum kept: the machine may be shared
        evals, hands = [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            assert cog_eval([*cli, "--overwrite"] if r else cli) == 0
            evals.append(time.perf_counter() - t)
            t_hand, hand_top1 = hand_loop(caches, seeds, shots, str(dev))
            hands.append(t_hand)
        t = time.perf_counter()
        assert cog_eval(cli) == 0
        t_resume = time.perf_counter() - t
        t_eval, t_hand = min(evals), min(hands)

        model = f"{args.model}+random-init"
        diffs = []
        for (ds, n, s), v in hand_top1.items():
            setting = "all" if n == 0 else "few-shot"
            name = f"{ds}_{setting}{f'_n{n}' if n else ''}_fast.json"
            rec = json.loads((work / "res" / "runs" / model / name).read_text())
            diffs.append(abs(rec["probe"]["per_seed"][str(s)]["top1"] - v))

    result = {
        "machine": platform.node() or platform.machine(),
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "model": args.model,
        "classes_per_dataset": args.classes,
        "train_per_class": args.train,
        "test_per_class": args.test,
        "seeds": list(seeds),
        "shots": list(shots),
        "fits": len(hand_top1),
        "extract_s": round(t_extract, 3),
        "validation_scan_s": round(t_scan, 3),
        "repeats": args.repeats,
        "cog_eval_s": round(t_eval, 3),
        "hand_loop_s": round(t_hand, 3),
        "cog_eval_all_s": [round(v, 3) for v in evals],
        "hand_loop_all_s": [round(v, 3) for v in hands],
        "overhead_ratio": round(t_eval / t_hand, 3),
        "cog_eval_resume_s": round(t_resume, 3),
        "max_top1_difference": float(np.max(diffs)),
    }
    out = args.out or HERE / "results" / f"eval_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

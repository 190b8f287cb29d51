"""Lin engine against an nltk per-pair loop on the same pairs: speed ratio and largest
absolute difference.

    python benchmarks/bench_lin.py [--queries 300] [--counts COUNTS.tsv]

The nltk baseline is `Synset.lin_similarity` over every (query, seen) pair, with nltk's
own per-synset hypernym cache warm; both sides compute the same query x 1000 matrix. The
engine is also timed on the full problem (every IN-21K pool concept x 1000 seen).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cog.concepts.ic import counts_ic, intrinsic_ic, intrinsic_wordnet_ic, read_image_counts
from cog.concepts.levels import DEFAULT_POOL, DEFAULT_SEEN
from cog.concepts.lin import LinEngine
from cog.concepts.wordnet import NounHierarchy, load_wordnet
from cog.io import read_wnid_list

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=300, help="pool concepts in the nltk run")
    p.add_argument(
        "--counts",
        type=Path,
        default=HERE.parent.parent / "shared/data/in21k_fall11_image_counts.tsv",
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "lin.json")
    args = p.parse_args()

    reader = load_wordnet()
    h = NounHierarchy.from_reader(reader)
    seen = h.lookup(read_wnid_list(DEFAULT_SEEN))
    pool = h.lookup(read_wnid_list(DEFAULT_POOL))
    ics = [intrinsic_ic(h, pool), intrinsic_wordnet_ic(h)]
    if args.counts.is_file():
        ics.append(counts_ic(h, read_image_counts(args.counts)))
    rng = np.random.default_rng(0)
    queries = rng.choice(pool, args.queries, replace=False)
    rows = []
    for ic in ics:
        engine = LinEngine(h, ic)
        t = time.perf_counter()
        ours = engine.matrix(queries, seen)
        t_ours = time.perf_counter() - t
        nltk_ic = ic.nltk_dict(h)
        seen_ss = [reader.synset(h.names[s]) for s in seen]
        ref = np.empty_like(ours)
        t = time.perf_counter()
        for i, q in enumerate(tqdm(queries, desc=f"nltk loop ({ic.name})", unit="concept")):
            a = reader.synset(h.names[q])
            ref[i] = [a.lin_similarity(b, nltk_ic) for b in seen_ss]
        t_nltk = time.perf_counter() - t
        t = time.perf_counter()
        engine.max_similarity(pool, seen)
        t_full = time.perf_counter() - t
        pairs = ours.size
        row = {
            "ic": ic.name,
            "pairs": pairs,
            "nltk_s": round(t_nltk, 3),
            "engine_s": round(t_ours, 4),
            "speedup": round(t_nltk / t_ours, 1),
            "max_abs_diff": float(np.max(np.abs(ours - ref))),
            "full_pool_pairs": len(pool) * len(seen),
            "full_pool_engine_s": round(t_full, 2),
            "full_pool_nltk_s_estimated": round(t_nltk / pairs * len(pool) * len(seen)),
        }
        rows.append(row)
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Cost of feature-cache integrity checks: the sha256 seal written with every cache and the
verification every reuse runs, against plain HDF5 writes and reads; and HDF5's fletcher32
chunk filter, the alternative cog did not take (it slows every later read).

    python benchmarks/bench_integrity.py                       # 50k x 2048 float16 (200 MB)
    python benchmarks/bench_integrity.py --rows 1281167        # ImageNet-1K train size

The cache is written as cog writes one (chunks of 1 MiB, float16) to a temporary folder;
times are medians of `--repeats` runs with the page cache warm (the file was just written),
so they measure CPU cost, not the disk. Figures go to benchmarks/results/integrity.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from cog.features.integrity import seal, verify


def _write(path: Path, x: np.ndarray, fletcher32: bool) -> None:
    rows = max(1, (1 << 20) // (x.shape[1] * x.dtype.itemsize))
    with h5py.File(path, "w") as h5:
        ds = h5.create_dataset(
            "features",
            shape=x.shape,
            dtype=x.dtype,
            chunks=(rows, x.shape[1]),
            fletcher32=fletcher32,
        )
        for a in range(0, len(x), rows * 16):
            ds[a : a + rows * 16] = x[a : a + rows * 16]
        h5.create_dataset("labels", data=np.arange(len(x)) % 1000)


def _read(path: Path) -> None:
    with h5py.File(path, "r") as h5:
        ds = h5["features"]
        for a in range(0, ds.shape[0], 65536):
            ds[a : a + 65536]


def _time(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results/integrity.json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.rows, a.dim), dtype=np.float32).astype(np.float16)
    mb = x.nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        plain, f32 = Path(tmp) / "plain.h5", Path(tmp) / "f32.h5"
        t = {
            "write_plain": _time(lambda: _write(plain, x, False), a.repeats),
            "write_fletcher32": _time(lambda: _write(f32, x, True), a.repeats),
        }

        def sealed() -> None:
            with h5py.File(plain, "a") as h5:
                seal(h5)

        t["seal_sha256"] = _time(sealed, a.repeats)
        t["read_plain"] = _time(lambda: _read(plain), a.repeats)
        t["read_fletcher32"] = _time(lambda: _read(f32), a.repeats)

        def verified() -> None:
            with h5py.File(plain, "r") as h5:
                verify(h5, plain, required=True)

        t["verify_sha256"] = _time(verified, a.repeats)
    res = {
        "machine": platform.processor() or platform.machine(),
        "rows": a.rows,
        "dim": a.dim,
        "megabytes": round(mb, 1),
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "mb_per_s": {k: round(mb / v, 1) for k, v in t.items()},
        "overhead": {
            "fletcher32_write": round(t["write_fletcher32"] / t["write_plain"], 2),
            "fletcher32_read": round(t["read_fletcher32"] / t["read_plain"], 2),
            "seal_vs_plain_write": round(t["seal_sha256"] / t["write_plain"], 2),
            "verify_vs_plain_read": round(t["verify_sha256"] / t["read_plain"], 2),
        },
        "in1k_train_verify_s": round(t["verify_sha256"] * 1281167 / a.rows * a.dim / 2048, 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

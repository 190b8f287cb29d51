"""How fast each command answers `--help`, and `cog-models list`, against the cost of the
imports the commands now defer (torch, timm, pandas).

    python benchmarks/bench_cli.py [--repeats 5] [--out benchmarks/results/cli.json]

Each command runs in a fresh interpreter, as a user would start it. Reported per command:
the median wall time and the median CPU time (user + system of the child). On a shared
machine the wall time includes waiting for a core; the CPU time is what the command costs.
The baseline is a bare interpreter (`python -c pass`) and one importing what --help used to
import (`import torch, timm, pandas`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import torch, timm, pandas": ["-c", "import torch, timm, pandas"],
    "cog-build-levels --help": ["-m", "cog.cli.build_levels", "--help"],
    "cog-build-splits --help": ["-m", "cog.cli.build_splits", "--help"],
    "cog-demo --help": ["-m", "cog.cli.demo", "--help"],
    "cog-eval --help": ["-m", "cog.cli.eval", "--help"],
    "cog-extract --help": ["-m", "cog.cli.extract", "--help"],
    "cog-models --help": ["-m", "cog.cli.models", "--help"],
    "cog-models list": ["-m", "cog.cli.models", "list"],
    "cog-report --help": ["-m", "cog.cli.report", "--help"],
    "cog-tldr --help": ["-m", "cog.cli.tldr", "--help"],
    "cog-train-mochi --help": ["-m", "cog.cli.train_mochi", "--help"],
}


def measure(args: list[str], repeats: int, env: dict[str, str]) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cli.json")
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows = {}
    for name, args in COMMANDS.items():
        rows[name] = measure(args, a.repeats, env)
        r = rows[name]
        print(f"{name:<28} wall {r['wall_s']:6.2f} s   cpu {r['cpu_s']:6.2f} s", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"load {os.getloadavg()[0]:.1f}",
                "python": platform.python_version(),
                "repeats": a.repeats,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

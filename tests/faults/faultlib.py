"""Helpers of the fault suite: child processes that import this checkout's cog, malicious
pickles whose payload would leave a marker file, and a file-size limit for 'disk full'."""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import cog

PY = sys.executable


def env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports this checkout's cog."""
    out = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    out["PYTHONPATH"] = str(Path(cog.__file__).resolve().parent.parent)
    return out


class Payload:
    """Unpickling this calls os.system(touch MARKER): what a malicious download would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_levels(path: Path, marker: Path) -> Path:
    """A levels pickle that runs the payload, then is a valid list of 5 levels."""
    levels = [[f"n{i:08d}" for i in range(k * 10, k * 10 + 3)] for k in range(5)]
    path.write_bytes(pickle.dumps([*levels[:-1], [*levels[-1], Payload(marker)]][:5]))
    return path


def malicious_splits(path: Path, marker: Path) -> Path:
    """A split pickle whose first concept's train list carries the payload."""
    d = {"n00000001": {"train": ["n00000001/a.JPEG", Payload(marker)], "test": ["x"]}}
    path.write_bytes(pickle.dumps(d))
    return path


def run_limited(args: list[str], fsize: int, cwd: Path | None = None, timeout: int = 120):
    """Run a child with RLIMIT_FSIZE = `fsize` bytes: every write past it fails with EFBIG,
    as on a full disk (Python ignores SIGXFSZ, so the write call itself reports it)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        args,
        env=env(),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )

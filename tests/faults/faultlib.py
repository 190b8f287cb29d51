"""Helpers of the fault suite: child processes that import this checkout's cog, malicious
pickles whose payload would leave a marker file, and a file-size limit for 'disk full'."""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
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


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Within the block every write past `nbytes` into any file fails with EFBIG, as on a
    full disk (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write call reports it). The
    soft limit is restored afterwards (a process may raise it back to the hard limit)."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# leaderboard workers: module-level here, so spawned children import nothing heavy


def leaderboard_row(model: str, dataset: str, mean: float) -> dict:
    from cog.bench.leaderboard import make_row

    return make_row(
        model=model,
        group="sup",
        dataset=dataset,
        setting="all",
        n_shot=0,
        metric="top1",
        protocol="fast",
        values=(mean, mean),
        seeds=(22, 37),
        run=f"runs/{model}/{dataset}.json",
    )


def write_rows(path: str, w: int, n: int) -> None:
    """Writer `w`: n updates of its model's row on cog_l1..cog_l5 (last mean: 5..9)."""
    from cog.bench.leaderboard import update_leaderboard

    for i in range(n):
        update_leaderboard(path, [leaderboard_row(f"m{w}", f"cog_l{i % 5 + 1}", float(i))])


def hold_lock(path: str, ready) -> None:
    """Take the leaderboard lock and hold it until killed."""
    import time

    from cog.bench.leaderboard import locked

    with locked(path):
        ready.set()
        time.sleep(600)

"""Concurrent leaderboard writers, a writer killed while it holds the lock, and lock files
left by killed runs: nothing is lost, and a stale lock file never blocks the next run."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
from faultlib import hold_lock, write_rows

from cog import CogError
from cog.bench.leaderboard import read_leaderboard
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.synthetic import make_imagenet21k, tiny_backbone

SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)


def test_writers_and_a_killed_lock_holder(tmp_path):
    path = tmp_path / "leaderboard.csv"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(str(path), ready))
    holder.start()
    assert ready.wait(120)
    writers = [ctx.Process(target=write_rows, args=(str(path), w, 10)) for w in range(3)]
    for p in writers:
        p.start()
    time.sleep(0.5)
    assert all(p.is_alive() for p in writers)  # all wait on the held lock
    os.kill(holder.pid, signal.SIGKILL)  # the kernel releases its flock
    holder.join(30)
    for p in writers:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0, 0]
    df = read_leaderboard(path)
    assert len(df) == 15 and not df.duplicated(["model", "dataset"]).any()
    for w in range(3):
        got = df[df.model == f"m{w}"].set_index("dataset")["mean"].to_dict()
        assert got == {f"cog_l{k + 1}": float(k + 5) for k in range(5)}
    assert not list(tmp_path.glob(".leaderboard.csv.tmp-*"))


def test_stale_extraction_lock_is_harmless(tmp_path):
    root = make_imagenet21k(tmp_path / "t", ["n00000001"], 2)
    out = tmp_path / "f.h5"
    (tmp_path / ".f.h5.lock").write_text("999999")  # left by a killed run
    extract(tiny_backbone(), image_folder(root), out, **SMALL)
    assert out.is_file()


def test_live_extraction_lock_refuses_a_second_writer(tmp_path):
    import fcntl

    root = make_imagenet21k(tmp_path / "t", ["n00000001"], 2)
    out = tmp_path / "f.h5"
    with open(tmp_path / ".f.h5.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write("4242")
        f.flush()
        with pytest.raises(CogError, match=r"another process \(pid 4242\) is writing"):
            extract(tiny_backbone(), image_folder(root), out, **SMALL)
    assert not out.exists()

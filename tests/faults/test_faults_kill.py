"""SIGKILL at several points of an extraction (while writing the first segment, between
segments, inside the final merge): the rerun finishes with features identical to an
uninterrupted run, and nothing a killed run left is ever read as a cache."""

from __future__ import annotations

import signal
import subprocess
import textwrap

import numpy as np
import pytest
from faultlib import PY, env

from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.synthetic import add_broken_files, make_imagenet21k, tiny_backbone

SMALL = dict(workers=0, batch_size=2, segment=4, device="cpu", progress=False)
# the k-th file sealed is the k-th segment (5 segments of 17 images), the 6th the merge
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import cog.features.extract as ex
    from cog.features.images import image_folder
    from cog.features.synthetic import tiny_backbone

    root, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls, real = [0], ex.seal

    def seal(h5):
        calls[0] += 1
        if calls[0] == k:  # the file is half-written: killed before its rename
            os.kill(os.getpid(), signal.SIGKILL)
        real(h5)

    ex.seal = seal
    images = image_folder(root, name="t", split="train")
    ex.extract(tiny_backbone(), images, out, workers=0, batch_size=2, segment=4,
               device="cpu", progress=False)
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    root = make_imagenet21k(tmp / "tree", ["n00000001", "n00000002"], 7)
    add_broken_files(root / "n00000002", kinds=("cmyk", "empty", "truncated"))
    ref = extract(
        tiny_backbone(), image_folder(root, name="t", split="train"), tmp / "ref.h5", **SMALL
    )
    with open_features(ref) as fs:
        reference = (fs.load(), fs.paths, fs.failed)
    script = tmp / "child.py"
    script.write_text(CHILD)
    return root, script, reference


@pytest.mark.parametrize("k", [1, 3, 6])
def test_sigkill_then_resume_is_identical(setup, tmp_path, k):
    root, script, (feats, paths, failed) = setup
    out = tmp_path / "f.h5"
    r = subprocess.run(
        [PY, str(script), str(root), str(out), str(k)], env=env(), timeout=120, capture_output=True
    )
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert not out.exists()  # a killed run never leaves a file named like the cache
    parts = out.with_name("f.h5.parts")
    assert len(list(parts.glob("seg_*.h5"))) == k - 1
    leftovers = list(tmp_path.glob(".f.h5.tmp-*")) + list(parts.glob(".seg_*.tmp-*"))
    assert leftovers  # the half-written file of the killed process
    extract(tiny_backbone(), image_folder(root, name="t", split="train"), out, **SMALL)
    with open_features(out) as fs:
        assert np.array_equal(fs.load(), feats) and fs.paths == paths and fs.failed == failed
    assert not parts.exists() and not list(tmp_path.glob(".f.h5.tmp-*"))  # cleaned up

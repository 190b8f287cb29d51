"""Checksums of feature caches: a flipped bit on disk is an error, never a silent NaN.

HDF5 stores no checksum by default, so a damaged cache reads back wrong numbers without
complaint. Every cache cog writes carries, in the attribute `sha256_datasets`, the sha256 of
each dataset's content (numbers as their stored bytes, strings as UTF-8 with a length
prefix). `verify` recomputes every digest; `cog.features.cache.open_features` (cog-eval, cog-tldr)
and cog-extract's reuse of a cache call it. HDF5's fletcher32 chunk filter was the other
choice: it doubles the cost of every later read and makes verification slower, not faster
(benchmarks/bench_integrity.py), so cog does not use it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import h5py
import numpy as np

from cog import CogError

ATTR = "sha256_datasets"
BLOCK_BYTES = 16 << 20  # bytes hashed per read: bounded memory for 1.3M x 2048 caches


def dataset_sha256(ds: h5py.Dataset) -> str:
    """sha256 of a dataset's content, read in row blocks."""
    h = hashlib.sha256()
    h.update(f"{ds.dtype.str if ds.dtype.kind != 'O' else 'str'}{ds.shape}".encode())
    if ds.shape == () or ds.size == 0:
        if ds.shape == ():
            h.update(repr(ds[()]).encode())
        return h.hexdigest()
    strings = h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind == "O"
    row_bytes = max(1, ds.dtype.itemsize * (ds.size // ds.shape[0]))
    rows = max(1, BLOCK_BYTES // row_bytes)
    if ds.chunks:  # whole chunks per read
        rows = max(ds.chunks[0], rows - rows % ds.chunks[0])
    for a in range(0, ds.shape[0], rows):
        block = ds[a : a + rows]
        if strings:
            for s in block.reshape(-1):
                b = s if isinstance(s, bytes) else str(s).encode("utf-8", "surrogateescape")
                h.update(len(b).to_bytes(8, "little") + b)
        else:
            h.update(memoryview(np.ascontiguousarray(block)).cast("B"))
    return h.hexdigest()


def seal(h5: h5py.File) -> None:
    """Record the sha256 of every top-level dataset (call after the last write)."""
    digests = {name: dataset_sha256(h5[name]) for name in sorted(h5) if _is_ds(h5[name])}
    h5.attrs[ATTR] = json.dumps(digests, sort_keys=True)


def _is_ds(obj) -> bool:
    return isinstance(obj, h5py.Dataset)


def _fix(path: Path) -> str:
    return (
        f"delete {path} and re-run cog-extract with the same settings to rebuild it "
        "(check the disk: a damaged file means bad storage or an interrupted copy)"
    )


def verify(h5: h5py.File, path: str | Path, required: bool = False) -> bool:
    """Recompute every dataset's sha256 and compare with the recorded ones.

    A mismatch, a damaged chunk or a missing dataset is a CogError naming the file and the
    fix. A cache without checksums (written by hand or an older cog) warns and returns
    False, or raises when `required`. Returns True when verified.
    """
    path = Path(path)
    key = _identity(path)
    if key is not None and key in _VERIFIED:  # this process checked this very file already
        return True
    raw = h5.attrs.get(ATTR)
    if raw is None:
        msg = (
            f"{path}: holds no checksums ({ATTR}; written by hand or by an older cog), so "
            "its integrity cannot be verified; rebuild it with cog-extract --overwrite"
        )
        if required:
            raise CogError(msg)
        warnings.warn(msg, stacklevel=2)
        return False
    try:
        expected = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        raise CogError(f"{path}: its {ATTR} attribute is damaged; {_fix(path)}") from None
    for name, digest in sorted(expected.items()):
        if name not in h5:
            raise CogError(f"{path}: dataset {name!r} is missing; {_fix(path)}")
        try:
            got = dataset_sha256(h5[name])
        except OSError as e:  # fletcher32 or HDF5 structure damage
            raise CogError(f"{path}: dataset {name!r} is unreadable ({e}); {_fix(path)}") from None
        if got != digest:
            raise CogError(
                f"{path}: dataset {name!r} does not match its sha256 (the file is corrupted); "
                f"{_fix(path)}"
            )
    if key is not None:
        _VERIFIED.add(key)
    return True


#: files verified by this process, by (path, inode, size, mtime): cog-eval reuses a cache
#: (cog-extract's check) and then opens it, and one verification is enough for both
_VERIFIED: set[tuple] = set()


def _identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def verify_file(path: str | Path, required: bool = False) -> bool:
    """`verify` on a file path; an unreadable HDF5 file is a CogError too."""
    path = Path(path)
    if not path.is_file():
        raise CogError(f"{path}: no such feature cache")
    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise CogError(f"{path}: not a readable HDF5 file ({e}); {_fix(path)}") from None
    with h5:
        return verify(h5, path, required)

"""Reading the HDF5 feature cache written by `cog.features.extract`.

Features stay on disk until asked for (`.features` is the lazy h5py dataset), so probes can
stream 1.3M x 2048 caches in chunks. An incomplete cache (no `complete` marker) is refused:
it is what a killed extraction leaves behind, and the extractor resumes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from cog import CogError
from cog.features.integrity import verify as check_integrity

JSON_ATTRS = ("card", "preprocess", "summary")
REQUIRED = ("features", "labels", "paths", "classes", "failed_paths", "failed_reasons")


def _strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[()]]


def read_attrs(h5: h5py.File) -> dict:
    """The file's attributes as Python values (JSON attributes decoded)."""
    out = {}
    for k, v in h5.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        if isinstance(v, np.generic):
            v = v.item()
        if k in JSON_ATTRS and isinstance(v, str):
            v = json.loads(v)
        out[k] = v
    return out


class FeatureSet:
    """An open feature cache. Use as a context manager, or call `close()`.

    features: h5py dataset [N, D] (lazy); labels [N] int64; classes: wnids (label = index);
    paths [N]; failed: list of (path, reason) for images that could not be decoded;
    repaired: (path, note) for images decoded after a fix (CMYK, truncated, ...); attrs: dict.
    """

    def __init__(self, path: str | Path, verify: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CogError(f"{self.path}: no such feature cache; run cog-extract to make it")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise CogError(
                f"{self.path}: not a readable HDF5 file ({e}); delete it and re-run cog-extract"
            ) from None
        h5 = self._h5
        self.attrs = read_attrs(h5)
        if not self.attrs.get("complete"):
            self._h5.close()
            raise CogError(
                f"{self.path}: incomplete feature cache (no completion marker); "
                "re-run cog-extract with the same settings to finish it"
            )
        lost = [k for k in REQUIRED if k not in h5]
        if lost:
            self._h5.close()
            raise CogError(f"{self.path}: not a cog feature cache (missing {lost})")
        if verify:
            try:
                check_integrity(h5, self.path)
            except BaseException:
                self._h5.close()
                raise
        self.features: h5py.Dataset = h5["features"]
        self.labels = h5["labels"][()].astype(np.int64)
        self.classes = _strings(h5["classes"])
        self.paths = _strings(h5["paths"])
        self.failed = list(
            zip(_strings(h5["failed_paths"]), _strings(h5["failed_reasons"]), strict=True)
        )
        self.repaired = (
            list(zip(_strings(h5["repaired_paths"]), _strings(h5["repaired_reasons"]), strict=True))
            if "repaired_paths" in h5
            else []
        )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def load(self, dtype: np.dtype | str = np.float32) -> np.ndarray:
        """All features in memory as `dtype`."""
        return self.features[()].astype(dtype, copy=False)

    def iter_chunks(self, rows: int = 65536) -> Iterator[np.ndarray]:
        """float32 chunks of at most `rows` rows, in order."""
        for start in range(0, len(self), rows):
            yield self.features[start : start + rows].astype(np.float32)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> FeatureSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FeatureSet({self.path}, {len(self)} x {self.dim}, {len(self.classes)} classes, "
            f"{len(self.failed)} failed)"
        )


def open_features(path: str | Path, verify: bool = True) -> FeatureSet:
    """Open a complete feature cache (see `FeatureSet`), its checksums verified first
    (`cog.features.integrity`; one extra read of the file, see benchmarks/README.md)."""
    return FeatureSet(path, verify)

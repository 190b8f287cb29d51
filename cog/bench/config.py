"""What one `cog-eval` run is: `EvalConfig`, the datasets and splits, run paths,
and the checks that refuse inputs the probe would silently get wrong.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cog import CogError, __version__
from cog.bench.leaderboard import (
    PROTOCOLS,
    dataset_order,
)
from cog.features.images import SPLITS  # noqa: F401 (re-exported)
from cog.features.options import DataRoots, ExtractOptions, FeatureSource
from cog.io import sha256_file
from cog.protocols.sampling import FEW_SHOT_N, SEEDS, validation_size

SCHEMA_VERSION = 1
DEFAULT_SEEDS = SEEDS  # protocol section 4
DEFAULT_SHOTS = FEW_SHOT_N
KNN_K = 20
KNN_TEMPERATURE = 0.07
PAIR_SEED = 0  # alignment/uniformity pair sample
VERSIONED_PACKAGES = ("torch", "timm", "scikit-learn", "numpy", "h5py", "optuna")


@dataclass
class EvalConfig:
    """Everything one `cog-eval` invocation was asked for (stored in every run JSON).

    Where the data is (`roots`) and how missing caches are extracted (`extraction`) are
    the bundles of cog.features.options, passed on whole to `ensure_features`."""

    model: str
    roots: DataRoots = field(default_factory=DataRoots)
    extraction: ExtractOptions = field(default_factory=ExtractOptions)
    out: Path = Path("results")
    cache_dir: Path | None = None
    datasets: tuple[str, ...] | None = None
    few_shot: bool = False
    shots: tuple[int, ...] = DEFAULT_SHOTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    protocol: str = "fast"
    knn: bool = True
    random_init: bool = False
    force: bool = False
    overwrite_features: bool = False  # replace caches made with other settings
    checkpoint: Path | None = None  # a local weights file instead of the card's sources

    @property
    def device(self) -> str:
        """The one device of the run: extraction and probes."""
        return self.extraction.device

    @property
    def progress(self) -> bool:
        return self.extraction.progress

    def source(self) -> FeatureSource:
        """What `ensure_features` needs to find or make this run's caches."""
        return FeatureSource(
            self.roots, self.extraction, self.cache_dir, self.checkpoint, self.random_init
        )

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise CogError(f"--protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise CogError(
                f"--seeds {self.seeds}: give one or more distinct non-negative integer seeds"
            )
        if self.checkpoint is not None and self.random_init:
            raise CogError("--checkpoint and --random-init exclude each other; pick one")
        if self.few_shot and (not self.shots or min(self.shots) < 1):
            raise CogError(f"--shots {self.shots}: give positive numbers of images per class")
        self.roots.check()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["roots"] = self.roots.to_dict()  # its paths as strings; the options are plain
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


@dataclass
class Split:
    """One feature cache, opened and checked: what a run needs and what its JSON records."""

    dataset: str
    split: str
    path: Path
    classes: list[str]
    labels: np.ndarray
    attrs: dict
    failed: list[tuple[str, str]]  # (path, reason) of images that could not be decoded
    features: object = field(repr=False, default=None)  # the FeatureSet (lazy HDF5)

    def record(self) -> dict:
        return {
            "cache": str(self.path),
            "images_sha256": self.attrs.get("images_sha256"),
            "weights_sha256": self.attrs.get("weights_sha256"),
            "n_images": len(self.labels),
            "n_classes": len(self.classes),
            "feature_dim": int(self.features.features.shape[1])
            if self.features is not None
            else None,
            "failed_images": len(self.failed),
            "failed_examples": [list(f) for f in self.failed[:10]],
            "dtype": self.attrs.get("dtype"),
            "mode": self.attrs.get("mode"),
        }


# ---------------------------------------------------------------- small helpers


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"cog": __version__, "python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _file_record(path: Path | None) -> dict | None:
    return None if path is None else {"path": str(path), "sha256": sha256_file(path)}


def _pick(path: Path, names: Sequence[str]) -> Path | None:
    """The file a reader will use: `path` itself, or the first of `names` inside a folder."""
    path = Path(path)
    if path.is_dir():
        return next((path / n for n in names if (path / n).is_file()), None)
    return path if path.is_file() else None


def levels_file(levels: Path | None) -> Path | None:
    """The levels file cog.features.images reads (`--levels`, else cog.io.default_levels())."""
    from cog.concepts.levels import MAPPING_FILE
    from cog.io import default_levels

    return _pick(levels or default_levels(), (MAPPING_FILE, "levels.csv"))


def splits_file(splits: Path | None) -> Path | None:
    """The split file cog.features.images reads (`--splits`, else cog.io.default_splits())."""
    from cog.concepts.splits import SPLIT_CSV, SPLIT_FILE
    from cog.io import default_splits

    return _pick(splits or default_splits(), (SPLIT_FILE, SPLIT_CSV))


def run_name(dataset: str, setting: str, n_shot: int, protocol: str) -> str:
    """`<dataset>_<setting>[_n<N>]_<protocol>.json` (docs/design.md)."""
    shot = f"_n{n_shot}" if setting == "few-shot" else ""
    return f"{dataset}_{setting}{shot}_{protocol}.json"


def run_path(out: Path, model: str, dataset: str, setting: str, n_shot: int, protocol: str):
    return Path(out) / "runs" / model / run_name(dataset, setting, n_shot, protocol)


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial.json")


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "values": [float(x) for x in v]}


# ---------------------------------------------------------------- datasets and inputs


def level_count(levels: Path | None) -> int:
    """Levels in the levels file (5 when there is none to read)."""
    path = levels_file(levels)
    if path is None:
        return 5
    from cog.concepts.levels import read_levels

    return len(read_levels(path))


def resolve_datasets(cfg: EvalConfig) -> list[str]:
    """The requested datasets, checked against the number of levels in the levels file."""
    n = level_count(cfg.roots.levels)
    known = ["in1k"] + [f"cog_l{k}" for k in range(1, n + 1)]
    if cfg.datasets is None:
        return known
    bad = [d for d in cfg.datasets if d not in known]
    if bad:
        raise CogError(
            f"--datasets: unknown dataset(s) {', '.join(bad)}; choose from {', '.join(known)}"
            + ("" if cfg.roots.levels is None else f" ({cfg.roots.levels} has {n} levels)")
        )
    if len(set(cfg.datasets)) != len(cfg.datasets):
        raise CogError(f"--datasets {','.join(cfg.datasets)}: a dataset is listed twice")
    return sorted(cfg.datasets, key=dataset_order)


def check_roots(cfg: EvalConfig, datasets: Sequence[str]) -> None:
    """Fail before any work when a dataset's image root is not given: the extractor needs it
    to make a cache, and to check that an existing one still matches the images."""
    if "in1k" in datasets and cfg.roots.in1k_root is None:
        raise CogError(
            "in1k needs --in1k-root DIR (the folder holding train/ and val/); pass it, or "
            "leave in1k out of --datasets"
        )
    levels = [d for d in datasets if d != "in1k"]
    if levels and cfg.roots.imagenet_root is None:
        raise CogError(
            f"{', '.join(levels)} need --imagenet-root DIR (the ImageNet-21K root) with "
            "--levels and --splits; pass it, or leave the CoG levels out of --datasets"
        )


def open_split(path: Path, dataset: str, split: str) -> Split:
    from cog.features.cache import open_features

    fs = open_features(path)
    return Split(
        dataset=dataset,
        split=split,
        path=Path(path),
        classes=[str(c) for c in fs.classes],
        labels=np.asarray(fs.labels, dtype=np.int64),
        attrs=dict(fs.attrs),
        failed=list(fs.failed or []),
        features=fs,
    )


# ---------------------------------------------------------------- validation


def check_weights(sp: Split, model: str, random_init: bool) -> None:
    """Never evaluate random weights unless asked, and never mix them with trained ones."""
    sha = sp.attrs.get("weights_sha256")
    if random_init and not str(sha).startswith("random-init"):
        raise CogError(
            f"{sp.path}: features come from weights {sha}, not from a random init; "
            "re-extract with --random-init (delete the cache file) or drop --random-init"
        )
    if not random_init and str(sha).startswith("random-init"):
        raise CogError(
            f"{sp.path}: features come from a RANDOM-INIT {model}; delete this cache file so "
            "cog-eval re-extracts it with the trained weights, or pass --random-init"
        )
    cached = sp.attrs.get("model")
    if cached is not None and str(cached) != model:
        raise CogError(f"{sp.path}: features of model {cached}, expected {model}; delete the file")


def check_pair(train: Split, test: Split) -> None:
    """Train and test must hold the same classes, each with at least one image."""
    if train.classes != test.classes:
        tr, te = set(train.classes), set(test.classes)
        only_tr, only_te = sorted(tr - te), sorted(te - tr)
        detail = (
            f"only in train: {_few(only_tr)}; only in test: {_few(only_te)}"
            if only_tr or only_te
            else "same wnids in a different order"
        )
        raise CogError(
            f"{train.dataset}: class sets of {train.path} ({len(tr)} classes) and {test.path} "
            f"({len(te)} classes) differ ({detail}); rebuild the splits file so every concept "
            "has train and test images (cog-build-splits) and delete both caches"
        )
    for sp in (train, test):
        counts = np.bincount(sp.labels, minlength=len(sp.classes))
        if len(counts) > len(sp.classes) or sp.labels.min(initial=0) < 0:
            raise CogError(f"{sp.path}: labels outside 0..{len(sp.classes) - 1}; delete the file")
        empty = [sp.classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise CogError(
                f"{sp.path}: {len(empty)} class(es) have no {sp.split} image ({_few(empty)}); "
                "their images failed to decode or are missing from the splits file: fix the "
                "images or the splits and delete the cache"
            )


def check_shots(train: Split, shots: Sequence[int]) -> None:
    """Every class needs N images outside its 20% validation slice for an N-shot run: the
    tuning draws N there (protocol.md section 4), and no class is dropped or shrunk."""
    counts = np.bincount(train.labels, minlength=len(train.classes))
    tuning = np.array([c - validation_size(int(c)) for c in counts])
    for n in sorted(shots):
        small = np.flatnonzero(tuning < n)
        if len(small):
            ex = ", ".join(f"{train.classes[i]}: {tuning[i]} of {counts[i]}" for i in small[:5])
            raise CogError(
                f"{train.path}: {len(small)} class(es) have fewer than {n} training images "
                f"outside the 20% validation split ({ex}{', ...' if len(small) > 5 else ''}); "
                f"drop N={n} from --shots or give those classes more images"
            )


def check_finite(sp: Split, rows: int = 65536) -> None:
    """Scan the cache in chunks: one NaN/inf row would poison the probe without a word."""
    start = 0
    for chunk in sp.features.iter_chunks(rows):
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            first = start + int(np.flatnonzero(bad)[0])
            paths = sp.features.paths
            where = f" (image {paths[first]})" if paths is not None else ""
            raise CogError(
                f"{sp.path}: feature row {first}{where} holds NaN or inf; the model produced "
                "non-finite features (float16 overflow or broken weights): re-extract with "
                "float32 features (cog-eval --dtype float32 --overwrite-features)"
            )
        start += len(chunk)


def _few(items: Sequence[str], n: int = 5) -> str:
    if not items:
        return "none"
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")

"""`cog-eval` orchestration: features in, run JSONs and leaderboard rows out.

For one model it makes sure every (dataset, split) feature cache exists (extracting what is
missing), refuses inputs the probe would silently get wrong (class sets that differ, non-finite
features, classes too small for a few-shot N, random weights not asked for), runs the linear
probe per seed (all data and few-shot), kNN and alignment/uniformity, writes one JSON per run
under `<out>/runs/<model>/` and replaces the model's rows in `<out>/leaderboard.csv`.

Runs resume: a finished run JSON whose inputs (weights, feature mode and type, image lists,
level and split files, seeds, protocol) match is reused unless `force`; seeds finished before
an interruption are kept in a hidden `.<run>.partial.json` beside it. The leaderboard is
written once, at the end, so a failed evaluation leaves it untouched.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cog import CogError, __version__
from cog.io import atomic_write, sha256_file
from cog.leaderboard import (
    NO_PROTOCOL,
    PROTOCOLS,
    dataset_order,
    identity_from_run,
    leaderboard_model_name,
    make_row,
    read_leaderboard,
    update_leaderboard,
)
from cog.probe import FEW_SHOT_N, SEEDS, validation_size

SCHEMA_VERSION = 1
SPLITS = ("train", "test")
DEFAULT_SEEDS = SEEDS  # protocol section 4
DEFAULT_SHOTS = FEW_SHOT_N
KNN_K = 20
KNN_TEMPERATURE = 0.07
PAIR_SEED = 0  # alignment/uniformity pair sample
VERSIONED_PACKAGES = ("torch", "timm", "scikit-learn", "numpy", "h5py", "optuna")


@dataclass
class EvalConfig:
    """Everything one `cog-eval` invocation was asked for (stored in every run JSON)."""

    model: str
    in1k_root: Path | None = None
    imagenet_root: Path | None = None
    levels: Path | None = None
    splits: Path | None = None
    out: Path = Path("results")
    cache_dir: Path | None = None
    datasets: tuple[str, ...] | None = None
    few_shot: bool = False
    shots: tuple[int, ...] = DEFAULT_SHOTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    protocol: str = "fast"
    knn: bool = True
    random_init: bool = False
    device: str = "auto"
    force: bool = False
    progress: bool = True
    workers: int | None = None  # extraction: decoding processes (None: the extractor's choice)
    batch_size: int | None = None  # extraction batch (None: the extractor's choice)
    overwrite_features: bool = False  # replace caches made with other settings
    checkpoint: Path | None = None  # a local weights file instead of the card's sources
    exact: bool = False  # extraction: the card's exact preprocessing (default: fast path)
    jpeg_draft: bool = False  # extraction: reduced-scale JPEG decoding (opt-in, not exact)
    decode: str = "auto"  # extraction: auto | gpu | cpu decode path (cog.decode; recorded)
    dtype: str = "float16"  # extraction: stored feature type (float16 or float32)

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise CogError(f"--protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise CogError(
                f"--seeds {self.seeds}: give one or more distinct non-negative integer seeds"
            )
        if self.checkpoint is not None and self.random_init:
            raise CogError("--checkpoint and --random-init exclude each other; pick one")
        if self.dtype not in ("float16", "float32"):
            raise CogError(f"--dtype {self.dtype!r}: choose float16 or float32")
        if self.workers is not None and self.workers < 0:
            raise CogError(f"--workers {self.workers}: give 0 or more decoding processes")
        if self.batch_size is not None and self.batch_size < 1:
            raise CogError(f"--batch-size {self.batch_size}: give a positive batch size")
        if self.few_shot and (not self.shots or min(self.shots) < 1):
            raise CogError(f"--shots {self.shots}: give positive numbers of images per class")
        for opt, p in (
            ("--in1k-root", self.in1k_root),
            ("--imagenet-root", self.imagenet_root),
        ):
            if p is not None and not Path(p).is_dir():
                raise CogError(f"{opt} {p}: no such folder; pass the dataset's root folder")
        for opt, p in (("--levels", self.levels), ("--splits", self.splits)):
            if p is not None and not Path(p).exists():
                raise CogError(f"{opt} {p}: no such file")

    def to_dict(self) -> dict:
        d = asdict(self)
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
    """The levels file cog.data reads (`--levels`, else cog.io.default_levels())."""
    from cog.io import default_levels
    from cog.levels import MAPPING_FILE

    return _pick(levels or default_levels(), (MAPPING_FILE, "levels.csv"))


def splits_file(splits: Path | None) -> Path | None:
    """The split file cog.data reads (`--splits`, else cog.io.default_splits())."""
    from cog.io import default_splits
    from cog.splits import SPLIT_CSV, SPLIT_FILE

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
    from cog.levels import read_levels

    return len(read_levels(path))


def resolve_datasets(cfg: EvalConfig) -> list[str]:
    """The requested datasets, checked against the number of levels in the levels file."""
    n = level_count(cfg.levels)
    known = ["in1k"] + [f"cog_l{k}" for k in range(1, n + 1)]
    if cfg.datasets is None:
        return known
    bad = [d for d in cfg.datasets if d not in known]
    if bad:
        raise CogError(
            f"--datasets: unknown dataset(s) {', '.join(bad)}; choose from {', '.join(known)}"
            + ("" if cfg.levels is None else f" ({cfg.levels} has {n} levels)")
        )
    if len(set(cfg.datasets)) != len(cfg.datasets):
        raise CogError(f"--datasets {','.join(cfg.datasets)}: a dataset is listed twice")
    return sorted(cfg.datasets, key=dataset_order)


def check_roots(cfg: EvalConfig, datasets: Sequence[str]) -> None:
    """Fail before any work when a dataset's image root is not given: the extractor needs it
    to make a cache, and to check that an existing one still matches the images."""
    if "in1k" in datasets and cfg.in1k_root is None:
        raise CogError(
            "in1k needs --in1k-root DIR (the folder holding train/ and val/); pass it, or "
            "leave in1k out of --datasets"
        )
    levels = [d for d in datasets if d != "in1k"]
    if levels and cfg.imagenet_root is None:
        raise CogError(
            f"{', '.join(levels)} need --imagenet-root DIR (the ImageNet-21K root) with "
            "--levels and --splits; pass it, or leave the CoG levels out of --datasets"
        )


def open_split(path: Path, dataset: str, split: str) -> Split:
    from cog.features import open_features

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


# ---------------------------------------------------------------- runs


def _fingerprint(
    model: str,
    card_name: str,
    ds: str,
    setting: str,
    n_shot: int,
    protocol: str,
    train: Split,
    test: Split,
    data: dict,
) -> dict:
    """What a stored run must match to be reused on resume."""
    fp = {
        "model": model,
        "zoo_name": card_name,
        "dataset": ds,
        "setting": setting,
        "n_shot": n_shot,
        "protocol": protocol,
        "weights_sha256": train.attrs.get("weights_sha256"),
        "features_mode": train.attrs.get("mode"),
        "features_dtype": train.attrs.get("dtype"),
        "train_images_sha256": train.attrs.get("images_sha256"),
        "test_images_sha256": test.attrs.get("images_sha256"),
        "levels_sha256": (data.get("levels") or {}).get("sha256"),
        "splits_sha256": (data.get("splits") or {}).get("sha256"),
    }
    # features of the device decode path never stand in for the CPU path's (nor the reverse);
    # only named when not cpu, so runs stored before the setting existed still match
    decode = str(train.attrs.get("decode", "cpu"))
    if decode != "cpu":
        fp["features_decode"] = decode
    return fp


def _load_previous(path: Path, fingerprint: dict, force: bool) -> dict | None:
    """The stored run (final JSON, with seeds from an interrupted later attempt merged in)
    whose inputs match `fingerprint`; None with `force` or when nothing matches."""
    if force:
        return None
    found = []
    for p in (path, _partial_path(path)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("schema") == SCHEMA_VERSION and rec.get("inputs") == fingerprint:
            found.append(rec)
    if not found:
        return None
    rec = found[0]
    for extra in found[1:]:
        rec = {**rec, "complete": False}
        rec["probe"] = {"per_seed": rec["probe"]["per_seed"] | extra["probe"]["per_seed"]}
    return rec


def _write_json(path: Path, rec: dict) -> None:
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(rec, f, indent=2, sort_keys=False)
        f.write("\n")


class Evaluator:
    """Runs one model over its datasets; see `evaluate` for the one-call form."""

    def __init__(self, cfg: EvalConfig):
        cfg.validate()
        self.cfg = cfg
        from cog.zoo import get_card

        self.card = get_card(cfg.model)
        self.name = leaderboard_model_name(self.card.name, cfg.random_init)
        self.datasets = resolve_datasets(cfg)
        self.out = Path(cfg.out)
        self.timings: dict[str, float] = {}
        self.records: list[dict] = []
        self.reused: list[Path] = []
        self.written: list[Path] = []

    # ---- inputs

    def _data_files(self, ds: str) -> dict:
        """Where a dataset's images and lists came from, with the lists' sha256."""
        cfg = self.cfg
        if ds == "in1k":
            return {"in1k_root": str(cfg.in1k_root) if cfg.in1k_root else None}
        return {
            "imagenet_root": str(cfg.imagenet_root) if cfg.imagenet_root else None,
            "levels": _file_record(levels_file(cfg.levels)),
            "splits": _file_record(splits_file(cfg.splits)),
        }

    def prepare(self) -> dict[str, tuple[Split, Split]]:
        """Extract missing caches, open and validate all of them (before any probe runs)."""
        check_roots(self.cfg, self.datasets)
        opened: list[Split] = []
        try:
            for ds in self.datasets:
                for split in SPLITS:
                    opened.append(self._features(ds, split))
                train, test = opened[-2:]
                check_pair(train, test)
                if self.cfg.few_shot:
                    check_shots(train, self.cfg.shots)
                check_finite(train)
                check_finite(test)
        except BaseException:
            for sp in opened:
                sp.features.close()
            raise
        return {sp.dataset: (sp, opened[k + 1]) for k, sp in enumerate(opened) if k % 2 == 0}

    def _features(self, ds: str, split: str) -> Split:
        """One cache, extracted if missing, opened, and checked for the right weights."""
        cfg = self.cfg
        t0 = time.perf_counter()
        try:
            path = self._ensure(ds, split)
        except CogError as e:
            if "--overwrite" not in str(e):
                raise
            raise CogError(f"{e} (with cog-eval: --overwrite-features)") from None
        self.timings[f"features_{ds}_{split}"] = time.perf_counter() - t0
        sp = open_split(Path(path), ds, split)
        try:
            check_weights(sp, self.card.name, cfg.random_init)
        except CogError:
            sp.features.close()
            raise
        if sp.failed:
            print(
                f"warning: {sp.path}: {len(sp.failed)} image(s) could not be decoded and are not "
                "in the features (listed in its failed_paths)",
                file=sys.stderr,
            )
        return sp

    def _ensure(self, ds: str, split: str) -> Path:
        from cog.extract import ensure_features

        cfg = self.cfg
        return ensure_features(
            self.card.name,
            ds,
            split,
            cache_dir=cfg.cache_dir,
            in1k_root=cfg.in1k_root,
            imagenet_root=cfg.imagenet_root,
            levels=cfg.levels,
            splits=cfg.splits,
            random_init=cfg.random_init,
            checkpoint=cfg.checkpoint,
            exact=cfg.exact,
            jpeg_draft=cfg.jpeg_draft,
            decode=cfg.decode,
            dtype=cfg.dtype,
            device=cfg.device,
            workers=cfg.workers,
            batch_size=cfg.batch_size,
            overwrite=cfg.overwrite_features,
            progress=cfg.progress,
        )

    # ---- runs

    def _tasks(self) -> list[tuple[str, str, int]]:
        tasks = []
        for ds in self.datasets:
            tasks.append((ds, "all", 0))
            if self.cfg.few_shot:
                tasks.extend((ds, "few-shot", n) for n in sorted(self.cfg.shots))
        return tasks

    def run(self) -> list[dict]:
        """Prepare, run every (dataset, setting) and update the leaderboard; the run records."""
        t0 = time.perf_counter()
        read_leaderboard(self.out / "leaderboard.csv")  # a broken file fails now, not at the end
        pairs = self.prepare()
        try:
            self._run_all(pairs)
        finally:
            for train, test in pairs.values():
                train.features.close()
                test.features.close()
        self.timings["total"] = time.perf_counter() - t0
        rows = [row for rec in self.records for row in leaderboard_rows(rec, self.out)]
        update_leaderboard(self.out / "leaderboard.csv", rows)
        return self.records

    def _run_all(self, pairs: dict[str, tuple[Split, Split]]) -> None:
        tasks = self._tasks()
        n_units = sum(len(self.cfg.seeds) + (s == "all") for _, s, _ in tasks)
        with tqdm(
            total=n_units, desc=f"cog-eval {self.name}", unit="fit", disable=not self.cfg.progress
        ) as bar:
            for ds, setting, n in tasks:
                train, test = pairs[ds]
                self.records.append(self._run_one(ds, setting, n, train, test, bar))

    def _run_one(self, ds, setting, n, train, test, bar) -> dict:
        data = self._data_files(ds)
        cfg = self.cfg
        path = run_path(self.out, self.name, ds, setting, n, cfg.protocol)
        fp = _fingerprint(
            self.name, self.card.name, ds, setting, n, cfg.protocol, train, test, data
        )
        prev = _load_previous(path, fp, cfg.force)
        done = dict(prev["probe"]["per_seed"]) if prev else {}
        metrics = dict(prev.get("metrics", {})) if prev else {}
        want_metrics = setting == "all"
        want_knn = want_metrics and cfg.knn
        seeds = [s for s in cfg.seeds if str(s) not in done]
        have_all = (
            prev is not None
            and prev.get("complete")
            and not seeds
            and [int(s) for s in prev["seeds"]] == list(cfg.seeds)
            and (not want_metrics or {"alignment", "uniformity"} <= set(metrics))
            and (not want_knn or "knn_top1" in metrics)
        )
        if have_all:
            bar.update(len(cfg.seeds) + want_metrics)
            self.reused.append(path)
            return prev

        rec = {
            "schema": SCHEMA_VERSION,
            "complete": False,
            "model": self.name,
            "zoo_name": self.card.name,
            "group": self.card.group,
            "random_init": cfg.random_init,
            "weights_sha256": train.attrs.get("weights_sha256"),
            "checkpoint_load": train.attrs.get("checkpoint_load"),  # weights_only unless trusted
            "dataset": ds,
            "setting": setting,
            "n_shot": n,
            "protocol": cfg.protocol,
            "seeds": list(cfg.seeds),
            "inputs": fp,
            "card": self.card.to_dict(),
            "config": cfg.to_dict(),
            "data": {"train": train.record(), "test": test.record(), **data},
            "probe": {"per_seed": {}},
            "metrics": {},
            "timings": {},
            "versions": versions(),
            "started": prev.get("started", _now()) if prev else _now(),
        }
        partial = _partial_path(path)
        bar.update(len(cfg.seeds) - len(seeds))
        for seed in cfg.seeds:
            if str(seed) in done:
                rec["probe"]["per_seed"][str(seed)] = done[str(seed)]
                continue
            bar.set_postfix_str(f"{ds} {setting}{f' N={n}' if n else ''} seed {seed}")
            rec["probe"]["per_seed"][str(seed)] = probe_seed(
                train, test, seed=seed, n_shot=n, protocol=cfg.protocol, device=cfg.device
            )
            _write_json(partial, rec)
            bar.update(1)
        per_seed = [rec["probe"]["per_seed"][str(s)] for s in cfg.seeds]
        for m in ("top1", "top5"):
            rec["probe"][m] = _stats([r[m] for r in per_seed])
        if want_metrics:
            bar.set_postfix_str(f"{ds} kNN / alignment / uniformity")
            rec["metrics"] = metrics | feature_metrics(
                train,
                test,
                knn=want_knn and "knn_top1" not in metrics,
                skip=set(metrics),
                device=cfg.device,
            )
            bar.update(1)
        rec["timings"] = {
            "probe_seconds": sum(r["seconds"] for r in per_seed),
            "metrics_seconds": sum(v.get("seconds", 0.0) for v in rec["metrics"].values()),
            "features_seconds": {s: self.timings.get(f"features_{ds}_{s}") for s in SPLITS},
        }
        rec["complete"] = True
        rec["finished"] = _now()
        _write_json(path, rec)
        partial.unlink(missing_ok=True)
        self.written.append(path)
        return rec


def probe_seed(
    train: Split, test: Split, *, seed: int, n_shot: int, protocol: str, device: str
) -> dict:
    """One probe fit and test for one seed: top-1/top-5 (percent), best params, time.

    The features go to the probe as the lazy HDF5 datasets: it streams them in chunks, so
    ImageNet-1K train never sits in memory twice."""
    from cog.probe import LogRegProbe

    t0 = time.perf_counter()
    probe = LogRegProbe(protocol=protocol, seed=seed, device=device, n_shot=n_shot or None)
    probe.fit(train.features.features, train.labels, class_names=train.classes)
    s = probe.scores(test.features.features, test.labels, class_names=test.classes)
    return {
        "top1": 100.0 * float(s["top1"]),
        "top5": 100.0 * float(s["top5"]),
        "best_params": _jsonable(getattr(probe, "best_params_", None)),
        "n_train": int(getattr(probe, "n_train_", len(train.labels))),
        "seconds": time.perf_counter() - t0,
        "timings": _jsonable(getattr(probe, "timings_", None)),
        "peak_memory_bytes": _jsonable(getattr(probe, "peak_memory_", None)),
        "device": getattr(probe, "device_", None),
        "search": _jsonable(getattr(probe, "cv_results_", None)),
    }


def feature_metrics(
    train: Split, test: Split, *, knn: bool, skip: set, device: str = "auto"
) -> dict:
    """kNN top-1 (percent; train as memory, test as queries) and alignment/uniformity of the
    test features (same-class pairs; fixed pair sample): one seed-independent value each."""
    from cog import metrics

    out: dict = {}
    if knn:
        t0 = time.perf_counter()
        s = metrics.knn_scores(
            train.features.features,
            train.labels,
            test.features.features,
            test.labels,
            k=KNN_K,
            temperature=KNN_TEMPERATURE,
            device=device,
        )
        out["knn_top1"] = {
            "value": 100.0 * float(s["top1"]),
            "top5": 100.0 * float(s["top5"]),
            "k": int(s["k"]),
            "temperature": KNN_TEMPERATURE,
            "seconds": time.perf_counter() - t0,
        }
    X = test.features.features
    pairs = {"n_pairs": metrics.DEFAULT_PAIRS, "seed": PAIR_SEED}
    for name in ("alignment", "uniformity"):
        if name in skip:
            continue
        t0 = time.perf_counter()
        if name == "alignment":
            value = metrics.alignment(X, test.labels, **pairs)
        else:
            value = metrics.uniformity(X, **pairs)
        out[name] = {
            "value": float(value),
            "on": "test",
            **pairs,
            "seconds": time.perf_counter() - t0,
        }
    return out


def _jsonable(obj):
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return str(obj)


# ---------------------------------------------------------------- leaderboard and summary


def leaderboard_rows(rec: dict, out: Path) -> list[dict]:
    """The leaderboard rows of one run record (probe metrics, then feature metrics)."""
    run = str(
        run_path(
            Path("."), rec["model"], rec["dataset"], rec["setting"], rec["n_shot"], rec["protocol"]
        )
    )
    common = dict(
        model=rec["model"],
        group=rec["group"],
        dataset=rec["dataset"],
        setting=rec["setting"],
        n_shot=rec["n_shot"],
        run=run,
        updated=rec.get("finished"),
        **identity_from_run(rec),
    )
    seeds = [int(s) for s in rec["seeds"]]
    rows = [
        make_row(
            **common,
            metric=m,
            protocol=rec["protocol"],
            values=rec["probe"][m]["values"],
            seeds=seeds,
        )
        for m in ("top1", "top5")
    ]
    for m in ("knn_top1", "alignment", "uniformity"):
        if m in rec.get("metrics", {}):
            rows.append(
                make_row(
                    **common,
                    metric=m,
                    protocol=NO_PROTOCOL,
                    values=[rec["metrics"][m]["value"]],
                    seeds=None,
                )
            )
    return rows


def summary_table(records: Sequence[dict]) -> str:
    """Rows: metric and setting; columns: datasets; cells `mean ± std` over seeds."""
    import pandas as pd

    cells: dict[str, dict[str, str]] = {}
    order: list[str] = []

    def put(row: str, ds: str, text: str) -> None:
        if row not in cells:
            cells[row] = {}
            order.append(row)
        cells[row][ds] = text

    for rec in sorted(records, key=lambda r: (r["setting"] != "all", r["n_shot"])):
        ds = rec["dataset"]
        label = "all" if rec["setting"] == "all" else f"N={rec['n_shot']}"
        for m in ("top1", "top5"):
            s = rec["probe"][m]
            put(f"{m} {label}", ds, f"{s['mean']:.2f} ± {s['std']:.2f}")
        for m, v in rec.get("metrics", {}).items():
            put(m, ds, f"{v['value']:.2f}" if m == "knn_top1" else f"{v['value']:.3f}")
    datasets = sorted({r["dataset"] for r in records}, key=dataset_order)
    df = pd.DataFrame(
        [[cells[r].get(d, "") for d in datasets] for r in order], index=order, columns=datasets
    )
    return df.to_string()


def evaluate(cfg: EvalConfig, echo: Callable[[str], None] | None = print) -> list[dict]:
    """Run `cog-eval` for one model; returns the run records (also written as JSON)."""
    ev = Evaluator(cfg)
    records = ev.run()
    if echo is not None:
        random = " (RANDOM-INIT weights)" if cfg.random_init else ""
        echo(
            f"{ev.name}{random}, protocol {cfg.protocol}, seeds "
            f"{','.join(map(str, cfg.seeds))}: top-1/top-5 in %, mean ± population std"
        )
        echo(summary_table(records))
        echo(
            f"runs: {len(ev.written)} written, {len(ev.reused)} reused, under "
            f"{ev.out / 'runs' / ev.name}; leaderboard: {ev.out / 'leaderboard.csv'}"
        )
    return records

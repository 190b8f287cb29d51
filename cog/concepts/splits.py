"""Per-concept train/test image lists for the CoG levels (`cog-build-splits`), and reading them.

The authors' `cog_concepts_split_file.pkl` is a pickled dict wnid -> {"train": array of paths,
"test": array of paths}, paths relative to the ImageNet-21K root. We write the same format
(and a CSV) from a user's own ImageNet-21K root: 50 test images per concept, up to 1300
training images, at least 732. Each concept is drawn from its own seeded generator, so adding
or excluding a concept never changes the images drawn for another.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import cog
from cog import CogError
from cog.concepts.levels import SPLITS_DIR, read_levels
from cog.io import WNID_RE, atomic_files, default_splits, sha256_file
from cog.listing import scan_images
from cog.safe_pickle import safe_load

SPLIT_FILE = "cog_concepts_split_file.pkl"
SPLIT_CSV = "cog_concepts_split_file.csv"
SPLIT_JSON = "cog_concepts_split_file.json"
DEFAULT_SPLITS = SPLITS_DIR / SPLIT_FILE
N_TEST, MAX_TRAIN, MIN_TRAIN = 50, 1300, 732


def list_class_images(
    folder: str | Path, root: str | Path, failed: list[tuple[str, str]] | None = None
) -> list[str]:
    """Sorted image files of one class folder, as paths relative to `root` (posix).

    Entries that cannot be images (dangling links, loops, folders, non-UTF-8 names) are
    appended to `failed` as (path, reason) (see cog.listing.scan_images)."""
    paths, bad = scan_images(folder, root)
    if failed is not None:
        failed += bad
    return paths


@dataclass
class SplitsResult:
    """Drawn splits, the concepts excluded for having too few images, and the settings."""

    splits: dict[str, dict[str, np.ndarray]]
    levels: list[list[str]]
    excluded: dict[str, int] = field(default_factory=dict)  # wnid -> images found
    settings: dict = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) not listed


def build_splits(
    imagenet_root: str | Path,
    levels: str | Path | list[list[str]],
    *,
    n_test: int = N_TEST,
    max_train: int = MAX_TRAIN,
    min_train: int = MIN_TRAIN,
    seed: int = 0,
    exclude_small: bool = False,
    progress: bool = True,
) -> SplitsResult:
    """Draw `n_test` test and up to `max_train` training images per level concept.

    A concept with fewer than `n_test + min_train` images is an error naming it, unless
    `exclude_small`, which leaves it out and lists it in the result (and the written report).
    """
    root = Path(imagenet_root)
    if not root.is_dir():
        raise CogError(f"{root}: no such folder (expected an ImageNet-21K root of <wnid>/ folders)")
    if min(n_test, min_train) < 1 or max_train < min_train:
        raise CogError("need n_test >= 1, min_train >= 1 and max_train >= min_train")
    lv = read_levels(levels) if not isinstance(levels, list) else [list(x) for x in levels]
    wnids = sorted({w for level in lv for w in level})
    counts: dict[str, list[str]] = {}
    missing: list[str] = []
    failed: list[tuple[str, str]] = []
    for w in tqdm(wnids, desc="listing concepts", unit="concept", disable=not progress):
        folder = root / w
        if folder.is_dir():
            try:
                counts[w] = list_class_images(folder, root, failed)
            except OSError as e:
                raise CogError(
                    f"{folder}: cannot list concept {w} ({e.strerror or e}); fix its "
                    "permissions or the link, or exclude the concept"
                ) from None
        elif (root / f"{w}.tar").is_file():
            raise CogError(
                f"{root / (w + '.tar')}: concept {w} is still a tar archive; extract it into "
                f"{folder}/ (tar -xf {w}.tar -C {w}) so image paths exist"
            )
        else:
            missing.append(w)
            counts[w] = []
    if failed:
        print(
            f"warning: {len(failed)} entries under {root} look like images but cannot be read "
            f"(e.g. {failed[0][0]}: {failed[0][1]}); they are not drawn and are listed under "
            "failed_paths in the report",
            file=sys.stderr,
        )
    need = n_test + min_train
    small = {w: len(p) for w, p in counts.items() if len(p) < need}
    shown = short_list(small)
    emptied = [k for k, level in enumerate(lv, start=1) if level and set(level) <= set(small)]
    if small and exclude_small and emptied:
        raise CogError(
            f"{root}: with --exclude-small no concept of level(s) "
            f"{', '.join(f'L{k}' for k in emptied)} is left ({len(small)} of {len(wnids)} "
            f"concepts have fewer than {need} images: {short_list(small, 5)}); lower --n-test "
            f"({n_test}) or --min-train ({min_train}), or rebuild the levels from image counts "
            "(cog-build-levels --imagenet-root, --min-images) so they hold large concepts"
        )
    if small and not exclude_small:
        raise CogError(
            f"{root}: {len(small)} concept(s) have fewer than {need} images "
            f"({n_test} test + {min_train} train): {shown}"
            f"{'; missing folders: ' + ', '.join(missing[:5]) if missing else ''}. "
            "Fix the ImageNet-21K root, or pass --exclude-small to leave them out (they are "
            "listed in the report)"
        )
    splits: dict[str, dict[str, np.ndarray]] = {}
    for w in wnids:
        if w in small:
            continue
        paths = counts[w]
        rng = np.random.default_rng([seed, int(w[1:])])
        perm = rng.permutation(len(paths))
        test = sorted(paths[i] for i in perm[:n_test])
        train = sorted(paths[i] for i in perm[n_test : n_test + max_train])
        splits[w] = {"train": np.asarray(train), "test": np.asarray(test)}
    settings = {
        "imagenet_root": str(root.resolve()),
        "n_test": n_test,
        "max_train": max_train,
        "min_train": min_train,
        "seed": seed,
        "exclude_small": exclude_small,
    }
    return SplitsResult(splits, lv, small, settings, failed)


def short_list(counts: dict[str, int], n: int = 10) -> str:
    """`wnid (k images), ...` for the first `n`, then how many more: error lines stay short."""
    shown = ", ".join(f"{w} ({k} images)" for w, k in list(counts.items())[:n])
    return shown + (f" and {len(counts) - n} more" if len(counts) > n else "")


def write_splits(result: SplitsResult, out_dir: str | Path = SPLITS_DIR) -> Path:
    """Write the authors' pickle, a CSV (wnid, level, split, path) and a JSON report;
    each file atomically. Returns the pickle's path."""
    out_dir = Path(out_dir)
    level_of = {w: k for k, lv in enumerate(result.levels, start=1) for w in lv}
    pkl = out_dir / SPLIT_FILE
    with atomic_files([pkl, out_dir / SPLIT_CSV, out_dir / SPLIT_JSON]) as (
        tmp_pkl,
        tmp_csv,
        tmp_json,
    ):
        _write_split_files(result, level_of, tmp_pkl, tmp_csv, tmp_json)
    return pkl


def _write_split_files(result, level_of, pkl: Path, csv: Path, js: Path) -> None:
    """The three split files at temporary paths, renamed together by the caller, so a full
    disk never leaves a new pickle beside an old CSV or report."""
    with open(pkl, "wb") as f:
        pickle.dump(result.splits, f, protocol=4)
    rows = [
        (w, level_of.get(w, 0), s, p)
        for w in sorted(result.splits)
        for s in ("train", "test")
        for p in result.splits[w][s]
    ]
    df = pd.DataFrame(rows, columns=["wnid", "level", "split", "path"])
    with open(csv, "w", newline="") as f:
        df.to_csv(f, index=False)
    n_train = [len(v["train"]) for v in result.splits.values()]
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "cog_version": cog.__version__,
        "settings": result.settings,
        "concepts": len(result.splits),
        "images": {
            "train": int(sum(n_train)),
            "test": int(sum(len(v["test"]) for v in result.splits.values())),
        },
        "train_per_concept": {"min": min(n_train, default=0), "max": max(n_train, default=0)},
        "excluded_too_small": result.excluded,
        "failed_paths": [list(f) for f in result.failed],
        "split_file_sha256": sha256_file(pkl),
    }
    with open(js, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")


def read_split_file(path: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """wnid -> {"train": [paths], "test": [paths]} from the authors' pickle or our CSV
    (default: cog.io.default_splits(), the user's ./results/splits else the shipped file)."""
    path = Path(path) if path is not None else default_splits()
    if path.is_dir():
        for name in (SPLIT_FILE, SPLIT_CSV):
            if (path / name).is_file():
                return read_split_file(path / name)
        raise CogError(f"{path}: holds neither {SPLIT_FILE} nor {SPLIT_CSV}")
    if not path.is_file():
        raise CogError(
            f"{path}: no such split file; pass the authors' {SPLIT_FILE} with --splits, or "
            "draw one from your ImageNet-21K root with cog-build-splits"
        )
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
        if not {"wnid", "split", "path"} <= set(df.columns):
            raise CogError(f"{path}: a split CSV needs 'wnid', 'split' and 'path' columns")
        raw: dict = {}
        for (w, s), g in df.groupby(["wnid", "split"], sort=False):
            raw.setdefault(w, {})[s] = g["path"].tolist()
    else:
        raw = safe_load(path)  # never pickle.load: a downloaded file must not run code
    if not isinstance(raw, dict):
        raise CogError(f"{path}: expected a dict wnid -> {{'train': paths, 'test': paths}}")
    out: dict[str, dict[str, list[str]]] = {}
    for w, v in raw.items():
        if not WNID_RE.match(str(w)) or not isinstance(v, dict):
            raise CogError(f"{path}: entry {w!r} is not wnid -> {{'train': ..., 'test': ...}}")
        lost = {"train", "test"} - set(v)
        if lost:
            raise CogError(f"{path}: concept {w} has no {sorted(lost)} list")
        out[str(w)] = {s: [str(p) for p in v[s]] for s in ("train", "test")}
    return out

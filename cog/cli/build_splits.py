"""cog-build-splits: draw per-concept train/test image lists for the CoG levels from an
ImageNet-21K root, in the authors' cog_concepts_split_file.pkl format and as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog.cli import friendly_errors
from cog.levels import DEFAULT_OUT, SPLITS_DIR
from cog.splits import MAX_TRAIN, MIN_TRAIN, N_TEST, build_splits, write_splits


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cog-build-splits",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--imagenet-root",
        type=Path,
        required=True,
        help="ImageNet-21K root holding one <wnid>/ folder of images per concept",
    )
    p.add_argument(
        "--levels",
        type=Path,
        default=DEFAULT_OUT,
        help="levels: the authors' cog_levels_mapping_file.pkl, our levels.csv, or a folder",
    )
    p.add_argument("--out", type=Path, default=SPLITS_DIR, help="output folder")
    p.add_argument("--n-test", type=int, default=N_TEST, help="test images per concept")
    p.add_argument("--max-train", type=int, default=MAX_TRAIN, help="most training images")
    p.add_argument("--min-train", type=int, default=MIN_TRAIN, help="fewest training images")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument(
        "--exclude-small",
        action="store_true",
        help="leave out concepts with too few images (listed in the report) instead of failing",
    )
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    res = build_splits(
        a.imagenet_root,
        a.levels,
        n_test=a.n_test,
        max_train=a.max_train,
        min_train=a.min_train,
        seed=a.seed,
        exclude_small=a.exclude_small,
    )
    pkl = write_splits(res, a.out)
    n_train = sum(len(v["train"]) for v in res.splits.values())
    n_test = sum(len(v["test"]) for v in res.splits.values())
    print(f"{pkl}: {len(res.splits)} concepts, {n_train} train and {n_test} test images")
    if res.excluded:
        print(
            f"EXCLUDED {len(res.excluded)} concept(s) with fewer than "
            f"{a.n_test + a.min_train} images: "
            + ", ".join(f"{w} ({n})" for w, n in res.excluded.items()),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

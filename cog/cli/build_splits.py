"""cog-build-splits: draw per-concept train/test image lists for the CoG levels from an
ImageNet-21K root, in the authors' cog_concepts_split_file.pkl format and as CSV.

By default it reads the levels cog-build-levels wrote (results/levels, else the shipped
splits/levels) and writes results/splits, where cog-eval finds them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog.cli import CogParser, add_out, add_quiet, add_roots, check_out_dir, friendly_errors
from cog.io import USER_SPLITS_DIR

# Mirrors of cog.concepts.splits constants (tests/test_cli.py checks they agree).
N_TEST, MAX_TRAIN, MIN_TRAIN = 50, 1300, 732

EPILOG = """examples:
  cog-build-splits --imagenet-root /data/imagenet21k
  cog-build-splits --imagenet-root /data/imagenet21k --levels results/levels --exclude-small
  cog-build-splits --imagenet-root tiny21k --n-test 2 --min-train 4 --max-train 8"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-build-splits", description=__doc__, epilog=EPILOG)
    add_roots(p, in1k=False, required21k=True)
    p.add_argument(
        "--levels",
        type=Path,
        help="levels: the authors' cog_levels_mapping_file.pkl, our levels.csv, or a folder "
        "(default: results/levels when built, else the shipped splits/levels)",
    )
    add_out(p, USER_SPLITS_DIR, "output folder")
    p.add_argument("--n-test", type=int, default=N_TEST, help="test images per concept")
    p.add_argument("--max-train", type=int, default=MAX_TRAIN, help="most training images")
    p.add_argument("--min-train", type=int, default=MIN_TRAIN, help="fewest training images")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument(
        "--exclude-small",
        action="store_true",
        help="leave out concepts with too few images (listed in the report) instead of failing",
    )
    add_quiet(p)
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    check_out_dir(a.out)
    from cog.concepts.splits import SPLIT_JSON, build_splits, short_list, write_splits
    from cog.io import default_levels

    res = build_splits(
        a.imagenet_root,
        a.levels or default_levels(),
        n_test=a.n_test,
        max_train=a.max_train,
        min_train=a.min_train,
        seed=a.seed,
        exclude_small=a.exclude_small,
        progress=not a.quiet,
    )
    pkl = write_splits(res, a.out)
    n_train = sum(len(v["train"]) for v in res.splits.values())
    n_test = sum(len(v["test"]) for v in res.splits.values())
    print(f"{pkl}: {len(res.splits)} concepts, {n_train} train and {n_test} test images")
    if res.excluded:
        print(
            f"EXCLUDED {len(res.excluded)} concept(s) with fewer than "
            f"{a.n_test + a.min_train} images: {short_list(res.excluded)} "
            f"(all listed in {pkl.parent / SPLIT_JSON})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

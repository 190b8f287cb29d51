"""cog-extract: a model's features for benchmark datasets (cached under $COG_HOME/features,
resumable, torchrun-aware) or for any image folder with one subfolder per class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog import CogError
from cog.cli import (
    CogParser,
    add_cache_dir,
    add_datasets,
    add_extraction,
    add_levels_splits,
    add_overwrite,
    add_quiet,
    add_roots,
    add_weights,
    check_cache_dir,
    check_out_file,
    extract_options,
    feature_source,
    friendly_errors,
)

# Mirrors of cog.features.images constants (tests/test_cli.py checks they agree), so that
# --help answers without importing torch.
DATASETS = ("in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
SPLITS = ("train", "test")

EPILOG = """examples:
  cog-extract sup_resnet50 --datasets in1k,cog_l1 --in1k-root /data/imagenet \
      --imagenet-root /data/imagenet21k
  cog-extract dino_resnet50 --images my_photos/ --out my_photos.h5
Many GPUs or nodes: torchrun --nproc-per-node 8 -m cog.cli.extract MODEL ..."""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-extract", description=__doc__, epilog=EPILOG)
    p.add_argument("model", nargs="?", help="zoo model name or alias (cog-models lists them)")
    p.add_argument(
        "--verify",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="only check these feature caches against their sha256 checksums (exit 2 if any "
        "is damaged or has none) and exit",
    )
    src = p.add_argument_group("benchmark datasets")
    add_datasets(src, DATASETS)
    src.add_argument(
        "--split",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="train and/or test (in1k test = the official val set)",
    )
    add_roots(src)
    add_levels_splits(src)
    add_cache_dir(src)
    folder = p.add_argument_group("any image folder")
    folder.add_argument("--images", type=Path, help="folder with one subfolder per class")
    folder.add_argument("--out", type=Path, help="output .h5 file for --images")
    run = p.add_argument_group("extraction")
    add_extraction(run)
    add_weights(run)
    add_overwrite(run, "replace a cache made with other settings instead of stopping")
    add_quiet(run)
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.verify:
        return _verify(a.verify)
    if not a.model:
        raise CogError("pass a MODEL (cog-models lists them), or --verify PATH... to check caches")
    if a.images is not None:
        if a.out is None or a.datasets:
            raise CogError("--images DIR needs --out FILE.h5 (and no --datasets)")
        check_out_file(a.out)
    elif a.out is not None:
        raise CogError("--out is the .h5 file of --images DIR; benchmark caches go to --cache-dir")
    else:
        check_cache_dir(a.cache_dir)
    from cog.features.ensure import ensure_features
    from cog.features.extract import extract
    from cog.features.images import image_folder

    options = extract_options(a)
    if a.images is not None:
        from cog import zoo

        images = image_folder(a.images, name=str(a.images.resolve()), split="")
        backbone = zoo.load(
            a.model, checkpoint=a.checkpoint, random_init=a.random_init, device="cpu"
        )
        extract(backbone, images, a.out, options, overwrite=a.overwrite)
        return 0
    if not a.datasets:
        raise CogError("pass --datasets NAME (in1k, cog_l1..cog_l5) or --images DIR --out FILE")
    source = feature_source(a)
    for ds in a.datasets:
        for split in a.split:
            ensure_features(a.model, ds, split, source, overwrite=a.overwrite)
    return 0


def _verify(paths: list[Path]) -> int:
    """Check each cache; one line per file, exit status 2 if any fails."""
    from cog.features.integrity import verify_file

    bad = 0
    for p in paths:
        try:
            verify_file(p, required=True)
            print(f"ok: {p}")
        except CogError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""cog-extract: a model's features for benchmark datasets (cached under $COG_HOME/features,
resumable, torchrun-aware) or for any image folder with one subfolder per class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog import CogError
from cog.cli import (
    CogParser,
    add_datasets,
    add_levels_splits,
    add_overwrite,
    add_quiet,
    add_roots,
    add_trust_checkpoint,
    check_cache_dir,
    check_out_file,
    friendly_errors,
)

# Mirrors of cog.features.images / cog.features.settings constants (tests/test_cli.py
# checks they agree), so that --help answers without importing torch.
DATASETS = ("in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
SPLITS = ("train", "test")
DTYPES = ("float16", "float32")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DECODES = ("auto", "cpu", "gpu")

EPILOG = """examples:
  cog-extract sup_resnet50 --datasets in1k,cog_l1 --in1k-root /data/imagenet \
      --imagenet-root /data/imagenet21k
  cog-extract dino_resnet50 --images my_photos/ --out my_photos.h5
Many GPUs or nodes: torchrun --nproc-per-node 8 -m cog.cli.extract MODEL ..."""


def add_decode_argument(group) -> None:
    """--decode, shared with cog-eval."""
    group.add_argument(
        "--decode",
        choices=DECODES,
        default="auto",
        help="where JPEGs are decoded and resized: gpu = on the model's device (nvJPEG), "
        "cpu = decoded in the loader workers, auto = gpu only on CUDA after a start-up "
        "self-check on a sample of the run's own files meets the fidelity bar (recorded "
        "in the cache; caches of the two paths never mix)",
    )


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
    src.add_argument(
        "--cache-dir", type=Path, help="feature cache root (default: $COG_HOME/features)"
    )
    folder = p.add_argument_group("any image folder")
    folder.add_argument("--images", type=Path, help="folder with one subfolder per class")
    folder.add_argument("--out", type=Path, help="output .h5 file for --images")
    run = p.add_argument_group("extraction")
    run.add_argument(
        "--exact",
        action="store_true",
        help="the card's torchvision transform itself (default: the fast path, the same "
        "resize and crop in uint8, normalized on the device; checked against the transform "
        "before each run)",
    )
    run.add_argument(
        "--jpeg-draft",
        action="store_true",
        help="fast path also decodes large JPEGs at reduced DCT scale: faster, but not the "
        "protocol's pixels (README: measured deviation; recorded in the cache)",
    )
    add_decode_argument(run)
    run.add_argument("--dtype", choices=DTYPES, default="float16", help="stored feature dtype")
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision: auto = bf16/fp16 autocast on CUDA, fp32 on CPU",
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    run.add_argument(
        "--batch-size", type=int, help="default: 256 on CUDA (halved on OOM), 32 on CPU"
    )
    run.add_argument("--workers", type=int, help="decoding processes (default: from the cores)")
    run.add_argument("--checkpoint", type=Path, help="local checkpoint instead of the card's")
    add_trust_checkpoint(run)
    run.add_argument(
        "--random-init",
        action="store_true",
        help="random weights (smoke runs only; never for results)",
    )
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

    common = dict(
        exact=a.exact,
        jpeg_draft=a.jpeg_draft,
        decode=a.decode,
        dtype=a.dtype,
        precision=a.precision,
        device=a.device,
        batch_size=a.batch_size,
        workers=a.workers,
        overwrite=a.overwrite,
        progress=not a.quiet,
    )
    if a.images is not None:
        from cog import zoo

        images = image_folder(a.images, name=str(a.images.resolve()), split="")
        backbone = zoo.load(
            a.model, checkpoint=a.checkpoint, random_init=a.random_init, device="cpu"
        )
        extract(backbone, images, a.out, **common)
        return 0
    if not a.datasets:
        raise CogError("pass --datasets NAME (in1k, cog_l1..cog_l5) or --images DIR --out FILE")
    for ds in a.datasets:
        for split in a.split:
            ensure_features(
                a.model,
                ds,
                split,
                cache_dir=a.cache_dir,
                in1k_root=a.in1k_root,
                imagenet_root=a.imagenet_root,
                levels=a.levels,
                splits=a.splits,
                checkpoint=a.checkpoint,
                random_init=a.random_init,
                **common,
            )
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

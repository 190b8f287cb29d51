"""cog-extract: a model's features for benchmark datasets (cached under $COG_HOME/features,
resumable, torchrun-aware) or for any image folder with one subfolder per class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog import CogError
from cog.cli import add_trust_checkpoint, friendly_errors
from cog.data import DATASETS, SPLITS, image_folder
from cog.extract import DTYPES, PRECISIONS, ensure_features, extract


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cog-extract",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Many GPUs or nodes: torchrun --nproc-per-node 8 -m cog.cli.extract MODEL ...",
    )
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
    src.add_argument(
        "--dataset",
        nargs="+",
        choices=DATASETS,
        metavar="NAME",
        help=f"one or more of {', '.join(DATASETS)}",
    )
    src.add_argument(
        "--split",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="train and/or test (in1k test = the official val set)",
    )
    src.add_argument("--in1k-root", type=Path, help="ImageNet-1K root holding train/ and val/")
    src.add_argument("--imagenet-root", type=Path, help="ImageNet-21K root (<wnid>/ folders)")
    src.add_argument("--levels", type=Path, help="levels file (default: the shipped levels)")
    src.add_argument(
        "--splits", type=Path, help="split file (default: splits/cog_concepts_split_file.pkl)"
    )
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
    run.add_argument(
        "--overwrite", action="store_true", help="replace a cache made with other settings"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.verify:
        return _verify(a.verify)
    if not a.model:
        raise CogError("pass a MODEL (cog-models lists them), or --verify PATH... to check caches")
    common = dict(
        exact=a.exact,
        jpeg_draft=a.jpeg_draft,
        dtype=a.dtype,
        precision=a.precision,
        device=a.device,
        batch_size=a.batch_size,
        workers=a.workers,
        overwrite=a.overwrite,
        progress=not a.quiet,
    )
    if a.images is not None:
        if a.out is None or a.dataset:
            raise CogError("--images DIR needs --out FILE.h5 (and no --dataset)")
        from cog import zoo

        images = image_folder(a.images, name=str(a.images.resolve()), split="")
        backbone = zoo.load(
            a.model, checkpoint=a.checkpoint, random_init=a.random_init, device="cpu"
        )
        extract(backbone, images, a.out, **common)
        return 0
    if not a.dataset:
        raise CogError("pass --dataset NAME (in1k, cog_l1..cog_l5) or --images DIR --out FILE")
    for ds in a.dataset:
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
    from cog.integrity import verify_file

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

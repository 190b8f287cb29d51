"""cog-eval: evaluate one model on ImageNet-1K and the CoG levels (linear probes, kNN,
alignment/uniformity); writes run JSONs and updates the CSV leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from cog import CogError
from cog.cli import friendly_errors, int_list, name_list
from cog.evaluate import DEFAULT_SEEDS, DEFAULT_SHOTS, EvalConfig, evaluate
from cog.leaderboard import PROTOCOLS, RANDOM_INIT_SUFFIX


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cog-eval",
        description=__doc__,
    )
    p.add_argument("model", help="zoo name or alias (cog-models lists them)")
    p.add_argument("--in1k-root", type=Path, help="ImageNet-1K root holding train/ and val/")
    p.add_argument("--imagenet-root", type=Path, help="ImageNet-21K root (<wnid>/ folders)")
    p.add_argument(
        "--levels",
        type=Path,
        help="levels: the authors' cog_levels_mapping_file.pkl, our levels.csv, or a folder",
    )
    p.add_argument(
        "--splits",
        type=Path,
        help="per-concept train/test lists: the authors' cog_concepts_split_file.pkl or ours",
    )
    p.add_argument(
        "--out", type=Path, default=Path("results"), help="results folder (default: results)"
    )
    p.add_argument("--cache-dir", type=Path, help="feature cache (default $COG_HOME/features)")
    p.add_argument(
        "--datasets",
        type=name_list,
        help="comma-separated subset of in1k,cog_l1,...,cog_l5 (default: all)",
    )
    p.add_argument("--few-shot", action="store_true", help="also run the few-shot probes")
    p.add_argument(
        "--shots",
        type=int_list,
        default=DEFAULT_SHOTS,
        help="few-shot N (images per class), comma-separated (default: 1,2,4,...,128)",
    )
    p.add_argument(
        "--seeds",
        type=int_list,
        default=DEFAULT_SEEDS,
        help="probe seeds, comma-separated (default: 22,37,45,77,93)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="fast",
        help="fast (cog's solver, default) or reference (the authors' SGD + Optuna)",
    )
    p.add_argument(
        "--knn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="kNN top-1 (k=20, cosine, T=0.07) on the all-data setting (default: on)",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help=f"evaluate RANDOM weights (smoke tests, baselines); rows are named "
        f"MODEL{RANDOM_INIT_SUFFIX}",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument("--force", action="store_true", help="redo finished runs instead of reusing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("feature extraction (for caches that are missing)")
    g.add_argument(
        "--workers", type=int, help="decoding processes (0: in the main process; default: auto)"
    )
    g.add_argument("--batch-size", type=int, help="images per forward pass (default: auto)")
    g.add_argument(
        "--checkpoint",
        type=Path,
        help="local weights file in the card's original layout (instead of its sources)",
    )
    g.add_argument(
        "--exact",
        action="store_true",
        help="the card's exact preprocessing on full-size images (default: the fast path, "
        "which decodes large JPEGs at reduced size)",
    )
    g.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default="float16",
        help="stored feature type (default: float16)",
    )
    g.add_argument(
        "--overwrite-features",
        action="store_true",
        help="replace caches made with other settings (other weights, image lists or "
        "preprocessing) instead of stopping with an error",
    )
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    if args.shots != DEFAULT_SHOTS and not args.few_shot:
        raise CogError("--shots needs --few-shot (the few-shot setting is off by default)")
    return EvalConfig(
        model=args.model,
        in1k_root=args.in1k_root,
        imagenet_root=args.imagenet_root,
        levels=args.levels,
        splits=args.splits,
        out=args.out,
        cache_dir=args.cache_dir,
        datasets=args.datasets,
        few_shot=args.few_shot,
        shots=args.shots,
        seeds=args.seeds,
        protocol=args.protocol,
        knn=args.knn,
        random_init=args.random_init,
        device=args.device,
        force=args.force,
        progress=not args.no_progress,
        workers=args.workers,
        batch_size=args.batch_size,
        overwrite_features=args.overwrite_features,
        checkpoint=args.checkpoint,
        exact=args.exact,
        dtype=args.dtype,
    )


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    evaluate(config_from_args(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""cog-tldr: compress a backbone's cached features with TLDR or PCA whitening.

  cog-tldr fit MODEL --dim 128 [--method tldr|pcaw]   fit, save, register MODEL+tldr128
  cog-tldr study MODEL --dims 16,32,64,128,256         TLDR vs PCA-w top-1 per level, table + plot

`cog-eval MODEL+tldr128` then evaluates the compressed model from the base model's cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cog.cli import (
    CogParser,
    add_cache_dir,
    add_datasets,
    add_extraction,
    add_levels_splits,
    add_out,
    add_overwrite,
    add_overwrite_features,
    add_quiet,
    add_roots,
    add_weights,
    check_cache_dir,
    check_out_dir,
    check_out_file,
    feature_source,
    friendly_errors,
    int_list,
    name_list,
)

# Mirrors of cog.compress and cog.bench.study constants (tests/test_cli.py checks they
# agree): those modules import torch.
DEFAULT_STUDY_DIMS = (16, 32, 64, 128, 256)
ENCODERS = ("linear", "factorized", "mlp")
METHODS = ("tldr", "pcaw")
OPTIMIZERS = ("lars", "sgd", "adamw")
STUDY_METRICS = ("logreg", "knn")

EPILOG = """examples:
  cog-tldr fit sup_resnet50 --dim 128 --in1k-root /data/imagenet
  cog-tldr study sup_resnet50 --dims 32,128 --methods tldr,pcaw --datasets in1k cog_l5"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo name or alias of the backbone (cog-models lists them)")
    p.add_argument(
        "--fit-on",
        default="in1k/train",
        help="DATASET/SPLIT whose cached features the projection is fitted on",
    )
    add_cache_dir(p)
    add_roots(p)
    add_levels_splits(p)
    add_overwrite(p, "refit instead of reusing results")
    add_overwrite_features(
        p, "replace the feature caches made with other settings instead of stopping"
    )
    add_quiet(p)
    g = p.add_argument_group(
        "weights, and feature extraction (for caches that are missing; --device also fits)"
    )
    add_weights(g)
    add_extraction(g, batch_option="--extract-batch-size")
    g = p.add_argument_group("TLDR (defaults: the authors' settings)")
    g.add_argument("--n-neighbors", type=int, help="k of the kNN positives (default 5)")
    g.add_argument("--encoder", choices=ENCODERS, help="encoder kept after training (linear)")
    g.add_argument("--projector", help="projector, e.g. mlp-2-2048 (default) or 2048,2048,2048")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="lars (default), sgd, adamw")
    g.add_argument("--lr", type=float, help="base lr for batch 256, scaled linearly (0.2)")
    g.add_argument("--epochs", type=int, help="training epochs (100)")
    g.add_argument("--batch-size", type=int, help="pairs per step (1024)")
    g.add_argument("--knn", choices=("auto", "exact", "faiss"), help="kNN search (auto)")
    g.add_argument("--seed", type=int, help="random_state (0)")
    g = p.add_argument_group("PCA whitening")
    g.add_argument("--power", type=float, help="eigenvalue power: 0.5 whitening, 0.25 softer")


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-tldr", description=__doc__, epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser(
        "fit",
        help="fit one projection and register MODEL+<method><dim>",
        epilog="example:\n  cog-tldr fit sup_resnet50 --dim 128 --method pcaw --quiet",
    )
    _common(f)
    f.add_argument("--dim", type=int, required=True, help="output dimensions d")
    f.add_argument("--method", choices=METHODS, default="tldr", help="tldr or pcaw (PCA-w)")
    f.add_argument("--name", help="zoo name of the composite (default MODEL+<method><dim>)")
    add_out(f, None, "projection file (default: $COG_HOME/projections/)")
    s = sub.add_parser(
        "study",
        help="TLDR vs PCA-w at several d: top-1 per level, table, plot",
        epilog="example:\n  cog-tldr study sup_resnet50 --dims 32,128 --datasets in1k,cog_l5",
    )
    _common(s)
    s.add_argument("--dims", type=int_list, default=DEFAULT_STUDY_DIMS, help="16,32,64,128,256")
    s.add_argument("--methods", type=name_list, default=METHODS, help="tldr,pcaw")
    add_datasets(s, help="datasets to score (default: in1k and every level)")
    s.add_argument(
        "--metric",
        choices=STUDY_METRICS,
        default="logreg",
        help="logreg: cog's fast linear probe (default); knn: the weighted kNN classifier",
    )
    s.add_argument("--probe-seed", type=int, default=22, help="seed of the linear probe")
    add_out(s, Path("results/figures"), "output folder")
    return p


TLDR_FLAGS = ("n_neighbors", "encoder", "optimizer", "lr", "epochs", "batch_size", "knn")


def _params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Estimator parameters given on the command line (the others keep their defaults)."""
    if method == "pcaw":
        return {} if args.power is None else {"power": args.power}
    out = {k: getattr(args, k) for k in TLDR_FLAGS if getattr(args, k) is not None}
    if args.projector:
        spec = args.projector
        out["projector"] = spec if spec.startswith("mlp-") else tuple(int_list(spec))
    if args.seed is not None:
        out["random_state"] = args.seed
    return out


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "fit" and args.out is not None:
        check_out_file(args.out)
    elif args.command == "fit":
        from cog.io import cog_home

        check_out_dir(cog_home() / "projections", "$COG_HOME/projections")
    elif args.command == "study":
        check_out_dir(args.out)
    check_cache_dir(args.cache_dir)
    from cog.bench.compress import compress_model
    from cog.bench.study import study

    if args.random_init:
        print("WARNING: RANDOM-INIT backbone weights (--random-init): smoke tests only")
    if args.command == "fit":
        res = compress_model(
            args.model,
            args.dim,
            method=args.method,
            fit_on=args.fit_on,
            params=_params(args, args.method),
            name=args.name,
            out=args.out,
            overwrite=args.overwrite,
            overwrite_features=args.overwrite_features,
            source=feature_source(args),
        )
        info = res["fit_info"]
        print(
            f"projection: {res['path']} (sha256 {res['sha256'][:12]}, {info.get('n_samples')} "
            f"points, {info.get('input_dim')} -> {args.dim})"
        )
        rand = " --random-init" if args.random_init else ""
        print(
            f"registered {res['name']} in {res['card']}; evaluate it with: "
            f"cog-eval {res['name']}{rand}"
        )
        return 0
    table = study(
        args.model,
        args.dims,
        methods=args.methods,
        datasets=args.datasets,
        fit_on=args.fit_on,
        metric=args.metric,
        seed=args.probe_seed,
        params={m: _params(args, m) for m in args.methods},
        out=args.out,
        overwrite=args.overwrite,
        overwrite_features=args.overwrite_features,
        source=feature_source(args),
    )
    shown = table[["dataset", "method", "dim", "top1", "ratio"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

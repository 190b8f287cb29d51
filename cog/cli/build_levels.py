"""cog-build-levels: rank ImageNet-21K concepts by Lin similarity to ImageNet-1K and cut them
into the CoG levels. Run without options it builds them from the shipped lists into
results/levels, where cog-build-splits, cog-eval and cog-report find them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cog.cli import IN21K_HELP, CogParser, add_out, add_quiet, check_out_dir, friendly_errors
from cog.io import SHIPPED_DIR, USER_LEVELS_DIR

# Mirrors of cog.concepts.levels constants (tests/test_cli.py checks they agree):
# cog.concepts.levels imports pandas and WordNet code, too slow for --help.
DEFAULT_SEEN = SHIPPED_DIR / "imagenet1k_wnids.txt"
DEFAULT_POOL = SHIPPED_DIR / "imagenet21k_fall11_wnids.txt"
FILTERS = ("seen", "ancestors", "excluded", "min_images", "leaf")
IC_SOURCES = ("intrinsic", "intrinsic-wordnet", "counts", "file")
CUT_RULES = ("bins", "blocks")

EPILOG = """examples:
  cog-build-levels                                    # shipped lists, no image counts
  cog-build-levels --imagenet-root /data/imagenet21k  # the protocol: counts from the images
  cog-build-levels --counts counts.tsv --levels 5 --level-size 10 --out results/levels"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-build-levels", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "--seen",
        type=Path,
        default=DEFAULT_SEEN,
        help="seen concepts, one wnid a line (default: the 1000 ImageNet-1K wnids)",
    )
    p.add_argument(
        "--pool",
        type=Path,
        default=DEFAULT_POOL,
        help="candidate concepts, one wnid a line (default: ImageNet-21K fall 2011)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--counts",
        type=Path,
        help="per-synset image counts (TSV/CSV with a wnid "
        "column); enables the min_images filter and --ic counts",
    )
    g.add_argument(
        "--imagenet-root",
        type=Path,
        help=f"{IN21K_HELP}, to count images in",
    )
    p.add_argument(
        "--counts-column", help="count column of --counts (default: the first column after wnid)"
    )
    p.add_argument(
        "--ic",
        choices=IC_SOURCES,
        default="intrinsic",
        help="information content: intrinsic (Seco et al. 2004, hyponyms counted in the "
        "pool's hierarchy: the pool plus its hypernyms), intrinsic-wordnet (the same over all "
        "WordNet nouns), counts (image counts) or file (--ic-file)",
    )
    p.add_argument("--ic-file", type=Path, help="nltk-format IC file, e.g. ic-brown-add1.dat")
    p.add_argument(
        "--ic-smoothing",
        type=float,
        default=0.0,
        help="pseudo-images added to every synset with --ic counts",
    )
    p.add_argument(
        "--skip-filter",
        action="append",
        default=[],
        choices=FILTERS,
        metavar="NAME",
        help=f"switch a filter off (repeatable): {', '.join(FILTERS)}",
    )
    p.add_argument(
        "--min-images", type=int, default=782, help="min_images threshold (732 train + 50 test)"
    )
    p.add_argument(
        "--exclude-subtree",
        action="append",
        metavar="SYNSET",
        help="drop this synset's subtree (repeatable; default person.n.01)",
    )
    p.add_argument(
        "--exclude",
        type=Path,
        help="file of wnids to drop, e.g. synsets missing from the winter 2021 release",
    )
    p.add_argument(
        "--cut",
        choices=CUT_RULES,
        default="bins",
        help="bins: the ranking cut into --levels equal rank bins (edges rounded half up), "
        "--level-size drawn from each with --seed; blocks: consecutive blocks of the ranking",
    )
    p.add_argument("--levels", type=int, default=5, help="number of levels")
    p.add_argument("--level-size", type=int, default=1000, help="concepts per level")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the draw from each bin (--cut bins)"
    )
    p.add_argument(
        "--wordnet", type=Path, help="WordNet 3.0 dict folder (default: $COG_WORDNET, nltk, Debian)"
    )
    add_out(p, USER_LEVELS_DIR, "output folder (replaced atomically)")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="OFFICIAL",
        help="an official cog_levels_mapping_file.pkl (or levels.csv): report membership, "
        "level agreement, ranking agreement and the ranks each official level spans",
    )
    add_quiet(p)
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_out_dir(args.out)
    from cog.concepts.levels import LevelsConfig, build_levels
    from cog.concepts.levels_report import level_summary, write_levels

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = LevelsConfig(
        seen_file=args.seen,
        pool_file=args.pool,
        counts_file=args.counts,
        counts_column=args.counts_column,
        imagenet_root=args.imagenet_root,
        ic=args.ic,
        ic_file=args.ic_file,
        ic_smoothing=args.ic_smoothing,
        skip=tuple(args.skip_filter),
        min_images=args.min_images,
        exclude_subtrees=tuple(args.exclude_subtree)
        if args.exclude_subtree is not None
        else LevelsConfig.exclude_subtrees,
        exclude_file=args.exclude,
        cut=args.cut,
        n_levels=args.levels,
        level_size=args.level_size,
        seed=args.seed,
        wordnet=args.wordnet,
        compare_file=args.compare,
    )
    result = build_levels(cfg, progress=not args.quiet)
    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    print("pool size after each step:")
    for s in result.steps:
        flag = "" if s.applied else "  (skipped)"
        print(f"  {s.name:<11} {s.remaining:>6}  -{s.removed:<6}{flag}")
    print(level_summary(result).to_string(index=False))
    if result.comparison is not None:
        print(f"comparison with {args.compare}:")
        print(result.comparison.per_level.to_string(index=False))
    out = write_levels(result, args.out)
    print(
        f"wrote {out}/ (levels.csv, {len(result.levels)} levels, report.md) in "
        f"{result.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

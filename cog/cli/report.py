"""cog-report: the paper's figures, a ranking table and the results page, from the leaderboard.

Missing or partial results are drawn with what exists and listed (on stdout and on the page);
models evaluated with random weights are left out unless --include-random-init."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cog.cli import CogParser, add_out, check_out_dir, check_out_file, friendly_errors

EPILOG = """examples:
  cog-report                                   # results/leaderboard.csv -> results/
  cog-report --models 'dino_*' sup_resnet50 --metric knn_top1 --formats png pdf
  cog-report --leaderboard demo/results/leaderboard.csv --out demo/results/figures \
      --page demo/results/README.md"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-report", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "--leaderboard",
        type=Path,
        default=Path("results/leaderboard.csv"),
        help="leaderboard CSV written by cog-eval",
    )
    p.add_argument(
        "--runs",
        type=Path,
        help="run JSON folder (default: the `run` paths of the leaderboard, relative to its "
        "folder); read to find random-init runs",
    )
    p.add_argument(
        "--levels",
        type=Path,
        help="a cog-build-levels output folder (candidates.csv or levels.csv) for the "
        "Lin-similarity figure (default: the levels the runs recorded, if they all agree)",
    )
    add_out(p, Path("results/figures"), "figure folder")
    p.add_argument(
        "--page", type=Path, default=Path("results/README.md"), help="results page to regenerate"
    )
    p.add_argument("--no-page", action="store_true", help="write the figures only")
    p.add_argument("--baseline", default="sup_resnet50", help="model the relative figure subtracts")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="models (or patterns such as 'dino_*') for the per-level and few-shot figures "
        "(default: all when at most 8, else the baseline and the best of each family)",
    )
    p.add_argument("--protocol", default="fast", help="probe protocol: fast or reference")
    p.add_argument(
        "--metric", default="top1", help="top1, top5, knn_top1 (percent) or another metric"
    )
    p.add_argument(
        "--formats",
        nargs="+",
        default=["png", "svg"],
        choices=["png", "svg", "pdf"],
        help="figure formats",
    )
    p.add_argument(
        "--level-set",
        help="rank the CoG rows of this level set (file name or sha256 prefix of its levels "
        "or splits; default: the one most models were evaluated on); rows of other level "
        "sets are never ranked beside them",
    )
    p.add_argument(
        "--include-random-init",
        action="store_true",
        help="draw models evaluated with random weights too",
    )
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_out_dir(args.out)
    if not args.no_page:
        check_out_file(args.page, "--page")
    from cog.bench.report import make_report

    result = make_report(
        args.leaderboard,
        runs=args.runs,
        levels=args.levels,
        out=args.out,
        page=None if args.no_page else args.page,
        baseline=args.baseline,
        models=args.models,
        protocol=args.protocol,
        metric=args.metric,
        formats=args.formats,
        include_random_init=args.include_random_init,
        level_set=args.level_set,
    )
    print(f"wrote {len(result.files)} files:")
    for f in result.files:
        print(f"  {f}")
    if "ranking" in result.tables:
        r = result.tables["ranking"]
        print("ranking (average over levels):")
        for row in r.itertuples(index=False):
            rank = str(row.rank) if row.rank else "-"
            print(f"  {rank:>3} {row.model:<28} {row.avg:6.2f}  ({row.levels} levels)")
    if result.notes:
        print(f"missing or partial results ({len(result.notes)}):")
        for n in result.notes:
            print(f"  - {n}")
    for e in result.excluded:
        print(f"left out: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

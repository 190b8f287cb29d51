"""cog-demo: try cog in one command, without ImageNet and without network.

Generates small ImageNet-1K and ImageNet-21K trees of JPEG files, builds tiny levels and
splits, evaluates one model (the real EfficientNet-Lite0 when its weights are installed,
else RANDOM weights, said loudly), then writes the leaderboard, the figures and the results
page. About two minutes on two CPU cores; a second run reuses what the first made."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cog import CogError
from cog.cli import CogParser, add_out, add_quiet, check_out_dir, friendly_errors

EPILOG = """examples:
  cog-demo                          # everything under results/demo
  cog-demo --out /tmp/cog-demo --quiet
  cog-demo --model sup_resnet50 --random-init"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-demo", description=__doc__, epilog=EPILOG)
    add_out(p, Path("results/demo"), "folder for the generated data, levels, splits and results")
    p.add_argument(
        "--model",
        help="zoo model to evaluate (default: EfficientNet-Lite0, random weights when its "
        "weights are not installed)",
    )
    p.add_argument(
        "--random-init", action="store_true", help="evaluate --model with RANDOM weights"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    add_quiet(p)
    return p


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.random_init and args.model is None:
        raise CogError("--random-init needs --model NAME (the demo picks its model otherwise)")
    out = check_out_dir(args.out)
    from cog.bench.demo import next_steps, run_demo

    t0 = time.perf_counter()
    res = run_demo(
        out,
        model=args.model,
        random_init=args.random_init if args.model else None,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"\ncog-demo finished in {time.perf_counter() - t0:.0f} s. What it did, in {out}/:")
    print("  data/      generated ImageNet-1K and ImageNet-21K trees (coloured stripes, JPEG)")
    print("  levels/    tiny CoG levels ranked by Lin similarity in WordNet (cog-build-levels)")
    print("  splits/    per-concept train/test lists (cog-build-splits)")
    kind = "RANDOM-INIT weights" if res.random_init else "its real weights"
    print(f"  runs/, leaderboard.csv   {res.model} with {kind} (cog-eval)")
    print("  figures/, README.md      figures and the results page (cog-report)")
    if res.page is not None:
        print(f"open {res.page} first.")
    print(next_steps(res.model, res.random_init))
    return 0


if __name__ == "__main__":
    sys.exit(main())

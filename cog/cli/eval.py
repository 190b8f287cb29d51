"""cog-eval: evaluate models on ImageNet-1K and the CoG levels (linear probes, kNN,
alignment/uniformity); writes run JSONs and updates the CSV leaderboard.

Several models (names, aliases, patterns such as 'dino_*', --group, --models-file) run one
after the other; a failing model is recorded and the next one runs; the run ends with a
summary table and, for several models, cog-report. --shard I/N (or torchrun's RANK/WORLD_SIZE,
or a SLURM job array) runs one share of the (model, dataset, setting) list; --submit slurm
sends one job per model to the cluster."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from cog import CogError
from cog.cli import (
    CogParser,
    add_cache_dir,
    add_datasets,
    add_deprecated,
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
    data_roots,
    extract_options,
    friendly_errors,
    int_list,
)

# Mirrors of library constants (tests/test_cli.py checks they agree): importing the library
# here would pull in numpy, pandas and torch before --help could answer.
DATASETS = ("in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
DEFAULT_SEEDS = (22, 37, 45, 77, 93)
DEFAULT_SHOTS = (1, 2, 4, 8, 16, 32, 64, 128)
PROTOCOLS = ("fast", "reference")
CLUSTERS = ("slurm", "local")

EPILOG = """examples:
  cog-eval sup_resnet50 --in1k-root /data/imagenet --imagenet-root /data/imagenet21k
  cog-eval dino_resnet50 --datasets in1k cog_l5 --few-shot --shots 1,2,4 --quiet
  cog-eval 'dino_*' sup_resnet50 --group s --shard 0/4
  cog-demo        # the whole pipeline on generated images, no ImageNet needed"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-eval", description=__doc__, epilog=EPILOG)
    p.add_argument(
        "model",
        nargs="*",
        metavar="MODEL",
        help="zoo names, aliases or quoted patterns ('dino_*') (cog-models lists them)",
    )
    add_roots(p)
    add_levels_splits(p)
    add_out(p, Path("results"), "results folder: runs/, leaderboard.csv")
    add_cache_dir(p)
    add_datasets(p, DATASETS, help=f"subset of {','.join(DATASETS)} (default: all)")
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
    add_overwrite(
        p,
        "redo finished runs and replace feature caches made with other settings (other "
        "weights, image lists or preprocessing) instead of reusing them or stopping",
    )
    add_deprecated(p, "--force", "force", "--overwrite")
    add_quiet(p)
    g = p.add_argument_group(
        "weights, and feature extraction (for caches that are missing; --device also probes)"
    )
    add_weights(g)
    add_extraction(g)
    add_overwrite_features(
        g, "replace only the caches made with other settings (--overwrite also redoes runs)"
    )
    m = p.add_argument_group("several models, shards and clusters")
    m.add_argument("--group", help="every model of a group: sup, a, s, r, d, local")
    m.add_argument("--models-file", type=Path, help="a text file of model names, one a line")
    m.add_argument(
        "--shard",
        help="run share I of N of the (model, dataset, setting) list (I from 0 to N-1; "
        "default: from RANK/WORLD_SIZE under torchrun or SLURM_ARRAY_TASK_ID/COUNT)",
    )
    m.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run cog-report at the end (default: when several models ran in one process)",
    )
    m.add_argument(
        "--submit", choices=CLUSTERS, help="one job per model: slurm, or local processes"
    )
    m.add_argument("--partition", help="SLURM partition (--submit slurm)")
    m.add_argument("--gpus", type=int, default=1, help="GPUs per job (default: 1)")
    m.add_argument("--cpus", type=int, help="CPU cores per job")
    m.add_argument("--time", type=int, default=24 * 60, help="minutes per job (default: 1440)")
    m.add_argument("--mem", type=float, help="memory per job in GB")
    m.add_argument("--no-wait", action="store_true", help="print the job ids and return at once")
    m.add_argument("--submitit-dir", type=Path, help="job logs and pickles (default: OUT/submitit)")
    return p


def config_from_args(args: argparse.Namespace):
    """The EvalConfig the options describe (imports cog.bench.evaluate, after parsing)."""
    from cog.bench.config import EvalConfig

    if args.shots != DEFAULT_SHOTS and not args.few_shot:
        raise CogError("--shots needs --few-shot (the few-shot setting is off by default)")
    return EvalConfig(
        model=args.model[0] if len(args.model) == 1 else "",
        roots=data_roots(args),
        extraction=extract_options(args),
        out=args.out,
        cache_dir=args.cache_dir,
        datasets=args.datasets,
        few_shot=args.few_shot,
        shots=args.shots,
        seeds=args.seeds,
        protocol=args.protocol,
        knn=args.knn,
        random_init=args.random_init,
        force=args.force or args.overwrite,
        overwrite_features=args.overwrite_features or args.overwrite,
        checkpoint=args.checkpoint,
    )


def _is_batch(args: argparse.Namespace) -> bool:
    from cog.bench.batch import shard_from_env

    return (
        len(args.model) != 1
        or any(v is not None for v in (args.group, args.models_file, args.shard, args.submit))
        or any(ch in args.model[0] for ch in "*?[")
        or shard_from_env() is not None
    )


@contextlib.contextmanager
def _alone():
    """WORLD_SIZE=1 while this process evaluates its shard (restored afterwards)."""
    before = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = before


def _report(args: argparse.Namespace) -> int:
    from cog.cli.report import main as report_main

    out = args.out
    print(f"cog-report on {out / 'leaderboard.csv'}:")
    return report_main(
        [
            "--leaderboard",
            str(out / "leaderboard.csv"),
            "--out",
            str(out / "figures"),
            "--page",
            str(out / "README.md"),
        ]
    )


def run_batch(args: argparse.Namespace, cfg) -> int:
    """Several models (or a shard, or cluster jobs): go on past failures, summarise."""
    from cog.bench.batch import (
        outcome_table,
        parse_shard,
        run_list,
        run_units,
        select_models,
        shard,
        shard_from_env,
        write_summary,
    )
    from cog.bench.leaderboard import read_leaderboard
    from cog.bench.submit import JobOptions, submit

    cfg.validate()
    names = select_models(args.model, group=args.group, file=args.models_file)
    if not names:
        raise CogError("no model to evaluate: name models, or pass --group G / --models-file F")
    units = run_list(names, cfg)
    read_leaderboard(Path(cfg.out) / "leaderboard.csv")  # a broken file fails before any work
    i, n, where = 0, 1, ""
    if args.shard is not None:
        (i, n), where = parse_shard(args.shard), "--shard"
    elif (env := shard_from_env()) is not None and not args.submit:
        i, n, where = env
        local = os.environ.get("LOCAL_RANK")
        if cfg.device == "auto" and local is not None:
            import dataclasses

            import torch

            if torch.cuda.is_available():
                device = f"cuda:{int(local) % torch.cuda.device_count()}"
                cfg.extraction = dataclasses.replace(cfg.extraction, device=device)
    if args.submit:
        opts = JobOptions(
            cluster=args.submit,
            folder=args.submitit_dir or Path(cfg.out) / "submitit",
            partition=args.partition,
            gpus=args.gpus,
            cpus=args.cpus,
            time_min=args.time,
            mem_gb=args.mem,
            wait=not args.no_wait,
        )
        outcomes, ids = submit(cfg, units, opts)
        if not opts.wait:
            print(f"submitted {len(ids)} job(s): {' '.join(ids)} (ids in {cfg.out}/submitted.json)")
            return 0
        summary = Path(cfg.out) / "eval_summary.json"
    else:
        mine = shard(units, i, n)
        if n > 1:
            print(f"shard {i}/{n} ({where}): {len(mine)} of {len(units)} runs")
        with _alone():  # each shard extracts on its own, not as a torchrun rank
            outcomes = run_units(cfg, mine)
        summary = Path(cfg.out) / (
            "eval_summary.json" if n == 1 else f"eval_summary.shard-{i}-of-{n}.json"
        )
    write_summary(
        summary,
        outcomes,
        {"argv": sys.argv[1:], "selected": names, "shard": [i, n], "runs": len(units)},
    )
    print(outcome_table(outcomes))
    failed = [o.model for o in outcomes if o.status == "failed"]
    print(
        f"{len(outcomes) - len(failed)} model(s) ok, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f"; summary: {summary}; leaderboard: {Path(cfg.out) / 'leaderboard.csv'}"
    )
    want_report = args.report if args.report is not None else len(names) > 1
    if want_report and n > 1:
        print("cog-report skipped in a shard: run it once every shard has finished")
    elif want_report and any(o.status == "ok" for o in outcomes):
        _report(args)
    return 1 if failed else 0


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args)
    check_out_dir(args.out)
    check_cache_dir(args.cache_dir)
    if _is_batch(args):
        return run_batch(args, cfg)
    from cog.bench.evaluate import evaluate

    evaluate(cfg)
    if args.report:
        return _report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

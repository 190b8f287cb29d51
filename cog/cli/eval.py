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
from cog.batch import (
    outcome_table,
    parse_shard,
    run_list,
    run_units,
    select_models,
    shard,
    shard_from_env,
    write_summary,
)
from cog.cli import add_trust_checkpoint, friendly_errors, int_list, name_list
from cog.evaluate import DEFAULT_SEEDS, DEFAULT_SHOTS, EvalConfig, evaluate
from cog.leaderboard import PROTOCOLS, RANDOM_INIT_SUFFIX, read_leaderboard
from cog.submit import CLUSTERS, JobOptions, submit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cog-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="*",
        metavar="MODEL",
        help="zoo names, aliases or quoted patterns ('dino_*') (cog-models lists them)",
    )
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
    add_trust_checkpoint(g)
    g.add_argument(
        "--exact",
        action="store_true",
        help="the card's torchvision transform itself (default: the fast path, same pixels "
        "in uint8, checked against the transform before each extraction)",
    )
    g.add_argument(
        "--jpeg-draft",
        action="store_true",
        help="decode large JPEGs at reduced DCT scale (faster, not the protocol's pixels; "
        "the measured deviation is in the README and recorded in each cache)",
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


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    if args.shots != DEFAULT_SHOTS and not args.few_shot:
        raise CogError("--shots needs --few-shot (the few-shot setting is off by default)")
    return EvalConfig(
        model=args.model[0] if len(args.model) == 1 else "",
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
        jpeg_draft=args.jpeg_draft,
        dtype=args.dtype,
    )


def _is_batch(args: argparse.Namespace) -> bool:
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


def run_batch(args: argparse.Namespace, cfg: EvalConfig) -> int:
    """Several models (or a shard, or cluster jobs): go on past failures, summarise."""
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
            import torch

            if torch.cuda.is_available():
                cfg.device = f"cuda:{int(local) % torch.cuda.device_count()}"
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
    if _is_batch(args):
        return run_batch(args, cfg)
    evaluate(cfg)
    if args.report:
        return _report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

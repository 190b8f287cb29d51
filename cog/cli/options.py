"""The option vocabulary the commands share: the same idea has the same name, help and
type everywhere (`--datasets`, `--quiet`, `--overwrite`, `--in1k-root`, `--imagenet-root`,
`--levels`, `--splits`, `--out`, `--cache-dir`, the weights and the extraction options), and
the extraction options are read back into the bundles of cog.features.options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cog.cli.parsing import _Deprecated, _Names, _names_action, add_deprecated


class _TrustCheckpoint(argparse.Action):
    """Sets $COG_TRUST_CHECKPOINT for this process, so every checkpoint it loads may be
    unpickled in full (see cog.zoo.load_checkpoint)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from cog.zoo import TRUST_ENV

        os.environ[TRUST_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_trust_checkpoint(p: argparse.ArgumentParser) -> None:
    """The --trust-checkpoint flag shared by every command that loads weights."""
    p.add_argument(
        "--trust-checkpoint",
        action=_TrustCheckpoint,
        nargs=0,
        default=False,
        help="allow unpickling Python objects (not only tensors) from a checkpoint, or "
        "reading a TorchScript archive, without a sha256 pinned in its card: this can run "
        "code from the file; recorded in the feature cache (checkpoint_load) and run JSON",
    )


#: mirror of cog.bench.leaderboard.RANDOM_INIT_SUFFIX (tests/test_cli.py checks it)
RANDOM_INIT_SUFFIX = "+random-init"


def add_weights(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Which weights: `--checkpoint`, `--trust-checkpoint`, `--random-init`."""
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="local weights file in the card's original layout (instead of its sources)",
    )
    add_trust_checkpoint(p)
    p.add_argument(
        "--random-init",
        action="store_true",
        help="RANDOM weights (smoke runs, baselines; never results): caches and leaderboard "
        f"rows are named MODEL{RANDOM_INIT_SUFFIX}",
    )


def add_cache_dir(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--cache-dir`: the feature cache root (checked with `check_cache_dir`)."""
    p.add_argument("--cache-dir", type=Path, help="feature cache (default: $COG_HOME/features)")


def add_overwrite_features(p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str) -> None:
    """`--overwrite-features`: replace feature caches made with other settings (instead of
    stopping) without redoing the command's own results."""
    p.add_argument("--overwrite-features", action="store_true", help=help)


def add_extraction(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, batch_option: str = "--batch-size"
) -> None:
    """The fields of cog.features.options.ExtractOptions as options (read back by
    `extract_options`); `batch_option` renames the batch size where a command has
    another one (cog-tldr's TLDR batch)."""
    from cog.features.options import DECODES, DTYPES, PRECISIONS

    p.add_argument(
        "--exact",
        action="store_true",
        help="the card's torchvision transform itself (default: the fast path, the same "
        "resize and crop in uint8, normalized on the device; checked against the transform "
        "before each run)",
    )
    p.add_argument(
        "--jpeg-draft",
        action="store_true",
        help="fast path also decodes large JPEGs at reduced DCT scale: faster, but not the "
        "protocol's pixels (README: measured deviation; recorded in the cache)",
    )
    p.add_argument(
        "--decode",
        choices=DECODES,
        default="auto",
        help="where JPEGs are decoded and resized: gpu = on the model's device (nvJPEG), "
        "cpu = decoded in the loader workers, auto = gpu only on CUDA after a start-up "
        "self-check on a sample of the run's own files meets the fidelity bar (recorded "
        "in the cache; caches of the two paths never mix)",
    )
    p.add_argument("--dtype", choices=DTYPES, default="float16", help="stored feature type")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision: auto = bf16/fp16 autocast on CUDA, fp32 on CPU",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument(
        batch_option,
        dest="extract_batch_size",
        type=int,
        metavar="N",
        help="images per forward pass (default: 256 on CUDA, halved on OOM; 32 on CPU)",
    )
    p.add_argument(
        "--workers", type=int, help="decoding processes (0: in the main process; default: auto)"
    )


def _bundle(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """Dataclass `cls` from the options of the same names (`given` for the others)."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(cls) if f.name not in given]
    return cls(**{n: getattr(args, n) for n in names}, **given)


def extract_options(args: argparse.Namespace) -> Any:
    """The ExtractOptions that `add_extraction`'s options (and `--quiet`) describe."""
    from cog.features.options import ExtractOptions

    return _bundle(
        ExtractOptions, args, batch_size=args.extract_batch_size, progress=not args.quiet
    )


def data_roots(args: argparse.Namespace) -> Any:
    """The DataRoots that `add_roots` and `add_levels_splits` describe."""
    from cog.features.options import DataRoots

    return _bundle(DataRoots, args)


def feature_source(args: argparse.Namespace) -> Any:
    """The FeatureSource of a command with roots, extraction, weights and --cache-dir."""
    from cog.features.options import FeatureSource

    return _bundle(FeatureSource, args, roots=data_roots(args), options=extract_options(args))


def add_datasets(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    choices: Sequence[str] | None = None,
    help: str = "",
    default: Any = None,
    old: Sequence[str] = ("--dataset",),
) -> None:
    """`--datasets NAME [NAME ...]` (commas or spaces); `old` spellings warn and still work."""
    shown = f"one or more of {', '.join(choices)}" if choices else "one or more names"
    p.add_argument(
        "--datasets",
        nargs="+",
        action=_names_action(_Names, choices),
        default=default,
        metavar="NAME",
        help=f"{help or shown}, separated by commas or spaces",
    )
    for spelling in old:
        p.add_argument(
            spelling,
            nargs="+",
            dest="datasets",
            action=_names_action(_Deprecated, choices),
            new="--datasets",
        )


def add_quiet(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, old: Sequence[str] = ()
) -> None:
    """`-q/--quiet`: no progress bars; summaries and warnings are still printed."""
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="hide progress bars (summaries and warnings are still printed)",
    )
    for spelling in ("--no-progress", *old):
        add_deprecated(p, spelling, "quiet", "--quiet")


def add_overwrite(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str, old: Sequence[str] = ()
) -> None:
    """`--overwrite`: replace what exists instead of reusing it or stopping."""
    p.add_argument("--overwrite", action="store_true", help=help)
    for spelling in old:
        add_deprecated(p, spelling, "overwrite", "--overwrite")


IN1K_HELP = "ImageNet-1K root holding train/<wnid>/ and val/<wnid>/"


IN21K_HELP = "ImageNet-21K root holding one <wnid>/ folder (or <wnid>.tar) per concept"


def add_roots(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    in1k: bool = True,
    in21k: bool = True,
    required21k: bool = False,
) -> None:
    """`--in1k-root` and `--imagenet-root` (the ImageNet-21K root), same help everywhere."""
    if in1k:
        p.add_argument("--in1k-root", type=Path, help=IN1K_HELP)
    if in21k:
        p.add_argument("--imagenet-root", type=Path, required=required21k, help=IN21K_HELP)


def add_levels_splits(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--levels` and `--splits` of the cog_lN datasets, found without them when built."""
    p.add_argument(
        "--levels",
        type=Path,
        help="levels: the authors' cog_levels_mapping_file.pkl, our levels.csv, or a folder "
        "(default: results/levels when cog-build-levels wrote it, else the shipped "
        "levels)",
    )
    p.add_argument(
        "--splits",
        type=Path,
        help="per-concept train/test lists: the authors' cog_concepts_split_file.pkl, ours, or "
        "a folder (default: results/splits when cog-build-splits wrote it)",
    )


def add_out(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: Any, help: str) -> None:
    """`--out`: where the command writes (checked before any work starts)."""
    p.add_argument("--out", type=Path, default=default, help=help)

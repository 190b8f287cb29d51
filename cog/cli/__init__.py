"""Console entry points, and the option vocabulary they share.

Every cog command builds its parser with `CogParser` and declares its common options with the
`add_*` helpers below, so the same idea has the same name everywhere (`--datasets`, `--quiet`,
`--overwrite`, `--in1k-root`, `--imagenet-root`, `--out`). Old spellings stay as hidden,
deprecated aliases that print one warning line. Abbreviated options are refused (an
abbreviation silently meant another option), and an unknown option gets a "did you mean".

This module imports only the standard library and `cog` itself: `--help` must answer at once,
so the CLI modules import torch, timm, pandas and the like inside `main`, after parsing.
Expected failures (CogError, bad options, unusable output locations) are one line and exit
status 2.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import functools
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cog import CogError
from cog.io import system_errno


def friendly_errors(main: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except CogError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (OSError, RuntimeError) as e:
            line = system_error_line(e)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                "interrupted: outputs finished before the interrupt are kept; none is half-written",
                file=sys.stderr,
            )
            return 130

    return wrapper


_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere (--out / --cache-dir / COG_HOME)",
    errno.EDQUOT: "free space in your quota or write elsewhere (--out / --cache-dir / COG_HOME)",
    errno.EFBIG: "the file size limit (ulimit -f) is too small for this output; raise it",
    errno.EACCES: "check the file's permissions, or write elsewhere",
    errno.EPERM: "check the file's permissions, or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere (--out / --cache-dir / COG_HOME)",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a path component is a file, not a folder; check the path",
    errno.EISDIR: "the path is a folder; give a file",
    errno.ELOOP: "a symbolic link points to itself; fix or remove it",
    errno.EIO: "the disk reported an I/O error; check the storage",
}


def system_error_line(e: BaseException) -> str | None:
    """One line for an expected system failure (full disk, permissions, read-only or missing
    path), naming the file and the fix; None for anything else (a bug keeps its traceback).
    All cog outputs are written to a temporary file and renamed, so nothing half-written is
    left behind that a later run would take as valid."""
    code = system_errno(e)
    if code not in _FIXES:
        return None
    where = getattr(e, "filename", None)
    if where is None:
        m = re.search(r"filename = '([^']+)'|writing file (\S+)", str(e))
        where = (m.group(1) or m.group(2)) if m else None
    what = os.strerror(code)
    return f"{where or 'writing output'}: {what}; {_FIXES[code]}"


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for "1,2,4": a non-empty tuple of integers."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected integers separated by commas"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def name_list(text: str) -> tuple[str, ...]:
    """argparse type for "a,b": a non-empty tuple of names."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


class _TrustCheckpoint(argparse.Action):
    """Sets $COG_TRUST_CHECKPOINT for this process, so every checkpoint it loads may be
    unpickled in full (see cog.zoo.load_checkpoint)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import os

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
        help="allow unpickling Python objects (not only tensors) from a checkpoint without "
        "a sha256 pinned in its card: this can run code from the file; recorded in the "
        "feature cache (checkpoint_load) and run JSON",
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


# ----------------------------------------------------------------------------- parser


def _show_default(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; each default shown once, and only a real one.

    A help text that already names its default is left alone; options without a default
    (None), flags and positionals get no "(default: ...)".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or (isinstance(default, (list, tuple)) and not default)
        ):
            return text
        return f"{text} (default: {_show_default(default).replace('%', '%%')})"


class CogParser(argparse.ArgumentParser):
    """ArgumentParser with cog's rules: no abbreviations, one-line errors with a hint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _all_options(self) -> list[str]:
        names: list[str] = []
        for action in self._actions:
            if action.help is not argparse.SUPPRESS:
                names += [s for s in action.option_strings if s.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, CogParser):
                        names += sub._all_options()
        return sorted(set(names))

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            unknown = [t.split("=")[0] for t in message.split(":", 1)[1].split()]
            options = self._all_options()
            for tok in unknown:
                if tok.startswith("-"):
                    close = difflib.get_close_matches(tok, options, n=1, cutoff=0.6)
                    prefix = [o for o in options if o.startswith(tok)]
                    guess = prefix or close
                    if guess:
                        hint = f"; did you mean {guess[0]}?"
                        break
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


class _Deprecated(argparse.Action):
    """A hidden old spelling: warns once, then stores like the new option."""

    def __init__(self, option_strings, dest, new: str, store: Any = None, **kwargs) -> None:
        self.new, self.store = new, store
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"warning: {option_string} is deprecated; use {self.new}", file=sys.stderr, flush=True
        )
        value = self.store if self.nargs == 0 else values
        if isinstance(value, list):
            value = _flatten_names(value, self.choices_list, parser, option_string)
        setattr(namespace, self.dest, value)

    choices_list: Sequence[str] | None = None


def _flatten_names(
    values: Sequence[str], choices: Sequence[str] | None, parser, option: str | None
) -> tuple[str, ...]:
    names = tuple(v.strip() for text in values for v in text.replace(",", " ").split())
    if not names:
        parser.error(f"{option}: expected at least one name")
    if choices is not None:
        bad = [n for n in names if n not in choices]
        if bad:
            parser.error(f"{option}: unknown {', '.join(bad)}; choose from {', '.join(choices)}")
    return names


class _Names(argparse.Action):
    """`--datasets a,b`, `--datasets a b` and `--datasets a, b` all give ("a", "b")."""

    choices_list: Sequence[str] | None = None

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(
            namespace, self.dest, _flatten_names(values, self.choices_list, parser, option_string)
        )


def _names_action(base: type, choices: Sequence[str] | None) -> type:
    return type(base.__name__, (base,), {"choices_list": tuple(choices) if choices else None})


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


def add_deprecated(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, dest: str, new: str
) -> None:
    """A hidden old flag spelling that sets `dest` to True after one warning line."""
    p.add_argument(old, dest=dest, nargs=0, action=_Deprecated, new=new, store=True, default=False)


def add_deprecated_value(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, dest: str, new: str
) -> None:
    """A hidden old spelling of an option that takes one value."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, metavar="VALUE")


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


def dataclass_defaults(module: str, cls: str) -> dict[str, Any]:
    """Literal field defaults of dataclass `cls` in `module`, read from its source.

    A CLI shows a library dataclass's defaults in --help without importing the module (and
    torch with it); the dataclass stays the single source of the values. Fields whose
    default is not a literal are left out."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CogError(f"{module}: module not found; reinstall cog")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
    if node is None:
        raise CogError(f"{module}: no class {cls}; reinstall cog")
    out: dict[str, Any] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
            try:
                out[item.target.id] = ast.literal_eval(item.value)
            except ValueError:
                continue
    return out


# ----------------------------------------------------------------------------- outputs


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Prove that `path` is, or can be made, a writable folder, before hours of work depend
    on it. Nothing is created: a command that fails later leaves no empty folder behind."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CogError(f"{option} {p}: is a file, not a folder; pass a folder or move the file")
    existing = p if p.exists() else next(a for a in p.absolute().parents if a.exists())
    if not existing.is_dir():
        raise CogError(
            f"{option} {p}: cannot create the folder because {existing} is a file; "
            "pass another path or move that file"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".cog-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = "the folder" if existing == p else f"{existing}, where it would be created,"
        raise CogError(
            f"{option} {p}: {where} is not writable ({e.strerror}); pass a writable location"
        ) from None
    return p


def check_cache_dir(path: str | Path | None, option: str = "--cache-dir") -> Path:
    """The feature cache (`path`, else $COG_HOME/features) is a writable folder."""
    from cog.io import cog_home

    if path is None:
        return check_out_dir(cog_home() / "features", "$COG_HOME/features")
    return check_out_dir(path, option)


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """A file cog will (re)write: its folder is created and writable, the path is no folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise CogError(f"{option} {p}: is a folder, expected a file path")
    check_out_dir(p.parent, option=option)
    if p.exists() and not os.access(p, os.W_OK):
        raise CogError(f"{option} {p}: the file is not writable; pass another path")
    return p

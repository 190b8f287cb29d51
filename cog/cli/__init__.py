"""Console entry points. Each turns CogError into a one-line message and exit status 2."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from cog import CogError


def friendly_errors(main: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except CogError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                "interrupted: outputs finished before the interrupt are kept; none is half-written",
                file=sys.stderr,
            )
            return 130

    return wrapper


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

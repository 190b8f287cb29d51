"""Console entry points. Each turns CogError into a one-line message and exit status 2."""

from __future__ import annotations

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
            print("interrupted: nothing was written", file=sys.stderr)
            return 130

    return wrapper

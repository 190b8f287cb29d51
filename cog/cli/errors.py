"""One line and exit status 2 for every expected failure of a console script: a CogError,
or a system error (full disk, permissions, read-only or missing path) with its fix."""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from collections.abc import Callable

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

"""Output locations checked before any work starts: a command that would fail after
hours on an unwritable or mistyped `--out` fails at once, naming the path and the fix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cog import CogError


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

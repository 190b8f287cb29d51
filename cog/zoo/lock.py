"""The weights lock: sha256s `cog-models fetch` recorded for files without a published one.

Kept apart from the downloader so that loading a model (`cog.zoo.weights`) can check a file
against the lock without importing the network code.
"""

from __future__ import annotations

import json
from pathlib import Path

from cog import CogError
from cog.io import atomic_write, cog_home

LOCK_NAME = "weights.lock"
LOCK_VERSION = 1


# ---------------------------------------------------------------- the lock file


def lock_path() -> Path:
    return cog_home() / LOCK_NAME


def source_key(source) -> str:
    """A weight source's identity in the lock file (independent of where caches live)."""
    key = f"{source.kind}:{source.location or ''}:{source.filename or ''}"
    return key + (f"!{source.member}" if source.member else "")


def read_lock(path: Path | None = None) -> dict[str, dict]:
    path = path or lock_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if data.get("version") != LOCK_VERSION or not isinstance(files, dict):
            raise ValueError(f"version {data.get('version')!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise CogError(
            f"{path}: not a readable weights lock file ({e}); move it aside and run "
            "`cog-models fetch` again to re-record the checksums"
        ) from None
    return files


def record_lock(source, model: str, sha256: str, path: Path | None = None) -> None:
    """Add (or confirm) a file's sha256 under a flock, so parallel fetches keep every entry."""
    import fcntl

    path = path or lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.flock"), "a+") as guard:
        fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
        files = read_lock(path)
        files[source_key(source)] = {"sha256": sha256, "model": model}
        with atomic_write(path) as f:
            json.dump({"version": LOCK_VERSION, "files": files}, f, indent=2, sort_keys=True)
            f.write("\n")


def check_lock(file: Path, source, model: str, digest: str) -> bool:
    """Compare a file without a published checksum with the sha256 recorded when it was
    fetched; CogError on a difference. True when the lock knew the file."""
    entry = read_lock().get(source_key(source))
    if entry is None:
        return False
    if entry["sha256"] != digest:
        raise CogError(
            f"{file}: sha256 {digest} differs from {entry['sha256']} recorded in "
            f"{lock_path()} when {model!r} was fetched; the file changed: delete it and run "
            f"`cog-models fetch {model}` (or remove its lock entry if the change is wanted)"
        )
    return True

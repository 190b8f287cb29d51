"""Small file helpers shared by every cog command: checksums, wnid lists, atomic writes.

Atomic writes are how cog keeps its promise that an interrupted run never leaves a
half-written output behind: everything goes to a temporary sibling that is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cog import CogError

WNID_RE = re.compile(r"^n\d{8}$")


def cog_home() -> Path:
    """Root of cog's caches (features, user model cards): `$COG_HOME`, else ~/.cache/cog."""
    return Path(os.environ.get("COG_HOME") or Path.home() / ".cache" / "cog").expanduser()


#: The one rule for outputs: every command writes under ./results (relative to the current
#: folder) unless --out says otherwise; caches (features, weights, user cards) live in
#: $COG_HOME. The shipped levels (cog/resources) are read, never written, by default.
RESULTS_DIR = Path("results")
USER_LEVELS_DIR = RESULTS_DIR / "levels"
USER_SPLITS_DIR = RESULTS_DIR / "splits"
SHIPPED_DIR = Path(__file__).resolve().parent / "resources"  # package data (cog.resources)
_LEVEL_FILES = ("cog_levels_mapping_file.pkl", "levels.csv")
_SPLIT_FILES = ("cog_concepts_split_file.pkl", "cog_concepts_split_file.csv")


def default_levels() -> Path:
    """Levels the user built (./results/levels) when present, else the shipped levels,
    so later commands find `cog-build-levels`' output without --levels."""
    if any((USER_LEVELS_DIR / n).is_file() for n in _LEVEL_FILES):
        return USER_LEVELS_DIR
    return SHIPPED_DIR / "levels"


def default_splits() -> Path:
    """Splits the user built (./results/splits) when present, else the checkout's
    splits/ file (cog ships no split file: it needs the user's ImageNet-21K paths)."""
    if any((USER_SPLITS_DIR / n).is_file() for n in _SPLIT_FILES):
        return USER_SPLITS_DIR / next(n for n in _SPLIT_FILES if (USER_SPLITS_DIR / n).is_file())
    return Path(__file__).resolve().parent.parent / "splits" / _SPLIT_FILES[0]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large checkpoints do not fill memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_wnid_list(path: str | Path) -> list[str]:
    """Read one wnid per line (blank lines and `#` comments allowed).

    Malformed and duplicate wnids raise CogError naming the file and line, because a
    silently skipped concept would change the benchmark's definition.
    """
    path = Path(path)
    if not path.is_file():
        raise CogError(f"{path}: no such file (expected one wnid such as n02084071 a line)")
    wnids: list[str] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            item = raw.split("#", 1)[0].strip()
            if not item:
                continue
            item = item.split()[0].split(",")[0]
            if not WNID_RE.match(item):
                raise CogError(
                    f"{path}:{lineno}: {item!r} is not a wnid; write 'n' followed by the "
                    "8-digit WordNet 3.0 noun offset, e.g. n02084071"
                )
            if item in first_line:
                raise CogError(
                    f"{path}:{lineno}: duplicate wnid {item} (first on line "
                    f"{first_line[item]}); remove one of the two lines"
                )
            first_line[item] = lineno
            wnids.append(item)
    if not wnids:
        raise CogError(f"{path}: the file holds no wnid")
    return wnids


def wnid_line_numbers(path: str | Path) -> dict[str, int]:
    """Line number of each wnid in a list file, for error messages that point at a line."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            item = raw.split("#", 1)[0].strip()
            if item:
                out.setdefault(item.split()[0].split(",")[0], lineno)
    return out


def system_errno(e: BaseException) -> int | None:
    """The C library errno behind an exception: `OSError.errno`, or the `errno = N` that
    h5py and torch put in their messages instead ("No space left" alone means ENOSPC)."""
    code = getattr(e, "errno", None)
    if code is None and isinstance(e, (OSError, RuntimeError)):
        m = re.search(r"errno = (\d+)|\[Errno (\d+)\]", str(e))
        if m is not None:
            code = int(m.group(1) or m.group(2))
        elif "No space left" in str(e):
            code = errno.ENOSPC
    return code


def reraise_named(e: BaseException, path: Path) -> None:
    """Raise a system error that names no file (pandas, pickle, h5py writes) again as an
    OSError naming `path`, so the one-line error says which output a full disk interrupted;
    return (for the caller's bare `raise`) for anything else."""
    code = system_errno(e)
    named = isinstance(e, OSError) and bool(e.filename)
    if isinstance(e, (OSError, RuntimeError)) and code is not None and not named:
        raise OSError(code, os.strerror(code), str(path)) from e


@contextlib.contextmanager
def atomic_output_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` whole.

    On any exception the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reraise_named(e, target)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    os.chmod(target, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside `path` and rename it over `path` once closed cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        reraise_named(e, path)
        raise


@contextlib.contextmanager
def atomic_files(paths: list[str | Path]) -> Iterator[list[Path]]:
    """Temporary siblings of `paths`, renamed over them together once the block succeeds:
    outputs that belong together (a pickle, its CSV and report) are all new or all old."""
    paths = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.tmp-", dir=p.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        for tmp, p in zip(tmps, paths, strict=True):
            os.replace(tmp, p)
    except BaseException as e:
        reraise_named(e, paths[0].parent)
        raise
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

"""Listing image folders without crashing on, or silently dropping, odd directory entries.

ImageNet trees copied between machines collect symlink loops, dangling links, folders named
like images and file names in a legacy encoding. One such entry must not stop a listing of
14 million files, and must not vanish either: each is returned as (path, reason) so the
caller records it with the images that failed to decode (`failed_paths` of a cache).
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def printable_name(name: str) -> str:
    """A file name as valid UTF-8 text, losslessly: bytes that are not UTF-8 (which Python
    surrogate-escapes) become `\\xNN` escapes, so the original bytes can be recovered."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def entry_kind(entry: os.DirEntry) -> tuple[str, str]:
    """("file" | "dir" | "bad", reason) for a directory entry; never raises."""
    try:
        if entry.is_file():
            return "file", ""
        if entry.is_dir():
            return "dir", ""
        if entry.is_symlink():
            return "bad", "dangling symbolic link (its target does not exist)"
        return "bad", "not a regular file (device, socket or pipe)"
    except OSError as e:
        return "bad", f"cannot stat it: {e.strerror or e}"


def scan_images(folder: str | Path, root: str | Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(sorted image paths, failed entries) of one class folder, paths relative to `root`.

    An entry with an image extension that is not a readable regular file (a folder named
    x.JPEG, a dangling link, a symlink loop) or whose name is not valid UTF-8 is a failed
    entry with its reason; hidden files and other extensions are not images and are skipped.
    Raises OSError when `folder` itself cannot be listed.
    """
    folder, root = Path(folder), Path(root)
    rel = folder.relative_to(root).as_posix()
    names: list[str] = []
    failed: list[tuple[str, str]] = []
    with os.scandir(folder) as it:
        entries = list(it)
    for e in entries:
        if e.name.startswith(".") or Path(e.name).suffix.lower() not in IMAGE_EXTS:
            continue
        kind, why = entry_kind(e)
        if kind == "file" and not is_utf8(e.name):
            kind, why = "bad", "file name is not valid UTF-8 (stored with \\x escapes); rename it"
        elif kind == "dir":
            why = "a folder with an image file name"
        if kind == "file":
            names.append(e.name)
        else:
            failed.append((f"{rel}/{printable_name(e.name)}", why))
    return [f"{rel}/{n}" for n in sorted(names)], sorted(failed)

"""Files shipped inside the cog package: the seen and pool wnid lists and the built levels.

They are found through importlib.resources, so an installed wheel finds them as a checkout
does; README.md in this folder records their provenance.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from cog import CogError

SEEN_LIST = "imagenet1k_wnids.txt"
POOL_LIST = "imagenet21k_fall11_wnids.txt"
LEVELS = "levels"


def resource_path(name: str) -> Path:
    """The path of shipped file or folder `name`; cog is installed unpacked (pip never zips)."""
    path = files(__name__) / name
    if not isinstance(path, Path):  # a zipimport install: no file system path to hand out
        raise CogError(f"{path}: cog's shipped data is not on the file system; reinstall with pip")
    return path

"""The old flat module paths keep working for one release (issue 15's move; gone in cog 0.3).

Each old path imports with a DeprecationWarning that names the new module, and gives the new
module's names: whole-file moves swap in the new module itself (private names and
monkeypatching keep working), split modules re-export every name they had.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

COG = Path(__file__).resolve().parent.parent / "cog"
# the public promise (docs/design.md): every one of these paths still imports
OLD = tuple(
    "archs backbone batch convert data decode demo evaluate extract fetch fingerprint ic "
    "integrity leaderboard levels lin metrics mochi photos probe reference report splits "
    "submit synthetic tldr train wordnet".split()
)


def alias_of(path: Path) -> str | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__deprecated_alias__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


def own_public_names(module) -> set[str]:
    """Public functions, classes and constants a module defines itself (not imported)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", OLD)
def test_old_path_warns_and_gives_the_new_module(name):
    old = f"cog.{name}"
    new = alias_of(COG / f"{name}.py")
    assert new and new.startswith("cog.") and new != old, f"{old}: no __deprecated_alias__"
    target = importlib.import_module(new)
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {new}"):
        mod = importlib.import_module(old)
    assert mod is target or own_public_names(target) <= set(vars(mod)), (old, new)


def test_the_promised_paths_all_exist():
    missing = [n for n in OLD if not (COG / f"{n}.py").is_file()]
    assert not missing, f"old module paths without an alias: {missing}"

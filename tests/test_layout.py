"""The package layout shows the data flow and imports only point down (docs/design.md).

Every module of cog is read as source (nothing is imported), and every import of a cog
module counts: module-level ones, function-local ones and `importlib.import_module("cog.x")`
calls; only imports under `if TYPE_CHECKING:` are left out (they never run). A module may
import modules of its own layer (without forming a cycle) and of lower layers, never of a
higher one. Modules that only re-export a moved module for one release declare
`__deprecated_alias__ = "new.module"`; they sit outside the layers and no cog module may
import them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

COG = Path(__file__).resolve().parent.parent / "cog"
# lowest first: a module may import its own layer or the layers before it
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "cog",
            "cog.io",
            "cog.resources",
            "cog.estimator",
            "cog.options",
            "cog.device",
            "cog.safe_pickle",
            "cog.listing",
        ),
    ),
    ("concepts", ("cog.concepts",)),  # WordNet, IC, Lin, levels, splits, level plots
    ("protocols", ("cog.protocols",)),  # probe, kNN, feature metrics: leaves
    ("compress", ("cog.compress",)),  # TLDR and PCA-w estimators, projection files: a leaf
    ("zoo", ("cog.zoo",)),  # cards, registry, weights, build, converters, archs
    ("features", ("cog.features",)),  # image lists, decoding, extractor, cache, synthetic trees
    ("ssl", ("cog.ssl",)),  # MoCHi and its trainer
    ("bench", ("cog.bench",)),  # evaluate, leaderboard, compression study, report
    ("cli", ("cog.cli",)),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
MAX_LINES = 600
MOVED = (COG / "concepts").is_dir()  # the subpackages have landed
FLAT = "the flat layout (issue 15's move lands the subpackages)"


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    local: bool  # inside a function


def modules(root: Path = COG) -> dict[str, Path]:
    """Module name -> source file, for every module of the package at `root`."""
    names = {}
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root.parent).with_suffix("")
        names[".".join(rel.parts).removesuffix(".__init__")] = p
    return names


def layer_of(module: str) -> str | None:
    """The layer whose longest prefix matches `module` (None: not placed yet)."""
    best, size = None, -1
    for name, prefixes in LAYERS:
        for p in prefixes:
            hit = module == p or (p != "cog" and module.startswith(p + "."))
            if hit and len(p) > size:
                best, size = name, len(p)
    return best


def deprecated_alias(path: Path) -> str | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__deprecated_alias__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.depth = 0
        self.found: list[tuple[str, int, bool]] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, name: str, node: ast.AST) -> None:
        if name == "cog" or name.startswith("cog."):
            self.found.append((name, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            keep = len(parts) - node.level + (1 if self.is_package else 0)
            base = ".".join(parts[:keep] + ([node.module] if node.module else []))
        for alias in node.names:  # a submodule when `base.name` is one, else `base` itself
            self._add(f"{base}.{alias.name}", node)

    def visit_Call(self, node: ast.Call) -> None:
        func = ast.unparse(node.func)
        if func.endswith("import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, node)
        self.generic_visit(node)


def imports(root: Path = COG) -> list[Import]:
    """Every import of one cog module by another, resolved to the module it loads."""
    mods = modules(root)
    out = []
    for name, path in mods.items():
        c = _Collector(name, path.name == "__init__.py")
        c.visit(ast.parse(path.read_text(encoding="utf-8")))
        seen = set()
        for target, line, local in c.found:
            parts = target.split(".")
            while parts and ".".join(parts) not in mods:
                parts.pop()
            resolved = ".".join(parts)
            # a package's own __init__ (cog, cog.zoo) is loaded by any import of its children
            if resolved in ("", name) or (line, resolved) in seen:
                continue
            seen.add((line, resolved))
            out.append(Import(name, resolved, line, local))
    return out


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        if e.target != "cog":  # cog/__init__ holds CogError and imports nothing
            graph[e.source].add(e.target)  # a child importing its package's facade counts
    nodes = sorted({e.source for e in edges} | {e.target for e in edges})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _describe(edges: list[Import]) -> str:
    return "; ".join(
        f"{e.source}:{e.line} imports {e.target}{' (in a function)' if e.local else ''}"
        for e in edges
    )


ALIASES = {name for name, path in modules().items() if deprecated_alias(path)}


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_imports_point_down(layer):
    mods = [m for m in modules() if layer_of(m) == layer and m not in ALIASES]
    if not mods:
        pytest.skip(f"no module in layer {layer} yet ({FLAT})")
    bad = [
        e
        for e in imports()
        if e.source in mods
        and e.target not in ALIASES
        and (
            RANK[layer_of(e.target)] > RANK[layer]
            if layer_of(e.target)
            else MOVED  # before the move, flat modules cannot be judged
        )
        and not e.source.startswith(e.target + ".")
    ]
    assert not bad, f"imports above layer {layer} or of unplaced modules: {_describe(bad)}"


def test_no_cog_module_imports_a_deprecated_alias():
    bad = [e for e in imports() if e.target in ALIASES and e.source not in ALIASES]
    assert not bad, f"import the new module instead: {_describe(bad)}"


def test_no_import_cycles():
    found = cycles([e for e in imports() if e.source not in ALIASES])
    edges = imports()
    detail = [
        _describe([e for e in edges if e.source in comp and e.target in comp]) for comp in found
    ]
    assert not found, f"import cycles: {found}: {detail}"


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in modules() if layer_of(m) is None and m not in ALIASES)
    assert not unplaced, f"modules outside every layer (add them to LAYERS): {unplaced}"


def test_no_module_above_the_size_limit():
    big = {
        m: n
        for m, p in modules().items()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, f"modules above {MAX_LINES} lines (split by job): {big}"


def test_the_checker_sees_function_local_and_dynamic_imports(tmp_path):
    """On a small made-up package: relative, function-local and dynamic imports are seen,
    and a cycle made only through a function-local import is found."""
    pkg = tmp_path / "cog"
    (pkg / "concepts").mkdir(parents=True)
    (pkg / "zoo").mkdir()
    files = {
        "__init__.py": "",
        "io.py": "import importlib\nimportlib.import_module('cog.zoo.cards')\n",
        "concepts/__init__.py": "",
        "concepts/levels.py": "def f():\n    from ..zoo import cards\n",
        "zoo/__init__.py": "from cog.zoo.cards import x\nfrom cog.zoo.weights import g\n",
        "zoo/cards.py": "from cog.concepts.levels import f\nx = 1\n",
        "zoo/old.py": "__deprecated_alias__ = 'cog.zoo.cards'\n",
        "zoo/fetch.py": "def f():\n    from cog import zoo\n",  # child -> its facade
        "zoo/weights.py": "def g():\n    from cog.zoo import fetch\n",
        "zoo/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cog.io\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    edges = imports(pkg)
    found = {(e.source, e.target, e.local) for e in edges}
    assert ("cog.concepts.levels", "cog.zoo.cards", True) in found  # relative, in a function
    assert ("cog.io", "cog.zoo.cards", False) in found  # importlib.import_module
    assert ("cog.zoo", "cog.zoo.cards", False) in found
    assert not any(e.source == "cog.zoo.typed" for e in edges)  # TYPE_CHECKING never runs
    assert sorted(cycles(edges)) == [
        ["cog.concepts.levels", "cog.zoo.cards"],
        ["cog.zoo", "cog.zoo.fetch", "cog.zoo.weights"],
    ]
    assert layer_of("cog.concepts.levels") == "concepts" and layer_of("cog.tldr") is None
    assert layer_of("cog") == "core" and layer_of("cog.cli.eval") == "cli"
    assert deprecated_alias(pkg / "zoo" / "old.py") == "cog.zoo.cards"

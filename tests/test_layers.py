"""Imports point down: read every module's ``genlab`` imports and fail on an upward one or a cycle.

The layers are those of ``docs/architecture.md``; the table below is the rule. A package imports
only packages of lower layers (and itself); packages sharing a layer are independent of each
other. Every import counts for the layers, also one inside a function or under
``TYPE_CHECKING``: a lazy import hides a dependency, it does not remove it. Cycles are checked
twice: between packages (every import) and between modules as Python runs them at import time
(module-level imports only), where a cycle means a half-initialised module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

# Bottom to top. A package imports only packages of a lower row (and itself).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # knows no model: trainer, run folders, io, distributed, logging, device
    ("data",),  # TinyWorld, images, audio, loaders, tokenizer
    ("nets",),  # networks only
    ("methods",),  # how each family learns and generates
    (
        "align",
        "adapt",
        "prompting",
        "tools",
        "research",
        "scaling",
        "metrics",
    ),  # one technique each
    ("recipes",),  # end-to-end runs and experiments
    ("serve",),  # the HTTP API and page
    ("cli",),  # thin verbs
)
# genlab/__init__.py and genlab/__main__.py sit above everything. Python runs __init__.py before
# any submodule, so it may import genlab only inside functions (lazily); __main__.py is never
# imported by genlab itself and may import at its top.
TOP = "<top>"
TOP_MODULES = {"genlab": TOP, "genlab.__main__": TOP}
# Names any module may read from the root package: it is already initialised by then.
ROOT_NAMES = {"__version__"}

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "genlab"


@dataclass(frozen=True)
class Import:
    """One ``genlab`` import: where it is written, what it names, and when it runs."""

    path: Path
    line: int
    source: str  # the importing module, e.g. "genlab.core.run"
    target: str  # the imported module, e.g. "genlab.core.io" (a package's __init__ for names)
    text: str  # the statement as written
    top_level: bool  # runs when the module is imported (not in a function or TYPE_CHECKING)

    def where(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}: `{self.text}`"


def module_names(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``src/package`` by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Every import statement of a module with whether it runs at import time."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self.root_attrs: set[str] = set()  # attributes read off the name ``genlab``
        self._lazy = 0

    def _in_function(self, node: ast.AST) -> None:
        self._lazy += 1
        self.generic_visit(node)
        self._lazy -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _in_function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._lazy += 1
            for child in node.body:
                self.visit(child)
            self._lazy -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._lazy == 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._lazy == 0))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == PACKAGE:
            self.root_attrs.add(node.attr)
        self.generic_visit(node)


def _base_of_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    parts = module.split(".")
    if not is_package:
        parts.pop()  # a module's relative imports start from its package
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def read_imports(src: Path, package: str = PACKAGE) -> list[Import]:
    """The ``genlab`` imports of every module under ``src/package``, relative ones resolved.

    ``from a.b import c`` targets the module ``a.b.c`` when there is one, else ``a.b`` (whose
    ``__init__`` defines ``c``). ``import genlab`` whose module reads only :data:`ROOT_NAMES`
    off it is left out: it reaches nothing that is not already loaded.
    """
    modules = module_names(src, package)
    out: list[Import] = []
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        collector = _Collector()
        collector.visit(tree)
        is_package = path.name == "__init__.py"
        for node, top_level in collector.found:
            statement = ast.get_source_segment(text, node) or ast.dump(node)
            statement = " ".join(statement.split())
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package and collector.root_attrs <= ROOT_NAMES:
                        continue
                    targets.append(alias.name)
            else:
                base = node.module or ""
                if node.level:
                    base = _base_of_relative(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:
                        targets.append(sub)
                    elif not (base == package and alias.name in ROOT_NAMES):
                        targets.append(base)
            for target in dict.fromkeys(targets):
                if target == package or target.startswith(package + "."):
                    out.append(Import(path, node.lineno, module, target, statement, top_level))
    return out


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[str, int | None]:
    """``(package, row)`` of a module: the row in ``layers``, ``len(layers)`` for the top
    modules, ``None`` for a package missing from the table."""
    if module in TOP_MODULES:
        return TOP, len(layers)
    name = module.split(".")[1]
    for row, packages in enumerate(layers):
        if name in packages:
            return name, row
    return name, None


def layer_violations(
    imports: list[Import], root: Path, layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    """One message per import that points up, sideways within a layer, or out of the table."""
    problems = []
    for imp in imports:
        src_pkg, src_row = layer_of(imp.source, layers)
        dst_pkg, dst_row = layer_of(imp.target, layers)
        if src_row is None:
            problems.append(f"{imp.where(root)}: package '{src_pkg}' is not in LAYERS")
        elif dst_row is None:
            problems.append(f"{imp.where(root)}: package '{dst_pkg}' is not in LAYERS")
        elif src_pkg == TOP:
            if imp.source == PACKAGE and imp.top_level:
                problems.append(
                    f"{imp.where(root)}: genlab/__init__.py runs before every submodule; "
                    "import inside a function"
                )
        elif src_pkg == dst_pkg:
            continue
        elif dst_row > src_row:
            problems.append(
                f"{imp.where(root)}: '{src_pkg}' imports '{dst_pkg}', a higher layer (up)"
            )
        elif dst_row == src_row:
            problems.append(
                f"{imp.where(root)}: '{src_pkg}' imports '{dst_pkg}' of its own layer "
                "(the packages of one layer are independent)"
            )
    return problems


def _cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, {}):
                    found.append(sorted(component))
    return found


def _describe(component: list[str], edges: dict[str, dict[str, Import]], root: Path) -> str:
    members = set(component)
    lines = [
        f"    {a} -> {b}  ({imp.where(root)})"
        for a in component
        for b, imp in sorted(edges.get(a, {}).items())
        if b in members
    ]
    return "cycle between " + ", ".join(component) + ":\n" + "\n".join(lines)


def package_cycles(imports: list[Import], root: Path) -> list[str]:
    """Cycles between the first-level packages (``core``, ``data``, ...), any import counted."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        a, b = layer_of(imp.source)[0], layer_of(imp.target)[0]
        if a != b:
            edges[a].setdefault(b, imp)
    return [_describe(c, edges, root) for c in _cycles(edges)]


def module_cycles(imports: list[Import], root: Path) -> list[str]:
    """Cycles between modules through the imports that run when a module is first imported."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        if imp.top_level:
            edges[imp.source].setdefault(imp.target, imp)
    return [_describe(c, edges, root) for c in _cycles(edges)]


def check(src: Path, root: Path) -> list[str]:
    imports = read_imports(src)
    return (
        layer_violations(imports, root)
        + package_cycles(imports, root)
        + module_cycles(imports, root)
    )


def test_imports_point_down_and_form_no_cycle() -> None:
    problems = check(ROOT / "src", ROOT)
    assert not problems, "import rules broken (see LAYERS in tests/test_layers.py):\n" + "\n".join(
        problems
    )


def test_the_table_covers_every_package() -> None:
    packages = {p.name for p in (ROOT / "src" / PACKAGE).iterdir() if (p / "__init__.py").is_file()}
    listed = {name for row in LAYERS for name in row}
    assert packages <= listed, f"add {sorted(packages - listed)} to LAYERS"
    assert len(listed) == sum(map(len, LAYERS)), "a package is listed twice"


# --- the checker itself, on a made-up tree ----------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    for name, body in {"genlab/__init__.py": "", **files}.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(src).parents:
            if parent != Path(".") and not (src / parent / "__init__.py").exists():
                (src / parent / "__init__.py").write_text("")
        path.write_text(body)
    return src


def test_checker_reports_up_sideways_and_cycles(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "genlab/core/io.py": "import os\nfrom genlab.core import errors\n",
            "genlab/core/errors.py": "",
            # upward, lazily and relatively: still upward
            "genlab/core/run.py": "def f():\n    from ..data.loaders import x\n",
            "genlab/data/loaders.py": "from genlab.core.io import read\nx = 1\n",
            # same layer
            "genlab/align/ppo.py": "import genlab.metrics.fid\n",
            "genlab/metrics/fid.py": "from genlab.align import ppo\n",
            # a module cycle inside one package, at import time
            "genlab/nets/a.py": "from genlab.nets.b import B\nA = 1\n",
            "genlab/nets/b.py": "from . import a\nB = 2\n",
            # fine: a lazy cycle, a TYPE_CHECKING import, the root's version
            "genlab/methods/m.py": (
                "from typing import TYPE_CHECKING\nimport genlab\nV = genlab.__version__\n"
                "if TYPE_CHECKING:\n    from genlab.methods.n import N\n"
            ),
            "genlab/methods/n.py": "def g():\n    from genlab.methods import m\n",
        },
    )
    imports = read_imports(src)
    layers = "\n".join(layer_violations(imports, tmp_path))
    assert "src/genlab/core/run.py:2: `from ..data.loaders import x`" in layers
    assert "'core' imports 'data', a higher layer (up)" in layers
    assert "src/genlab/align/ppo.py:1: `import genlab.metrics.fid`" in layers
    assert "'metrics' imports 'align' of its own layer" in layers
    assert len(layer_violations(imports, tmp_path)) == 3
    packages = package_cycles(imports, tmp_path)
    assert len(packages) == 2  # core <-> data, align <-> metrics
    assert any("cycle between core, data" in p for p in packages)
    modules = module_cycles(imports, tmp_path)
    assert len(modules) == 2  # align.ppo <-> metrics.fid, nets.a <-> nets.b
    (nets,) = [m for m in modules if "cycle between genlab.nets.a, genlab.nets.b" in m]
    assert "src/genlab/nets/b.py:1: `from . import a`" in nets
    # every edge of the cycle is named with its line
    assert "genlab.nets.a -> genlab.nets.b  (src/genlab/nets/a.py:1:" in nets


def test_checker_rules_for_the_top_modules(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "genlab/__init__.py": (
                "from genlab.core.io import x\ndef load():\n    import genlab.cli\n"
            ),
            "genlab/__main__.py": "from genlab.cli import main\n",
            "genlab/cli/__init__.py": "def main(): ...\n",
            "genlab/core/io.py": "import genlab\nx = genlab.load\n",  # reaches up
            "genlab/newpkg/__init__.py": "",
            "genlab/newpkg/a.py": "from genlab.core.io import x\n",
        },
    )
    problems = check(src, tmp_path)
    text = "\n".join(problems)
    assert "src/genlab/__init__.py:1: `from genlab.core.io import x`: genlab/__init__.py" in text
    assert "src/genlab/core/io.py:1: `import genlab`: 'core' imports '<top>'" in text
    assert "package 'newpkg' is not in LAYERS" in text
    assert "__main__" not in text and "import genlab.cli" not in text


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("genlab.core.run", False, 1, "io", "genlab.core.io"),
        ("genlab.core.run", False, 2, "data", "genlab.data"),
        ("genlab.core", True, 1, "io", "genlab.core.io"),
        ("genlab.data.tinyworld", True, 2, None, "genlab.data"),
    ],
)
def test_relative_imports_resolve(
    module: str, is_package: bool, level: int, name: str | None, expected: str
) -> None:
    assert _base_of_relative(module, is_package, level, name) == expected

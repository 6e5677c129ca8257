"""Every module under incidents/ imports on its own, and no modules import each other in a loop.

A cycle makes a module importable only when another one was imported first (`import incidents.postmortem.api` in a
fresh interpreter raised ImportError while incidents.api and the domains' api.py imported each other); dependencies
point one way: tracker -> action items -> post-mortem -> incident -> catalog/auth -> shared plumbing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "incidents"


def modules_of(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` under `root` (a package is its __init__)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ModuleLevelImports(ast.NodeVisitor):
    """The modules an import of one module runs: its imports outside functions and outside `if TYPE_CHECKING:`."""

    def __init__(self, name: str, is_package: bool):
        self.package = name if is_package else name.rpartition(".")[0]
        self.imported: list[tuple[str, list[str]]] = []  # (module, names taken from it)

    def visit_FunctionDef(self, node):  # runs when called, not when imported
        pass

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If):
        if _is_type_checking(node.test):  # only type checkers follow these
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import):
        self.imported += [(alias.name, []) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.level:  # relative: from the package `level - 1` steps above this module's package
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        self.imported.append((module, [alias.name for alias in node.names]))


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports at module level.

    `from a.b import c` is an edge to a.b, and to a.b.c when that is a module; a package importing its own
    submodule is an edge to it. Importing a submodule also runs its parent packages, but that is no edge: Python
    imports a submodule of a package that is still initialising without reading the package's names."""
    modules = modules_of(root, package)
    graph = {}
    for name, path in modules.items():
        visitor = _ModuleLevelImports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        edges = set()
        for module, names in visitor.imported:
            edges.add(module)
            edges.update(f"{module}.{n}" for n in names)
        graph[name] = {m for m in edges if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import loop per group of modules that import each other (strongly connected components), as the path
    module -> ... -> module, shortest through the group's first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is a few hundred modules at most, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_loop_through(min(group), group, graph) for group in sorted(groups, key=min)]


def _loop_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path start -> ... -> start inside `group` (breadth first)."""
    came_from = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not a cycle")


# Run in a fresh interpreter: imports every third-party package the modules name (they cannot import ours), then
# forks one child per module, a few at a time; each child starts with none of the package's modules loaded and
# imports only its own. Prints {module: traceback} for those that failed.
_IMPORT_EACH = r"""
import importlib, json, os, sys, tempfile, traceback

package, preload, modules = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
for name in filter(None, preload):
    try:
        importlib.import_module(name)
    except Exception:
        pass  # the module that imports it reports the error
assert not any(m == package or m.startswith(package + ".") for m in sys.modules), "preloaded our own modules"

workers, running, failures = min(4, os.cpu_count() or 1), {}, {}


def reap():
    pid, status = os.wait()
    name, out = running.pop(pid)
    out.seek(0)
    if os.waitstatus_to_exitcode(status) != 0:
        failures[name] = out.read().decode(errors="replace") or f"exit status {status}"
    out.close()


for name in modules:
    if len(running) >= workers:
        reap()
    out = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            importlib.import_module(name)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    running[pid] = (name, out)
while running:
    reap()
print(json.dumps(failures))
"""


def third_party_imports(root: Path, package: str) -> set[str]:
    """Top-level names of the packages outside `package` that its modules import at module level."""
    names = set()
    for name, path in modules_of(root, package).items():
        visitor = _ModuleLevelImports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        names.update(m.split(".")[0] for m, _ in visitor.imported if m and m.split(".")[0] != package)
    return names


def failed_imports(root: Path, package: str, modules: list[str]) -> dict[str, str]:
    """Module -> traceback, for each of `modules` that does not import on its own."""
    preload = ",".join(sorted(third_party_imports(root, package)))
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, package, preload, *modules], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked child")


@needs_fork
def test_every_module_imports_on_its_own():
    # __main__ runs the command line when imported; it is `python -m incidents`, never imported.
    modules = [m for m in modules_of(ROOT, PACKAGE) if not m.endswith(".__main__")]
    failures = failed_imports(ROOT, PACKAGE, modules)
    assert not failures, "\n\n".join(f"{name}:\n{trace}" for name, trace in sorted(failures.items()))


def test_no_import_cycles():
    found = cycles(import_graph(ROOT, PACKAGE))
    assert not found, "Import cycles (module-level imports):\n" + "\n".join(" -> ".join(c) for c in found)


# --- the checks themselves, on a small package written for them -------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_graph_follows_module_level_imports_only(tmp_path):
    _write(tmp_path, {
        "toypkg/__init__.py": "",
        "toypkg/shared.py": "import json\n",
        "toypkg/sub/__init__.py": "from toypkg.sub import leaf\n",  # a package importing its own submodule
        "toypkg/sub/leaf.py": "from toypkg import shared\n",  # `from package import submodule`
        "toypkg/user.py": (
            "from typing import TYPE_CHECKING\n"
            "from toypkg.sub.leaf import x\n"
            "if TYPE_CHECKING:\n    from toypkg import late\n"
            "else:\n    from . import shared\n"
            "def f():\n    from toypkg import late\n"
            "class C:\n    import toypkg.other\n"
        ),
        "toypkg/late.py": "",
        "toypkg/other.py": "",
    })
    assert import_graph(tmp_path, "toypkg") == {
        "toypkg": set(), "toypkg.shared": set(), "toypkg.late": set(), "toypkg.other": set(),
        "toypkg.sub": {"toypkg.sub.leaf"},
        "toypkg.sub.leaf": {"toypkg", "toypkg.shared"},
        "toypkg.user": {"toypkg.sub.leaf", "toypkg", "toypkg.shared", "toypkg.other"},
    }
    assert cycles(import_graph(tmp_path, "toypkg")) == []
    assert third_party_imports(tmp_path, "toypkg") == {"typing", "json"}


# The layout this test was written against: a blueprint module importing, after defining `bp`, a name of the
# routes that import `bp` back. Imported first, it works; the routes imported first do not.
_CYCLIC = {
    "toypkg/__init__.py": "",
    "toypkg/api.py": "bp = object()\nfrom toypkg.domain.api import helper  # noqa\n",
    "toypkg/domain/__init__.py": "",
    "toypkg/domain/api.py": "from toypkg.api import bp\nfrom toypkg.domain import models\nhelper = bp\n",
    "toypkg/domain/models.py": "",
}


def test_cycles_are_named_as_a_path(tmp_path):
    _write(tmp_path, _CYCLIC)
    assert cycles(import_graph(tmp_path, "toypkg")) == [["toypkg.api", "toypkg.domain.api", "toypkg.api"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"c"}}) == [["a", "b", "c", "a"]]


@needs_fork
def test_a_module_that_only_imports_second_is_reported(tmp_path):
    _write(tmp_path, _CYCLIC)
    failures = failed_imports(tmp_path, "toypkg", ["toypkg.api", "toypkg.domain.api", "toypkg.domain.models"])
    assert list(failures) == ["toypkg.domain.api"]
    assert "ImportError" in failures["toypkg.domain.api"]


# --- layers: each domain imports only the domains below it ------------------------------------------

# Lower number = lower layer. A domain may import a domain of a lower layer only (alert and postmortem both sit on
# incident and never import each other); notify, report and insights read everything below them (insights draws
# with report's charts; nothing imports insights).
LAYERS = {"auth": 0, "catalog": 1, "incident": 2, "alert": 3, "postmortem": 3, "action_item": 4, "tracker": 5,
          "notify": 6, "search": 6, "report": 7, "slack": 8, "insights": 8, "audit": 9}
# The composition root: the modules that wire every domain into the app (and the demo data that spans them).
WIRING = {"incidents", "incidents.api", "incidents.web", "incidents.models", "incidents.cli", "incidents.demo",
          "incidents.__main__"}


def all_imports(path: Path) -> set[str]:
    """Every `incidents...` module a file names in an import, at any depth (a call-time import is a dependency too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(root: Path) -> list[str]:
    problems = []
    for module, path in modules_of(root, PACKAGE).items():
        if module in WIRING:
            continue
        mine = _domain(module)
        seen = set()
        for target in sorted(all_imports(path)):
            theirs = _domain(target)
            if theirs is None or theirs == mine or theirs in seen:
                continue
            seen.add(theirs)  # one line per domain it reaches: the first module named
            if mine is None:
                problems.append(f"{module} (shared) imports the {theirs} domain ({target})")
            elif LAYERS[theirs] >= LAYERS[mine]:
                problems.append(f"{module} ({mine}) imports {target}, which is not below it")
    return problems


def test_domains_import_only_the_layers_below_them():
    assert layer_violations(ROOT) == []


def test_layer_check_catches_an_upward_import(tmp_path):
    _write(tmp_path, {
        "incidents/__init__.py": "",
        "incidents/jobs.py": "from incidents.notify import jobs\n",
        "incidents/incident/__init__.py": "",
        "incidents/incident/services.py": "def f():\n    from incidents.postmortem.models import Postmortem\n",
        "incidents/postmortem/__init__.py": "",
        "incidents/postmortem/models.py": "from incidents.incident import services\n",
    })
    assert layer_violations(tmp_path) == [
        "incidents.incident.services (incident) imports incidents.postmortem.models, which is not below it",
        "incidents.jobs (shared) imports the notify domain (incidents.notify)",
    ]

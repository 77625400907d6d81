"""The code's shape, checked: layers, no import circles, the CLI imported by nobody, short files,
Optuna's private names only in explorer/store/.

Everything is read with `ast` (nothing is imported), so a regression fails here with the file
and line. `python tests/test_structure.py` prints the figures (largest file, circles,
private-name sites) for any checkout: `python tests/test_structure.py /path/to/checkout`.

Private-name sites: (1) imports from an Optuna module or of an Optuna name whose dotted path has
a `_`-prefixed part (`optuna.storages._rdb`, `from optuna.storages import _CachedStorage`);
(2) `obj._name` where `_name` is a private name Optuna itself defines (a `_`-prefixed function,
class, method or attribute assigned anywhere in the installed Optuna's source), unless `obj` is
`self` or `cls` and the file defines that name itself (else it is an inherited Optuna attribute);
(3) getattr / hasattr / setattr with such a name as a string. The set is read from the installed
Optuna, so a name a new release adds is covered. Sites are counted per occurrence.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("explorer", "dashboards")
MAX_LINES = 600
STORE = "explorer/store/"
NOT_PRIVATE = frozenset({"_asdict", "_replace", "_fields", "_make", "_field_defaults"})  # namedtuple API
# Each module's layer; a module may import its own layer or lower ones, never a higher one.
# (Listed by the first path component that matches, most specific first.)
LAYERS = (
    ("explorer/commands/", 6), ("explorer/__main__.py", 6), ("dashboards/", 6),
    ("explorer/results/", 5), ("explorer/tabular/", 5),
    ("explorer/study/", 4),
    ("explorer/store/", 3),
    ("explorer/training/", 2), ("explorer/latency/", 2),
    ("explorer/design/", 1), ("explorer/__init__.py", 1),
    ("explorer/core/", 0),
)
LAYER_NAMES = {0: "core", 1: "design", 2: "training and latency", 3: "store", 4: "study", 5: "results",
               6: "CLI and dashboard"}


# --- reading the tree ------------------------------------------------------------------------

def source_files(root: Path = ROOT) -> list[Path]:
    """Every .py file of the packages, relative to `root`."""
    return sorted(p.relative_to(root) for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    """explorer/store/open.py -> explorer.store.open; explorer/store/__init__.py -> explorer.store."""
    parts = list(path.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, package: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(module, line) for every import of one of `known` anywhere in the file (function bodies too).

    `package` is the file's own package (for relative imports).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, known, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield from _known(sub if sub in known else base, known, node.lineno)


def _known(name: str, known: set[str], line: int) -> Iterator[tuple[str, int]]:
    while name and name not in known:
        name = name.rpartition(".")[0]
    if name:
        yield name, line


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, over the packages' own modules."""
    files = source_files(root)
    known = {module_name(p) for p in files}
    graph: dict[str, dict[str, int]] = {}
    for path in files:
        here = module_name(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        edges = graph.setdefault(here, {})
        for target, line in imported_modules(ast.parse((root / path).read_text()), package, known):
            if target != here:
                edges.setdefault(target, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def layer_of(path: str) -> int | None:
    """The layer of a file (see LAYERS), None for one that is not listed."""
    return next((n for prefix, n in LAYERS if path == prefix or (prefix.endswith("/") and path.startswith(prefix))),
                None)


# --- Optuna's private names --------------------------------------------------------------------

@lru_cache(maxsize=1)
def optuna_private_names() -> frozenset[str]:
    """Every `_name` the installed Optuna defines: functions, classes, methods, assigned attributes."""
    import optuna

    names: set[str] = set()
    for path in Path(optuna.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


def private_sites(source: str, private: frozenset[str]) -> list[tuple[int, str]]:
    """(line, what) for each use of an Optuna private name in `source` (see the module docstring)."""
    tree = ast.parse(source)
    own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
           and isinstance(n.value, ast.Name) and n.value.id == "self"}  # attributes this file defines
    own |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sites += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] == "optuna" and _has_private_part(a.name)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "optuna":
            sites += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names
                      if _has_private_part(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Attribute) and node.attr in private - NOT_PRIVATE:
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if owner not in ("self", "cls") or node.attr not in own:  # an inherited Optuna attribute
                sites.append((node.lineno, f".{node.attr}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in private - NOT_PRIVATE):
            sites.append((node.lineno, f"{node.func.id}(..., {node.args[1].value!r})"))
    return sorted(sites)


def _has_private_part(dotted: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in dotted.split("."))


# --- the figures ---------------------------------------------------------------------------------

def report(root: Path = ROOT) -> dict:
    """Largest file, files over MAX_LINES, circles, CLI imports, private-name sites per file."""
    files = source_files(root)
    lengths = {str(p): len((root / p).read_text().splitlines()) for p in files}
    private = optuna_private_names()
    sites = {str(p): s for p in files if (s := private_sites((root / p).read_text(), private))}
    graph = import_graph(root)
    largest = max(lengths, key=lengths.get)
    return {"largest": (largest, lengths[largest]),
            "over": sorted(p for p, n in lengths.items() if n > MAX_LINES),
            "circles": circles(graph),
            "cli_imports": cli_imports(graph),
            "private_sites": sum(len(s) for s in sites.values()),
            "private_files": {p: len(s) for p, s in sorted(sites.items())}}


def cli_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """'module -> explorer.commands.x (line N)' for each import of the CLI from outside it."""
    cli = ("explorer.commands", "explorer.__main__")
    return [f"{m} -> {t} (line {line})" for m, edges in sorted(graph.items()) for t, line in edges.items()
            if t.startswith(cli) and not m.startswith(cli)]


# --- the checks ------------------------------------------------------------------------------------

def test_no_import_circles():
    assert circles(import_graph()) == []


def test_nothing_outside_the_cli_imports_it():
    assert cli_imports(import_graph()) == []


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    graph = import_graph()
    files = {module_name(p): str(p) for p in source_files()}
    unlisted = sorted(f for f in files.values() if layer_of(f) is None)
    assert unlisted == [], "give each new module a layer in LAYERS (and docs/ARCHITECTURE.md)"
    upward = [f"{files[m]} ({LAYER_NAMES[layer_of(files[m])]}) imports {files[t]} "
              f"({LAYER_NAMES[layer_of(files[t])]}) at line {line}"
              for m, edges in graph.items() for t, line in edges.items()
              if layer_of(files[t]) > layer_of(files[m])]
    assert upward == []


def test_explorer_holds_packages_not_modules():
    """The folder listing shows the layers: explorer/ holds only its face (__init__, __main__) and packages."""
    loose = sorted(p.name for p in (ROOT / "explorer").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert {layer_of(f"explorer/{d.name}/") for d in (ROOT / "explorer").iterdir()
            if (d / "__init__.py").is_file()} <= set(LAYER_NAMES)


def test_no_file_is_longer_than_600_lines():
    long = {str(p): n for p in source_files() + [Path(f) for f in _other_py_files()]
            if (n := len((ROOT / p).read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _other_py_files() -> list[str]:
    return [str(p.relative_to(ROOT)) for d in ("tests", "bench") for p in (ROOT / d).glob("*.py")]


def test_optuna_private_names_only_in_the_store():
    private = optuna_private_names()
    outside = {f"{p}:{line}": what for p in source_files() + [Path(f) for f in _other_py_files()]
               if not str(p).startswith(STORE) and not str(p).startswith("tests/")
               for line, what in private_sites((ROOT / p).read_text(), private)}
    assert outside == {}


# The checkers themselves must be able to fail: fed code that breaks each rule, they see it.

def test_the_private_name_checker_sees_each_form():
    private = optuna_private_names()
    assert {"_storage", "_study_id", "_trial_id", "_backend"} <= private
    code = ("import optuna.storages._rdb.models\n"
            "from optuna.storages.journal._file import get_lock_file\n"
            "from optuna.storages import _CachedStorage\n"
            "x = study._storage.get_all_trials(study._study_id)\n"
            "self._storage = 1\n"
            "from optuna.storages import JournalStorage\n"
            "y = getattr(storage, '_backend', storage), self._lock, self._storage\n")
    assert [line for line, _ in private_sites(code, private)] == [1, 2, 3, 4, 4, 7, 7]


def test_the_circle_and_cli_checkers_see_a_circle_and_a_cli_import():
    graph = {"explorer.study.loop": {"explorer.commands.worker": 3},
             "explorer.commands.worker": {"explorer.study.loop": 9},
             "explorer.pg": {"explorer.storage": 1}, "explorer.storage": {"explorer.pg": 2}, "explorer.design.spec": {}}
    assert circles(graph) == [["explorer.commands.worker", "explorer.study.loop"], ["explorer.pg", "explorer.storage"]]
    assert cli_imports(graph) == ["explorer.study.loop -> explorer.commands.worker (line 3)"]


def test_the_import_reader_sees_imports_inside_functions():
    known = {"explorer.commands.worker", "explorer.store", "explorer.store.attrs", "explorer"}
    tree = ast.parse("def f():\n    from explorer.commands import worker\n    from explorer.store import attrs\n")
    assert list(imported_modules(tree, "explorer", known)) == [
        ("explorer.commands.worker", 2), ("explorer.store.attrs", 3)]


if __name__ == "__main__":
    import json

    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    print(json.dumps(report(root), indent=1))

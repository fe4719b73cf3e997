"""The package's shape: imports point one way (no cycle, function-level imports included), every import is a
statement (no module imported by its name in a string), no private name is imported from another module, and
modules and functions stay small."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "art_lib"
MAX_LINES = 500
MAX_FUNCTION_LINES = 80  # a function's `def` line to its last line, docstring included (decorators not)
# Functions allowed over MAX_FUNCTION_LINES (the test fails on a stale entry): none. No data table needs an entry:
# the tables are module-level constants, not functions.
LONG_FUNCTIONS_ALLOWED: set[str] = set()
# Code that must not import the kit by name (strings): the package and everything that drives it.
CODE_DIRS = ("art_lib", "tests", "scripts", "benchmarks", "notebooks")

# The one allowed cycle: the registry's lookups import the built-in benchmarks and the toy world (which register
# themselves when imported) inside a function, on first use. Those modules use the kit (data, rewards, models),
# which looks names up in the registry, so a module-level import either way would be a cycle at import time.
DEFERRED_EDGES = {("art_lib.registry", "art_lib.tasks"), ("art_lib.registry", "art_lib.toy")}

# Private names imported from another module: none (make such a name public, or keep its use local). A new
# entry names a rename still to do; the test fails on a stale one.
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The most specific module of the package that `name` (dotted) refers to, if any."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _from_stem(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` statement of module `name` (file `path`) imports from."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str], nodes=None) -> set[str]:
    """Every package module `name` imports, at any depth of its code (functions included), or in `nodes` only."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))) if nodes is None else nodes:
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = _from_stem(name, path, node)
            # `from . import x` / `from .pkg import sub` name modules; `from .mod import f` names mod.
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved and resolved != name and not name.startswith(resolved + "."):
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle_and_accepts_a_dag():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "art_lib.toy.recipe" in graph["art_lib.toy.pretrain"]  # `from .recipe import ...`
    assert "art_lib.models" in graph["art_lib.toy.recipe"]  # `from ..models import ...` inside a function


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    for source, target in DEFERRED_EDGES:
        graph[source].discard(target)
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_deferred_edges_exist_and_are_function_level_only():
    """The allowed cycle is real (not a stale entry) and closes only when a lookup runs, never at import."""
    graph, mods = import_graph(), modules()
    for source, target in DEFERRED_EDGES:
        assert target in graph[source], f"{source} no longer imports {target}: drop it from DEFERRED_EDGES"
        top_level = ast.parse(mods[source].read_text()).body
        assert target not in imports_of(source, mods[source], set(mods), top_level), (
            f"{source} imports {target} at import"
        )


def string_imports(tree: ast.AST, known: set[str]) -> dict[int, str]:
    """Kit modules imported by name, by line: `import_module` / `__import__` / `find_spec` of an "art_lib..." or
    relative string (f-strings included), and, when `known` is given, any string constant that is a kit
    submodule's dotted name (a list of modules to import)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            arg = node.args[0] if node.args else None
            head = arg.values[0] if isinstance(arg, ast.JoinedStr) and arg.values else arg
            text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else None
            if func in ("import_module", "__import__", "find_spec") and text is not None:
                if text.startswith(("art_lib", ".")):
                    found[node.lineno] = f"{func}({text!r})"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            if node.value in known:
                found.setdefault(node.lineno, repr(node.value))
    return found


def test_string_import_finder_sees_each_form():
    known = {"art_lib.toy", "art_lib.tasks.maths"}
    code = (
        "import importlib\nimportlib.import_module('art_lib.toy')\n__import__('art_lib')\n"
        "import_module(f'art_lib.tasks.{x}')\nimport_module('.toy', 'art_lib')\nBUILTINS = ['art_lib.tasks.maths']\n"
        "importlib.import_module('vllm')\nname = 'art_lib'\n"
    )
    assert len(string_imports(ast.parse(code), known)) == 5


@pytest.mark.parametrize("folder", CODE_DIRS)
def test_no_module_of_the_kit_is_imported_by_name(folder):
    # Outside the kit, module names in strings are commands (`python -m art_lib.serve`) or test data.
    known = set(modules()) if folder == "art_lib" else set()
    found = {
        str(p.relative_to(ROOT)): hits
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (hits := string_imports(ast.parse(p.read_text(), str(p)), known))
    }
    assert not found, f"import these with an import statement instead: {found}"


def private_imports() -> set[tuple[str, str, str]]:
    """(importer, module, name) for every `from <kit module> import _name` across modules of the package."""
    mods = modules()
    found = set()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                stem = _from_stem(name, path, node)
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and stem in mods and stem != name:
                        found.add((name, stem, alias.name))
    return found


def test_no_private_name_is_imported_from_another_module():
    found = private_imports()
    assert found <= PRIVATE_IMPORTS_ALLOWED, (
        f"make these public or keep them local: {sorted(found - PRIVATE_IMPORTS_ALLOWED)}"
    )
    stale = PRIVATE_IMPORTS_ALLOWED - found
    assert not stale, f"no longer imported: drop from PRIVATE_IMPORTS_ALLOWED: {sorted(stale)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_under_the_size_limit(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (> {MAX_LINES}): split it by concept"


FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)


def function_lengths(tree: ast.AST, prefix: str) -> dict[str, int]:
    """Lines of every function and method in `tree` (nested ones too), by dotted name under `prefix`."""
    found = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = f"{scope}.{child.name}" if isinstance(child, (ast.ClassDef, *FUNCTION_NODES)) else scope
            if isinstance(child, FUNCTION_NODES):
                found[name] = child.end_lineno - child.lineno + 1
            visit(child, name)

    visit(tree, prefix)
    return found


def test_function_lengths_count_every_line_of_nested_functions_and_methods():
    code = (
        "@decorated\ndef f():\n    'Doc.'\n    def g():\n        return 1\n\n    return g\n\n\n"
        "class C:\n    async def m(self):\n        if True:\n            pass\n"
    )
    assert function_lengths(ast.parse(code), "mod") == {"mod.f": 6, "mod.f.g": 2, "mod.C.m": 3}


def test_no_function_is_longer_than_the_limit():
    lengths = {}
    for name, path in modules().items():
        lengths |= function_lengths(ast.parse(path.read_text(), str(path)), name)
    long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES}
    new = {name: n for name, n in long.items() if name not in LONG_FUNCTIONS_ALLOWED}
    assert not new, f"split these into named pieces of at most {MAX_FUNCTION_LINES} lines: {new}"
    stale = sorted(LONG_FUNCTIONS_ALLOWED - set(long))
    assert not stale, f"now {MAX_FUNCTION_LINES} lines or fewer (or gone): drop from LONG_FUNCTIONS_ALLOWED: {stale}"


#: The core path as the README lists it, in reading order (pixels -> processor -> model -> loss -> update -> score).
CORE_PATH = (
    "pixel_prompt.py",
    "preprocess.py",
    "prompting.py",
    "forward.py",
    "losses.py",
    "steps.py",
    "methods.py",
    "train.py",
    "evaluate.py",
    "scoring.py",
)


def test_the_core_path_is_ten_files_a_newcomer_reads_in_one_sitting():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reading the code") :]
    listed = [name for name in re.findall(r"`(\w+\.py)`", section)][: len(CORE_PATH)]
    assert tuple(listed) == CORE_PATH  # the README names them, in this order
    lines = sum(len((ROOT / "art_lib" / name).read_text().splitlines()) for name in CORE_PATH)
    assert len(CORE_PATH) <= 10 and lines <= 3200, lines

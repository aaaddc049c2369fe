"""The package's shape (issue 29, "The house"): its modules import each other without cycles, no module
reaches into another's `_private` names, and the top level stays small. Read from the source (ast)."""
from __future__ import annotations

import ast
from pathlib import Path

import videogan

PACKAGE = Path(videogan.__file__).resolve().parent
MAX_TOP_LEVEL_MODULES = 9


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: its body's, and those in its `if`/`try` blocks (not in
    functions or classes, nor under `if TYPE_CHECKING:`, which never runs)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not is_type_checking(node):
            found += module_level_imports(node.body) + module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            found += module_level_imports(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += module_level_imports(handler.body)
    return found


def imported_from(name: str, node: ast.ImportFrom) -> str:
    """The absolute module that `from ... import` in module `name` (a package or not) takes names from."""
    if not node.level:
        return node.module or ""
    is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules that importing it runs (a submodule's import runs its packages'
    __init__ too)."""
    found = modules()
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, (_, tree) in found.items():
        for node in module_level_imports(tree.body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = imported_from(name, node)
                # `from pkg import mod` imports the submodule; `from mod import thing` only mod
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in found else source
                           for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    step = ".".join(parts[:i])
                    # the packages above `name` are already being imported when it runs
                    if step in found and step != name and not name.startswith(step + "."):
                        graph[name].add(step)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_imports_without_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")  # not a dunder such as __version__


def test_no_module_imports_another_modules_private_names():
    """What is shared has a public name in the module it belongs to (not `from .x import _y`, not `x._y`)."""
    found = modules()
    offences = []
    for name, (path, tree) in found.items():
        package_aliases = set()  # local names bound to package modules: `from . import pretrained`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = imported_from(name, node)
                if source != "videogan" and not source.startswith("videogan."):
                    continue
                for alias in node.names:
                    if f"{source}.{alias.name}" in found:
                        package_aliases.add(alias.asname or alias.name)
                    elif is_private(alias.name):
                        where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                        offences.append(f"{where} imports {source}.{alias.name}")
            elif isinstance(node, ast.Import):
                package_aliases |= {a.asname for a in node.names
                                    if a.asname and a.name.split(".")[0] == "videogan"}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and is_private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in package_aliases):
                where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                offences.append(f"{where} uses {node.value.id}.{node.attr}")
    assert offences == []


def test_the_top_level_stays_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top

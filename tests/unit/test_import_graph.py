"""No import circles between the project's modules, counting imports made inside functions too:
a module that imports another inside a function to dodge a circle still forms one."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.servers import REPO_ROOT

PACKAGES = {"textgen": REPO_ROOT / "layers" / "textgen", "handlers": REPO_ROOT / "handlers"}


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (a package: its __init__)."""
    found = {}
    for name, root in packages.items():
        for path in root.rglob("*.py"):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of the others, wherever in the file they are written."""
    modules = module_files(packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from a.b import c`: module a.b.c if there is one, else (a name in) a.b
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each module that is on one (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_project_has_no_import_circles() -> None:
    graph = import_graph(PACKAGES)

    assert graph["textgen.service"]  # the graph was read: the service imports its parts
    assert circles(graph) == []


def test_a_circle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import a\n    return a\n")

    assert circles(import_graph({"pkg": package})) == [["pkg.a", "pkg.b", "pkg.a"]]

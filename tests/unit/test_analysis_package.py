"""mpihybrid.analysis: each concept has one home, so its modules import each other as a tree."""

import ast
from pathlib import Path

import mpihybrid.analysis

PACKAGE = Path(mpihybrid.analysis.__file__).parent


def imports() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions count too
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mpihybrid.analysis."):
                names.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = names
    return graph


def test_the_analysis_modules_import_each_other_without_a_cycle():
    graph = imports()
    assert graph["plots"] and graph["command"]  # the walk sees the imports
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for dependency in graph[module]:
                visit(dependency, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())

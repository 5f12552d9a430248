"""The package's floors: a part imports only parts on its own floor or below, and no two parts import each
other, directly or around a circle. Every import counts, lazy ones inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import llmpsych

PACKAGE = Path(llmpsych.__file__).parent
# Bottom to top. A part is a subpackage, or a module at the package root.
FLOORS = [
    {"errors", "yamlio", "hashing", "paths", "jsonl", "shipped", "config"},
    {"models"},
    {"training"},
    {"runtime"},
    {"judges"},
    {"datasets"},
    {"probes"},
    {"internals"},
    {"analysis"},
    {"export"},
    {"study", "api"},
    {"recipes"},
    {"experiment", "cross_prediction", "runs", "serve"},
    {"cli"},
    {"__main__", "__init__"},
]


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_edges(package: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> where, for every import of one llmpsych part by another."""
    edges: dict[tuple[str, str], list[str]] = {}
    for file in package.rglob("*.py"):
        relative = file.relative_to(package.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        home = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = home.split(".")[:len(home.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target == "llmpsych" or target.startswith("llmpsych."):
                    source, imported = part_of(module), part_of(target)
                    if source != imported:
                        edges.setdefault((source, imported), []).append(f"{relative}.py:{node.lineno}")
    return edges


def floor(part: str) -> int:
    for number, parts in enumerate(FLOORS):
        if part in parts:
            return number
    raise AssertionError(f"llmpsych/{part} is on no floor: add it to FLOORS in {Path(__file__).name}")


def test_every_part_is_on_a_floor():
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()))}
    for part in parts:
        floor(part)


def test_no_part_imports_a_part_above_it():
    upward = [f"{source} -> {imported} ({', '.join(where)})" for (source, imported), where in import_edges().items()
              if floor(imported) > floor(source)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def circles(edges) -> list[list[str]]:
    """Every group of parts that import each other around a circle (strongly connected, more than one part)."""
    graph: dict[str, set[str]] = {}
    for source, imported in edges:
        graph.setdefault(source, set()).add(imported)
        graph.setdefault(imported, set())
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {frozenset(n for n in graph if n in reach[node] and node in reach[n]) | {node} for node in graph}
    return sorted(sorted(group) for group in groups if len(group) > 1)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph[node]
    return seen


def test_no_parts_import_each_other_in_a_circle():
    found = circles(import_edges())
    assert not found, f"import circles: {found}"


def test_the_checker_finds_lazy_relative_imports_and_circles(tmp_path):
    package = tmp_path / "llmpsych"
    (package / "runtime").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "runtime" / "__init__.py").write_text("")
    (package / "runtime" / "executors.py").write_text("def f():\n    from ..recipes import get_recipe\n")
    (package / "recipes.py").write_text("from .runtime import executors\n")
    edges = import_edges(package)
    assert ("runtime", "recipes") in edges and ("recipes", "runtime") in edges
    assert floor("recipes") > floor("runtime")  # so the first edge is upward
    assert circles(edges) == [["recipes", "runtime"]]

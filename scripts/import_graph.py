"""Check kdscope's import graph: no cycle among its imports (module level, inside functions, or type-only under
TYPE_CHECKING, which a reader follows too), and type-only imports only within one package. `--edges` prints every
runtime import."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(runtime, type-only) kdscope modules `path` imports, resolved to the module, not the package, where one
    exists. Type-only imports sit under `if TYPE_CHECKING:` and never run."""
    runtime: set[str] = set()
    type_only: set[str] = set()

    def collect(node: ast.AST, into: set[str]) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for child in node.body:
                collect(child, type_only)
            return
        if isinstance(node, ast.Import):
            into.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise SystemExit(f"{path}: relative import; kdscope imports by absolute name")
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                into.add(candidate if candidate in modules else node.module)
        for child in ast.iter_child_nodes(node):
            collect(child, into)

    collect(ast.parse(path.read_text()), runtime)
    return runtime & modules, (type_only & modules) - runtime


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Runtime edges and type-only edges between kdscope's modules."""
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    runtime, type_only = {}, {}
    for path in paths:
        name = module_name(path)
        runtime[name], type_only[name] = (edges - {name} for edges in imports_of(path, modules))
    return runtime, type_only


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


LAYERS = ("core.version", "data", "core", "zoo", "train", "compress", "store", "explainers", "attacks", "compare",
          "results", "audit", "reports", "demo", "cli", "__main__")
"""Packages from the bottom up: each imports only those before it (and `kdscope` itself, whose public names load
lazily, imports nothing at runtime but the version; `python -m kdscope` runs the CLI)."""


def layer_of(module: str) -> int:
    inside = module.removeprefix("kdscope.")
    matches = [layer for layer in LAYERS if inside == layer or inside.startswith(f"{layer}.")]
    return LAYERS.index(max(matches, key=len)) if matches else -1


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def main() -> int:
    edges, type_only = graph()
    if "--edges" in sys.argv:
        for source in sorted(edges):
            for target in sorted(edges[source]):
                print(f"{source} -> {target}")
    every = {source: edges[source] | type_only[source] for source in edges}
    problems = [f"cycle: {' <-> '.join(component)}" for component in cycles(every)]
    problems += [f"type-only import across packages: {source} -> {target}" for source in sorted(type_only)
                 for target in sorted(type_only[source]) if package_of(source) != package_of(target)]
    problems += [f"imports a higher layer: {source} -> {target}" for source in sorted(edges) if source != "kdscope"
                 for target in sorted(edges[source]) if layer_of(target) > layer_of(source)]
    for problem in problems:
        print(problem)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} runtime imports, "
          f"{sum(map(len, type_only.values()))} type-only imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

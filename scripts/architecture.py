"""Draw facesim's components and their imports from the code into docs/architecture.md.

`python scripts/architecture.py` rewrites the part of docs/architecture.md between the markers;
`--check` only compares (exit 1 when the doc differs; tests/test_architecture_doc.py runs it).
An arrow A --> B means some module of A imports B (every import statement counts, also those inside
functions or under `if TYPE_CHECKING:`, and so do "facesim.b.module:function" entry-point strings).
The picture leaves out an arrow that a longer path already implies; the table under it lists every
component each one imports.

The one reader of facesim's imports: tests/test_layering.py checks the layering and the file-level
import graph with the functions below (`imported_names`, `component_of`, `file_imports`, `cycle`).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
DOC = Path("docs/architecture.md")
BEGIN = "<!-- architecture.py: begin (generated from the imports; do not edit by hand) -->"
END = "<!-- architecture.py: end -->"
# "facesim.gallery.cli:main": the CLI's and the containers' entry points, imported through importlib.
ENTRY_POINT = re.compile(r"(facesim(?:\.\w+)+):\w+")
CLI = "facesim"  # the roof: the `facesim` console script, folder facesim/
# Every component, each a top-level folder installed as facesim.<folder>, drawn from the bottom up.
COMPONENTS = (
    "contract",
    "faces",
    "storage",
    "cluster",
    "emulator",
    "gallery",
    "training",
    "tuning",
    "inference",
    "ui",
    "pipeline",
    "benchmarks",
    CLI,
)
Node = TypeVar("Node", str, Path)


def imported_names(source: str) -> Iterable[str]:
    """Every absolute module name an import statement or an entry-point string of `source` names."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from (entry_point[1] for entry_point in [ENTRY_POINT.fullmatch(node.value)] if entry_point)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "facesim":
            yield from (f"facesim.{alias.name}" for alias in node.names)  # from facesim import gallery
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def component_of(module: str) -> str | None:
    """`facesim.gallery.store` -> `gallery`; `facesim` and `facesim.cli` -> the CLI package; others None."""
    parts = module.split(".")
    if parts[0] != "facesim":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in COMPONENTS else CLI


def component_imports(repo: Path) -> dict[str, set[str]]:
    """component -> the other components its modules import."""
    graph: dict[str, set[str]] = {}
    for component in COMPONENTS:
        found: set[str] = set()
        for path in sorted((repo / component).rglob("*.py")):
            found.update(filter(None, map(component_of, imported_names(path.read_text()))))
        graph[component] = found - {component}
    return graph


def module_file(repo: Path, module: str) -> Path | None:
    """The source file of `facesim.a.b` (a/b.py or a/b/__init__.py; `facesim.cli` is facesim/cli.py)."""
    parts = module.split(".")
    if parts[0] != "facesim":
        return None
    component = component_of(module)
    rest = parts[2:] if component != CLI else parts[1:]
    base = (repo / str(component)).joinpath(*rest)
    for path in (base.with_suffix(".py") if rest else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def absolute_module(repo: Path, path: Path, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names, relative ones (`from .store import x`) resolved."""
    if node.level == 0:
        return node.module or ""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    package = ["facesim"] + (parts[1:-1] if parts[0] == CLI else parts[:-1])
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imported_files(repo: Path, path: Path) -> set[Path]:
    """The source files a file imports, anywhere in it (module level, functions, TYPE_CHECKING blocks)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [module_file(repo, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(repo, path, node)
            # `from facesim.a import b`: the module a.b when there is one, else a name defined in a
            targets = [module_file(repo, f"{module}.{alias.name}") or module_file(repo, module) for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target is not None and target != path)
    return found


def file_imports(repo: Path) -> dict[Path, set[Path]]:
    """Every source file of the components -> the source files it imports."""
    files = sorted(path for component in COMPONENTS for path in (repo / component).rglob("*.py"))
    return {path: imported_files(repo, path) for path in files}


def cycle(graph: Mapping[Node, Iterable[Node]]) -> list[Node]:
    """One cycle of the graph as a path (first == last), or [] when the arrows all point one way."""
    done: set[Node] = set()

    def visit(node: Node, path: list[Node]) -> list[Node]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for target in sorted(graph.get(node, ())):
            if found := visit(target, [*path, node]):
                return found
        done.add(node)
        return []

    for node in graph:
        if found := visit(node, []):
            return found
    return []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen


def implied_arrows_removed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The transitive reduction of an acyclic graph: keep A --> B unless A reaches B through another."""
    return {
        node: {target for target in targets if not any(target in reachable(graph, other) for other in targets)}
        for node, targets in graph.items()
    }


def summary(repo: Path, component: str) -> str:
    """The first sentence of the component's package docstring (its `__init__.py`)."""
    docstring = ast.get_docstring(ast.parse((repo / component / "__init__.py").read_text())) or ""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence.replace("|", "/")


def commands(repo: Path) -> list[tuple[str, str, str]]:
    """(name, "module:function", summary) of each `Subcommand(...)` in facesim/cli.py, in order."""
    found = []
    for node in ast.walk(ast.parse((repo / CLI / "cli.py").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Subcommand":
            name, target, text = (ast.literal_eval(argument) for argument in node.args)
            found.append((name, target, text))
    return found


def render(repo: Path) -> str:
    """The generated block: a Mermaid picture of the arrows, a table of every import, the commands."""
    graph = component_imports(repo)
    if found := cycle(graph):
        raise SystemExit(f"architecture.py: the components import each other in a cycle: {' -> '.join(found)}")
    arrows = implied_arrows_removed(graph)
    lines = [BEGIN, "```mermaid", "flowchart TD"]
    for component in reversed(COMPONENTS):
        lines += [f"    {component} --> {target}" for target in sorted(arrows[component], key=COMPONENTS.index)]
    lines += ["```", "", "| component | what it is (its package docstring) | imports | container entrypoint |"]
    lines.append("|---|---|---|---|")
    for component in COMPONENTS:
        name = f"`{component}/` (the CLI)" if component == CLI else f"`{component}/`"
        imports = ", ".join(sorted(graph[component], key=COMPONENTS.index)) or "nothing of facesim"
        module = "facesim" if component == CLI else f"facesim.{component}"
        entrypoint = f"`python -m {module}`" if (repo / component / "__main__.py").is_file() else "-"
        lines.append(f"| {name} | {summary(repo, component)} | {imports} | {entrypoint} |")
    lines += ["", "| command | what it does | runs |", "|---|---|---|"]
    lines += [f"| `facesim {name}` | {text} | `{target}` |" for name, target, text in commands(repo)]
    lines.append(END)
    return "\n".join(lines)


def with_block(doc: str, block: str) -> str:
    """`doc` with the text between the markers (markers included) replaced by `block`."""
    if doc.count(BEGIN) != 1 or doc.count(END) != 1:
        raise SystemExit(f"architecture.py: {DOC} must hold each marker once:\n{BEGIN}\n{END}")
    head, rest = doc.split(BEGIN)
    return head + block + rest.split(END)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the doc is stale")
    parser.add_argument("--repo", type=Path, default=REPO, help="the repository (default: %(default)s)")
    args = parser.parse_args(argv)
    path = args.repo / DOC
    current = path.read_text()
    wanted = with_block(current, render(args.repo))
    if current == wanted:
        return 0
    if args.check:
        print(f"{DOC} does not match the imports: run `python scripts/architecture.py`", file=sys.stderr)
        return 1
    path.write_text(wanted)
    print(f"{DOC} redrawn")
    return 0


if __name__ == "__main__":
    sys.exit(main())

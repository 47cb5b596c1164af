"""Dependencies point one way (docs/architecture.md): a component imports only the components
below it, never one above, and no source file imports itself through others. The checks read every
import statement, also those inside functions and under `if TYPE_CHECKING:`."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# component -> the components it may import (besides itself); `facesim` (the CLI) may import any.
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "faces": {"contract"},
    "storage": {"contract", "faces"},
    "cluster": {"contract", "faces", "storage"},
    "emulator": {"contract", "faces", "storage", "cluster"},
    "gallery": {"contract", "faces", "storage"},
    "training": {"contract", "faces", "storage", "cluster"},
    "tuning": {"contract", "faces", "storage", "cluster", "training"},
    "inference": {"contract", "faces", "storage", "cluster", "gallery"},
    "ui": {"contract", "cluster"},
    "pipeline": {"contract", "faces", "storage", "cluster", "gallery", "training", "tuning", "inference"},
    "benchmarks": {"contract", "faces", "storage", "cluster", "gallery", "training", "tuning", "inference"},
}


CLI = "facesim (the CLI package)"


def imported_components(source: str) -> set[str]:
    """The facesim components (`facesim.<name>` or the CLI package `facesim`) a module imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "facesim":
            names = [f"facesim.{alias.name}" for alias in node.names]  # from facesim import inference
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "facesim":
                continue
            found.add(parts[1] if len(parts) > 1 and parts[1] in ALLOWED else CLI)
    return found


def layering_violations(repo: Path) -> list[str]:
    """`path: imports X` for every import of a component above (or of the CLI package)."""
    violations = []
    for component, allowed in ALLOWED.items():
        for path in sorted((repo / component).rglob("*.py")):
            for imported in sorted(imported_components(path.read_text()) - allowed - {component}):
                violations.append(f"{path.relative_to(repo)}: imports {imported}")
    return violations


def test_every_component_imports_only_components_below_it() -> None:
    assert layering_violations(REPO) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    for component in ALLOWED:
        (tmp_path / component).mkdir()
    (tmp_path / "storage" / "paths.py").write_text("from facesim.training.config import TrainConfig\n")
    (tmp_path / "faces" / "align.py").write_text("def f():\n    import facesim.cli\n")
    (tmp_path / "ui" / "app.py").write_text("from facesim import inference\nfrom facesim.contract import api\n")
    assert layering_violations(tmp_path) == [
        f"faces/align.py: imports {CLI}",
        "storage/paths.py: imports training",
        "ui/app.py: imports inference",
    ]


def module_file(repo: Path, module: str) -> Path | None:
    """The source file of `facesim.a.b` (a/b.py or a/b/__init__.py; `facesim.cli` is facesim/cli.py)."""
    parts = module.split(".")
    if parts[0] != "facesim":
        return None
    folder = repo / "facesim" if len(parts) == 1 or parts[1] not in ALLOWED else repo / parts[1]
    rest = parts[1:] if folder.name == "facesim" else parts[2:]
    base = folder.joinpath(*rest)
    for path in (base.with_suffix(".py") if rest else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def absolute_module(repo: Path, path: Path, node: ast.ImportFrom) -> str:
    """The module a `from ... import` names, relative ones (`from .store import x`) resolved."""
    if node.level == 0:
        return node.module or ""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    package = ["facesim"] + (parts[1:-1] if parts[0] == "facesim" else parts[:-1])
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


def source_files(repo: Path) -> list[Path]:
    return sorted(path for folder in [*ALLOWED, "facesim"] for path in (repo / folder).rglob("*.py"))


def import_cycle(repo: Path) -> list[str]:
    """One cycle of file imports (`a.py -> b.py -> a.py`, as paths), or [] when the graph has none."""
    graph = {path: imported_files(repo, path) for path in source_files(repo)}
    state: dict[Path, str] = {}  # "open" while on the depth-first path, "done" after

    def visit(path: Path, trail: list[Path]) -> list[Path]:
        state[path] = "open"
        for target in sorted(graph[path]):
            if state.get(target) == "open":
                return [*trail[trail.index(target) :], target]
            if target not in state and (cycle := visit(target, [*trail, target])):
                return cycle
        state[path] = "done"
        return []

    for start in graph:
        if start not in state and (cycle := visit(start, [start])):
            return [str(path.relative_to(repo)) for path in cycle]
    return []


def test_no_file_imports_itself_through_others() -> None:
    cycle = import_cycle(REPO)
    assert cycle == [], "import cycle: " + " -> ".join(cycle)


def test_a_planted_cycle_is_caught(tmp_path: Path) -> None:
    for component in [*ALLOWED, "facesim"]:
        (tmp_path / component).mkdir()
    (tmp_path / "gallery" / "store.py").write_text("import numpy\nfrom facesim.gallery import index\n")
    (tmp_path / "gallery" / "index.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from facesim.gallery.search import State\n"
    )
    (tmp_path / "gallery" / "search.py").write_text("def f():\n    from facesim.gallery.store import g\n")
    (tmp_path / "ui" / "app.py").write_text("from facesim.gallery.store import g\n")  # on no cycle
    assert import_cycle(tmp_path) == ["gallery/index.py", "gallery/search.py", "gallery/store.py", "gallery/index.py"]
    (tmp_path / "gallery" / "search.py").write_text("def f():\n    pass\n")
    assert import_cycle(tmp_path) == []
    (tmp_path / "gallery" / "search.py").write_text("from . import store\n")  # relative imports count too
    assert import_cycle(tmp_path) == ["gallery/index.py", "gallery/search.py", "gallery/store.py", "gallery/index.py"]


def test_the_formatter_has_no_escapes() -> None:
    """Style lives in pyproject.toml's [tool.ruff]; no file opts out of the formatter."""
    escapes = ("fmt: " + "skip", "fmt: " + "off")
    found = [
        str(path.relative_to(REPO))
        for component in [*ALLOWED, "facesim", "tests"]
        for path in (REPO / component).rglob("*.py")
        if any(escape in path.read_text() for escape in escapes)
    ]
    assert found == []

"""Dependencies point one way (docs/architecture.md): a component imports only the components
below it, never one above. The check reads every import statement, also those inside functions."""

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

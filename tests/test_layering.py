"""Dependencies point one way (docs/architecture.md): a component imports only the components
below it, never one above, and no source file imports itself through others. The checks read every
import statement, also those inside functions and under `if TYPE_CHECKING:`."""

from __future__ import annotations

import runpy
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


ARCHITECTURE = runpy.run_path(str(REPO / "scripts" / "architecture.py"))  # the one reader of imports
CLI = ARCHITECTURE["CLI"]


def imported_components(source: str) -> set[str]:
    """The facesim components (`facesim.<name>` or the CLI package `facesim`) a module imports."""
    return {
        component
        for component in map(ARCHITECTURE["component_of"], ARCHITECTURE["imported_names"](source))
        if component
    }


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


def import_cycle(repo: Path) -> list[str]:
    """One cycle of file imports (`a.py -> b.py -> a.py`, as paths), or [] when the graph has none."""
    return [str(path.relative_to(repo)) for path in ARCHITECTURE["cycle"](ARCHITECTURE["file_imports"](repo))]


def test_the_rules_name_every_component() -> None:
    assert set(ALLOWED) | {CLI} == set(ARCHITECTURE["COMPONENTS"])


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

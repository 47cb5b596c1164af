"""docs/architecture.md cannot drift: its picture is the one scripts/architecture.py draws from the
imports, it stays one page, and every test its rules name exists."""

from __future__ import annotations

import re
import runpy
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
ARCHITECTURE = runpy.run_path(str(REPO / "scripts" / "architecture.py"))


def test_the_picture_is_the_one_the_imports_draw() -> None:
    assert ARCHITECTURE["main"](["--check"]) == 0, "run `python scripts/architecture.py` and commit the doc"


def test_the_doc_is_one_page() -> None:
    assert len(DOC.read_text().splitlines()) <= 200


def test_every_test_the_rules_name_exists() -> None:
    cited = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", DOC.read_text())
    assert len(cited) >= 10
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not (REPO / path).is_file() or not re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M)
    ]
    assert missing == []


def _copy_of_the_tree(tmp_path: Path) -> Path:
    for component in ARCHITECTURE["COMPONENTS"]:
        shutil.copytree(REPO / component, tmp_path / component, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "docs").mkdir()
    shutil.copy(DOC, tmp_path / "docs" / "architecture.md")
    return tmp_path


def test_a_new_import_changes_the_picture_and_the_check_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _copy_of_the_tree(tmp_path)
    main = ARCHITECTURE["main"]
    # A lazy import inside a function counts: ui now reaches the gallery.
    (repo / "ui" / "late.py").write_text("def f():\n    from facesim.gallery import store\n")
    assert main(["--check", "--repo", str(repo)]) == 1
    assert "run `python scripts/architecture.py`" in capsys.readouterr().err
    assert main(["--repo", str(repo)]) == 0
    redrawn = (repo / "docs" / "architecture.md").read_text()
    assert "    ui --> gallery" in redrawn
    assert re.search(r"^\| `ui/` \|.*\| contract, cluster, gallery \| `python -m facesim.ui` \|$", redrawn, re.M)
    assert main(["--check", "--repo", str(repo)]) == 0


def test_an_import_cycle_between_components_is_refused(tmp_path: Path) -> None:
    repo = _copy_of_the_tree(tmp_path)
    (repo / "contract" / "upward.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    import facesim.ui\n")
    with pytest.raises(SystemExit, match="cycle: contract -> ui -> cluster -> contract"):
        ARCHITECTURE["main"](["--check", "--repo", str(repo)])


def test_entry_point_strings_count_as_imports() -> None:
    names = list(ARCHITECTURE["imported_names"]('TARGET = "facesim.gallery.cli:main"\nNOTE = "facesim rocks"\n'))
    assert names == ["facesim.gallery.cli"]


def test_importing_a_component_from_the_package_is_an_arrow_to_it_not_to_the_cli() -> None:
    component_of, imported_names = ARCHITECTURE["component_of"], ARCHITECTURE["imported_names"]
    assert {component_of(name) for name in imported_names("from facesim import gallery\n")} == {"gallery"}
    assert {component_of(name) for name in imported_names("from facesim.cli import main\n")} == {"facesim"}


def test_the_reduction_keeps_only_arrows_no_longer_path_draws() -> None:
    graph = {"top": {"middle", "bottom"}, "middle": {"bottom"}, "bottom": set()}
    assert ARCHITECTURE["implied_arrows_removed"](graph) == {"top": {"middle"}, "middle": {"bottom"}, "bottom": set()}


def test_the_commands_table_is_the_clis_dispatch_table() -> None:
    from facesim.cli import SUBCOMMANDS

    table = [(command.name, command.target, command.summary) for command in SUBCOMMANDS]
    assert ARCHITECTURE["commands"](REPO) == table

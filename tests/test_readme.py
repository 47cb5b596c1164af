"""The README starts like the best ones: what facesim is, a picture, the two commands, then figures
and links; the manual lives in docs/ (issue 23)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_SCREEN = 40


def test_readme_is_short_and_its_first_screen_has_the_picture_and_both_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    first_screen = "\n".join(lines[:FIRST_SCREEN])
    assert "![" in first_screen and "](docs/img/search.png)" in first_screen
    assert "bash scripts/run-main.sh" in first_screen and "bash scripts/test.sh" in first_screen


def test_readme_links_and_picture_exist() -> None:
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert "docs/usage.md" in targets and "docs/results.md" in targets
    assert [target for target in targets if not (REPO / target).exists()] == []

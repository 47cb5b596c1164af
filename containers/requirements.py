"""Print the requirements of facesim's core and the given extras (pyproject.toml), one a line,
with the extras' own `facesim[...]` references expanded. The images install these first, in a
layer of their own, so that a change to facesim's sources reinstalls only facesim itself; and
`facesim images build` fills its wheelhouse from the same list. Standard library only (Python 3.11+).

    python containers/requirements.py [--pyproject FILE] EXTRA...
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import tomllib

SELF = re.compile(r"facesim\[([^\]]*)\]\s*$")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """Core dependencies, then each extra's (recursively), without repeats, in order."""
    found: list[str] = []
    seen_extras: set[str] = set()

    def add(requirement: str) -> None:
        if reference := SELF.match(requirement):
            for extra in reference.group(1).split(","):
                expand(extra.strip())
        elif requirement not in found:
            found.append(requirement)

    def expand(extra: str) -> None:
        if extra in seen_extras:
            return
        optional = project.get("optional-dependencies", {})
        if extra not in optional:
            raise SystemExit(f"requirements.py: pyproject.toml has no extra {extra!r} (it has {', '.join(optional)})")
        seen_extras.add(extra)
        for requirement in optional[extra]:
            add(requirement)

    for requirement in project.get("dependencies", []):
        add(requirement)
    for extra in extras:
        expand(extra)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("extras", nargs="+", metavar="EXTRA")
    args = parser.parse_args()
    project = tomllib.loads(args.pyproject.read_text())["project"]
    print("\n".join(requirements(project, args.extras)))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The type checker (mypy, configured in pyproject.toml's [tool.mypy]) over the CLI package and every
# component: 0 errors expected. Extra arguments go to mypy.
# mypy cannot follow setuptools' editable finder (facesim.<component> lives in ./<component>), so the
# installed layout is rebuilt as symbolic links under build/typecheck/ from pyproject.toml's
# [tool.setuptools.package-dir] and checked there; errors name files as facesim/<component>/....
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree/facesim"  # the links only: mypy's cache beside them makes a rerun take seconds
.venv/bin/python - "$tree" <<'PY'
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: mypy depends on tomli there
    import tomli as tomllib

tree = Path(sys.argv[1]) / "facesim"
tree.mkdir(parents=True)
folders = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for entry in Path(folders["facesim"]).iterdir():  # the CLI package's own modules
    (tree / entry.name).symlink_to(entry.resolve())
for package, folder in folders.items():
    if package.count(".") == 1:  # a component; its subpackages come with its folder
        (tree / package.split(".")[1]).symlink_to(Path(folder).resolve())
PY
cd "$tree"
exec ../../.venv/bin/python -m mypy --config-file ../../pyproject.toml "$@"

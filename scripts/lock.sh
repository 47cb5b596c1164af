#!/usr/bin/env bash
# Rewrite constraints.txt from the current .venv (after changing pyproject.toml's dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Lock: the exact versions tested together (pip check clean). Regenerate: scripts/lock.sh"
  .venv/bin/python -m pip freeze --exclude-editable | grep -v -i '^facesim'
} > constraints.txt

#!/usr/bin/env bash
# Create .venv/ at the repo root and install facesim with every component and the test tools,
# pinned by constraints.txt. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all,dev]"
.venv/bin/python -m pip check
echo "facesim is installed in .venv/ (activate: source .venv/bin/activate)"

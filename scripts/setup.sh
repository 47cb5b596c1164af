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
# The PostgreSQL server the gallery tests start in a temporary directory (Debian's package).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
  else
    echo "warning: no PostgreSQL server; the postgres tests need it (apt-get install postgresql-15)" >&2
  fi
fi
echo "facesim is installed in .venv/ (activate: source .venv/bin/activate)"

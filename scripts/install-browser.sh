#!/usr/bin/env bash
# Headless Chromium for the UI's end-to-end tests, from Debian's packages (these machines cannot
# download browser builds, so Playwright drives the system Chromium through executable_path).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-browser: Chromium is missing and installing it needs root: run 'sudo apt-get install -y chromium'," \
    "or skip the browser tests: .venv/bin/python -m pytest -m 'not browser'" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

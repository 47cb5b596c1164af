#!/usr/bin/env bash
# System tools the tests need, from Debian's packages: headless Chromium for the UI's end-to-end
# tests (these machines cannot download browser builds, so Playwright drives the system Chromium
# through executable_path), shellcheck for the shell scripts' lint test, and the PostgreSQL server
# that the shared-gallery tests start in a temporary directory.
set -euo pipefail
missing=()
for tool in chromium shellcheck; do # each command comes in the Debian package of the same name
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql-15)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-tools: ${missing[*]} missing and installing needs root: run" \
    "'sudo apt-get install -y ${missing[*]}' (or leave out the browser tests: -m 'not browser')" >&2
  exit 1
fi
echo "install-tools: installing ${missing[*]} (apt)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

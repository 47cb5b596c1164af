#!/usr/bin/env bash
# System tools the tests need, from Debian's packages: headless Chromium for the UI's end-to-end
# tests (these machines cannot download browser builds, so Playwright drives the system Chromium
# through executable_path) and shellcheck for the shell scripts' lint test.
set -euo pipefail
missing=()
for tool in chromium shellcheck; do # each command comes in the Debian package of the same name
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-tools: ${missing[*]} missing; run 'sudo apt-get install -y ${missing[*]}' for the tests" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null

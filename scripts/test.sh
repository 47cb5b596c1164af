#!/usr/bin/env bash
# Set up (.venv/ at the repo root, every component and test tool) and run the whole test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k gallery -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-tools.sh
# TensorFlow's C++ logging is noise in test output.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Set up (.venv/ at the repo root, every component and test tool) and run the whole test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k gallery -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Style and types first (fail fast, ~1 min): lint and formatting as pyproject.toml's [tool.ruff] sets
# them, then mypy over every component (scripts/typecheck.sh; the same checks as .pre-commit-config.yaml).
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check --quiet .
bash scripts/typecheck.sh
bash scripts/install-tools.sh
# The container tests' images (-m container): the base made here, then the images the tests run.
# Both are cached on this machine (the base image, podman's layers, the wheelhouse): a rerun takes seconds.
bash scripts/base-image.sh
SECONDS=0
.venv/bin/facesim images build trainer predictor ui
echo "test.sh: images ready in ${SECONDS} s"
# TensorFlow's C++ logging is noise in test output.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m pytest "$@"

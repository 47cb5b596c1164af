#!/usr/bin/env bash
# Mutation testing of the core modules, each against only its own tests (mutmut, pinned below).
#   scripts/mutation.sh [MODULE...]     MODULE: align metrics verification calibrate gallery gallery_postgres losses
# Each module runs in its own scratch copy under $MUTATION_DIR (default /tmp/facesim-mutation): the
# components assembled as the facesim package they install as, the tests, and a [tool.mutmut] section.
# A module stops after $MUTATION_MINUTES (default 20) minutes; mutants not reached then count as not
# checked. Prints killed/total per module and writes each module's survivors to
# $MUTATION_DIR/<module>/survivors.txt (`mutmut show NAME` in $MUTATION_DIR/<module> shows one).
# Not part of CI (docs/results.md has the figures and how long each module took).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${MUTATION_DIR:-/tmp/facesim-mutation}
MINUTES=${MUTATION_MINUTES:-20}
MUTMUT_VERSION=3.8.1
export FACESIM_SHARED=${FACESIM_SHARED:-$REPO/../shared}

declare -A SOURCE=(
  [align]=faces/align.py
  [metrics]=contract/metrics.py
  [verification]=training/verification.py
  [calibrate]=gallery/calibrate.py
  [gallery]=gallery/store.py
  [gallery_postgres]=gallery/postgres.py
  [losses]=training/losses.py
)
declare -A TESTS=(
  [align]="tests/faces/test_align.py tests/faces/test_dlib_chip.py"
  [metrics]=tests/contract/test_metrics.py
  [verification]=tests/training/test_evaluation.py
  [calibrate]=tests/gallery/test_calibrate_units.py
  [gallery]="tests/inference/test_gallery.py tests/inference/test_gallery_changes.py"
  [gallery_postgres]="tests/inference/test_gallery_postgres.py tests/inference/test_gallery_changes.py"
  [losses]=tests/training/test_losses.py
)
modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=(align metrics verification calibrate gallery gallery_postgres losses)

if ! .venv/bin/python -c "import mutmut" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet -c constraints.txt "mutmut==$MUTMUT_VERSION"
fi

toml_list() { printf '"%s", ' "$@" | sed 's/, $//'; }

for module in "${modules[@]}"; do
  source_file=${SOURCE[$module]:?unknown module $module (one of: ${!SOURCE[*]})}
  work=$OUT/$module
  rm -rf "$work"
  # mutants/ exists before Python starts, or its import system caches "no such directory" for PYTHONPATH.
  mkdir -p "$work/facesim" "$work/mutants"
  # The package as installed: facesim/ itself, each component folder as facesim/<component>.
  cp -r facesim/. "$work/facesim/"
  for component in cluster contract faces inference pipeline storage training tuning ui; do
    cp -r "$component" "$work/facesim/$component"
  done
  cp -r tests "$work/tests"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  # shellcheck disable=SC2086  # TESTS holds space-separated paths
  cat pyproject.toml - >"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["facesim"]
only_mutate = ["facesim/$source_file"]
pytest_add_cli_args_test_selection = [$(toml_list ${TESTS[$module]})]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
process_isolation = "forkserver"
EOF
  echo "mutation: $module (facesim/$source_file against ${TESTS[$module]}), at most $MINUTES min"
  started=$SECONDS
  # PYTHONPATH: the subprocesses that tests start import the mutated copy too.
  (cd "$work" && PYTHONPATH=$work/mutants timeout --signal=INT "${MINUTES}m" \
    "$REPO/.venv/bin/mutmut" run --max-children 1 >"$work/run.log" 2>&1) || true
  (cd "$work" && "$REPO/.venv/bin/mutmut" results --all true >"$work/results.txt" 2>&1) || true
  grep -E ': survived$' "$work/results.txt" | sed 's/: survived$//; s/^ *//' >"$work/survivors.txt" || true
  count() { grep -cE ": ($1)\$" "$work/results.txt" || true; }
  echo "mutation: $module killed=$(count 'killed|timeout') total=$(count '[a-z ]+') survived=$(count survived)" \
    "no_tests=$(count 'no tests') not_checked=$(count 'not checked') seconds=$((SECONDS - started))"
done

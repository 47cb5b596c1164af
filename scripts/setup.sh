#!/usr/bin/env bash
# Create .venv/ at the repo root and install facesim with every component and the test tools,
# pinned by constraints.txt. Prints a few lines; pip's output goes to .venv/setup.log (shown if
# pip fails). A second run with the same pyproject.toml and constraints.txt only checks (~1 s).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOG=.venv/setup.log
STAMP=.venv/.facesim-installed

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv/ with $("$PYTHON" --version 2>&1)"
  if ! "$PYTHON" -m venv .venv; then
    echo "setup: '$PYTHON -m venv' failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)," \
      "or point PYTHON at a Python 3.10-3.13" >&2
    rm -rf .venv
    exit 1
  fi
fi
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$wanted" ]] && .venv/bin/python -c 'import facesim' 2>/dev/null; then
  echo "setup: .venv/ is up to date"
  exit 0
fi

pip_quietly() {
  if ! .venv/bin/python -m pip "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "setup: 'pip $*' failed; full output in $LOG" >&2
    exit 1
  fi
}
: >"$LOG"
echo "setup: installing facesim and its dependencies into .venv/ (the first time: ~5 minutes, 2.5 GB; log: $LOG)"
pip_quietly install --upgrade pip
pip_quietly install -c constraints.txt -e ".[all,dev]"
# face_recognition (dlib): the side-by-side baseline of `facesim bench accuracy` and the reference of
# the dlib-chip tests. Prebuilt wheels, no compiling (~30 s): dlib-bin provides the `dlib` module;
# face_recognition's metadata names the `dlib` source package, hence --no-deps, and pip check must
# be clean but for that one requirement. setuptools<81 still has pkg_resources, which it imports.
pip_quietly install -c constraints.txt dlib-bin face_recognition_models 'setuptools<81'
pip_quietly install -c constraints.txt --no-deps face_recognition
if ! problems=$(.venv/bin/python -m pip check 2>&1); then
  if grep -v '^face-recognition [0-9.]* requires dlib, which is not installed\.$' <<<"$problems"; then
    echo "setup: 'pip check' failed (above)" >&2
    exit 1
  fi
fi
echo "$wanted" >"$STAMP"
echo "setup: facesim is installed in .venv/ (activate: source .venv/bin/activate)"

#!/usr/bin/env bash
# The main job: set up .venv/, then run the local pipeline end to end from a local copy of LFW.
#   scripts/run-main.sh --data ../shared/data/lfw      (or FACESIM_LFW=../shared/data/lfw)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${FACESIM_LFW:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --data) DATA=$2; shift 2 ;;
    *) echo "usage: scripts/run-main.sh --data LFW_DIR" >&2; exit 2 ;;
  esac
done
if [[ -z $DATA ]]; then
  .venv/bin/facesim data fetch lfw --out .facesim/data/lfw
  DATA=.facesim/data/lfw
fi
.venv/bin/facesim data prepare --data "$DATA" --out .facesim/cache/lfw
echo "main job: the data step is done; training, serving and the UI are not built yet" >&2
exit 3

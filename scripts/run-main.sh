#!/usr/bin/env bash
# The main job: set up .venv/, run the whole pipeline locally (prepare -> train -> evaluate ->
# gallery -> register), then serve the model (port 8080) and the UI (port 5000) until Ctrl-C.
# A rerun with the same data and settings serves what is registered without training again.
#   scripts/run-main.sh --data ../shared/data/lfw        (or FACESIM_LFW=../shared/data/lfw)
#   scripts/run-main.sh --data DIR --retrain             (run the pipeline even when nothing changed)
#   scripts/run-main.sh --serve-only                     (serve the latest registered model and gallery)
#   scripts/run-main.sh --data DIR --no-serve            (stop after the pipeline)
#   scripts/run-main.sh --data DIR -- --tune --epochs 5  (after --: more `facesim pipeline run` options)
#   scripts/run-main.sh --data DIR -- --init scratch     (train from scratch instead of fine-tuning dlib's network)
# Without --data or FACESIM_LFW, LFW is downloaded first (`facesim data fetch lfw`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --data DIR  --retrain  --serve-only  --no-serve  --port P (predictor, default 8080)" \
    " --ui-port P (default 5000)"
}

DATA=${FACESIM_LFW:-}
SERVE=1
REUSE=1       # --retrain: 0
SERVE_ONLY=0  # --serve-only: 1
PREDICTOR_PORT=8080
UI_PORT=5000
PIPELINE_OPTIONS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --data) DATA=${2:?--data needs a directory}; shift 2 ;;
    --no-serve) SERVE=0; shift ;;
    --retrain) REUSE=0; shift ;;
    --serve-only) SERVE_ONLY=1; shift ;;
    --port) PREDICTOR_PORT=${2:?--port needs a number}; shift 2 ;;
    --ui-port) UI_PORT=${2:?--ui-port needs a number}; shift 2 ;;
    --) shift; PIPELINE_OPTIONS=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run-main: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ $SERVE_ONLY -eq 1 && $SERVE -eq 0 ]]; then
  echo "run-main: --serve-only and --no-serve leave nothing to do" >&2
  exit 2
fi

bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

# The pretrained face network the pipeline starts from (--init faceapi-resnet): beside the repo when
# present; otherwise the cache under $FACESIM_HOME, or `npm pack` fetches it (training/pretrained.py).
if [[ -z ${FACESIM_FACEAPI_WEIGHTS:-} && -f ../shared/models/faceapi-resnet/face_recognition_model.bin ]]; then
  export FACESIM_FACEAPI_WEIGHTS=$PWD/../shared/models/faceapi-resnet
fi

# The pipeline, unless --serve-only; with --reuse (the default) it is skipped when the latest
# registered model and gallery come from a run with the same data and settings.
run_pipeline() {
  if [[ -z $DATA ]]; then
    DATA=$(.venv/bin/python -c 'from facesim.storage.paths import facesim_home; print(facesim_home() / "data" / "lfw")')
    .venv/bin/python -m facesim data fetch lfw --out "$DATA"
  fi
  local reuse=()
  [[ $REUSE -eq 1 ]] && reuse=(--reuse)
  local started
  started=$(date +%s)
  .venv/bin/python -m facesim pipeline run --data "$DATA" ${reuse[@]+"${reuse[@]}"} \
    ${PIPELINE_OPTIONS[@]+"${PIPELINE_OPTIONS[@]}"}
  echo "main job: pipeline took $(( $(date +%s) - started )) s"
}

if [[ $SERVE_ONLY -eq 0 ]]; then
  run_pipeline
fi
if [[ $SERVE -eq 0 ]]; then
  exit 0
fi

PIDS=()
# shellcheck disable=SC2317  # reached through the EXIT trap
stop() {
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

# Gallery writes (enrol, remove) need a token: a fresh one per run unless given, for both servers.
export FACESIM_ADMIN_TOKEN=${FACESIM_ADMIN_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')}
# The latest registered model and gallery: what the pipeline's deploy step registered.
.venv/bin/python -m facesim serve --port "$PREDICTOR_PORT" &
PIDS+=($!)
PREDICTOR=http://127.0.0.1:$PREDICTOR_PORT
for _ in $(seq 180); do
  if .venv/bin/python -c "import requests, sys; sys.exit(not requests.get('$PREDICTOR/v2/health/ready', timeout=2).ok)" 2>/dev/null; then
    break
  fi
  kill -0 "${PIDS[0]}" 2>/dev/null || { echo "run-main: facesim serve exited (see above)" >&2; exit 1; }
  sleep 1
done
.venv/bin/python -m facesim ui --predictor "$PREDICTOR" --port "$UI_PORT" &
PIDS+=($!)
echo
echo "main job: predictor  $PREDICTOR  (POST /v1/models/facenet:predict)"
echo "main job: web UI     http://127.0.0.1:$UI_PORT"
echo "main job: Ctrl-C stops both"
wait -n || true
echo "run-main: the predictor or the UI stopped; stopping both" >&2
exit 1

#!/usr/bin/env bash
# End-to-end check of the cluster path on a throw-away kind cluster (docs/cluster.md, "kind e2e").
#
# Needs: Docker, kind, kubectl, helm, and this repository set up (`bash scripts/setup.sh`).
# It has NOT been run on the machine it was written on (no Docker there): read it before you run it.
#
#   LFW_DIR=/data/lfw bash scripts/kind-e2e.sh      # LFW_DIR: an LFW-layout root (people.txt, pairs.txt)
#   KEEP_CLUSTER=1 ...                               # keep the cluster afterwards (default: delete it)
#
# Steps: kind cluster -> csi-driver-nfs + an in-cluster NFS server -> Training Operator, Katib,
# cert-manager + KServe, standalone KFP (the versions docs/cluster.md names) -> the four images built
# and loaded -> `kubectl apply --dry-run=server` on every rendered manifest -> a 2-worker TFJob, a
# 2-trial Experiment, the InferenceService answering `facesim predict`, a pipeline run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions: the ones docs/cluster.md installs (tests/test_scripts.py keeps them equal).
CSI_DRIVER_NFS_VERSION=4.12.1
TRAINING_OPERATOR_VERSION=v1.9.0
KATIB_VERSION=v0.18.0
CERT_MANAGER_VERSION=v1.16.1
KSERVE_VERSION=v0.20.0
PIPELINE_VERSION=2.17.3

CLUSTER=${CLUSTER:-facesim-e2e}
NS=kubeflow # standalone KFP runs its steps here, so the steps' TFJobs, Experiments and PVCs live here too
REGISTRY=facesim.local
TAG=e2e
WORK=$(mktemp -d)
FACESIM=(.venv/bin/python -m facesim)
NFS_SERVER=nfs-server.default.svc.cluster.local
TINY=(--architecture tiny --max-identities 20 --val-pairs 40 --test-pairs 40)
LFW_DIR=${LFW_DIR:-}

step() { printf '\n==> %s\n' "$*"; }

cleanup() {
  local code=$?
  jobs -p | xargs -r kill 2>/dev/null || true # port-forwards
  if [[ -z ${KEEP_CLUSTER:-} ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is missing; install it first" >&2; exit 2; }
  done
}

create_cluster() {
  step "kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
}

install_storage() {
  step "csi-driver-nfs $CSI_DRIVER_NFS_VERSION and an in-cluster NFS server"
  helm repo add csi-driver-nfs https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/master/charts
  helm install csi-driver-nfs csi-driver-nfs/csi-driver-nfs --namespace kube-system \
    --version "$CSI_DRIVER_NFS_VERSION" --wait
  kubectl apply -f "https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/v$CSI_DRIVER_NFS_VERSION/deploy/example/nfs-provisioner/nfs-server.yaml"
  kubectl -n default rollout status deployment/nfs-server --timeout=300s
}

install_operators() {
  step "Training Operator $TRAINING_OPERATOR_VERSION, Katib $KATIB_VERSION"
  kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=$TRAINING_OPERATOR_VERSION"
  kubectl apply --server-side -k "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=$KATIB_VERSION"

  step "cert-manager $CERT_MANAGER_VERSION, KServe $KSERVE_VERSION (Standard mode)"
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  kubectl -n cert-manager rollout status deployment/cert-manager-webhook --timeout=300s
  kubectl apply --server-side -f "https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION/kserve.yaml"
  kubectl -n kserve rollout status deployment/kserve-controller-manager --timeout=300s
  kubectl apply --server-side -f "https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION/kserve-cluster-resources.yaml"

  step "Kubeflow Pipelines $PIPELINE_VERSION (standalone)"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$PIPELINE_VERSION"
  kubectl wait --for condition=established --timeout=60s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$PIPELINE_VERSION"

  kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout=900s
}

build_images() {
  step "build and load the four images as $REGISTRY/facesim-*:$TAG"
  local image
  for image in trainer predictor ui pipeline; do
    docker build -f "containers/$image.Dockerfile" -t "$REGISTRY/facesim-$image:$TAG" .
    kind load docker-image --name "$CLUSTER" "$REGISTRY/facesim-$image:$TAG"
  done
}

render() {
  step "render the manifests (tiny 2-worker TFJob, 2-trial Experiment)"
  "${FACESIM[@]}" manifests --out "$WORK/m" --namespace "$NS" --image-registry "$REGISTRY" --image-tag "$TAG" \
    --nfs-server "$NFS_SERVER" --nfs-share / --workers 2 --epochs 1 --steps-per-epoch 2 \
    --trials 2 --parallel-trials 1 --trial-epochs 2 -- "${TINY[@]}"
  step "kubectl apply --dry-run=server on every manifest"
  kubectl apply --dry-run=server -f "$WORK/m"
}

apply_base() {
  step "namespace label, StorageClass, PVCs, RBAC"
  local file
  for file in namespace storageclass pvcs rbac; do
    kubectl apply -f "$WORK/m/$file.yaml"
  done
  kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Bound pvc --all --timeout=300s
}

# A pod with the three volumes mounted (predictor image: it builds galleries), for copying data in
# and looking at what the jobs wrote.
start_toolbox() {
  kubectl -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: facesim-toolbox}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, fsGroupChangePolicy: OnRootMismatch}
  containers:
  - {name: toolbox, image: $REGISTRY/facesim-predictor:$TAG, command: [sleep, infinity],
     volumeMounts: [{name: data, mountPath: /mnt/data}, {name: runs, mountPath: /mnt/runs},
                    {name: models, mountPath: /mnt/models}]}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: facesim-data}}
  - {name: runs, persistentVolumeClaim: {claimName: facesim-runs}}
  - {name: models, persistentVolumeClaim: {claimName: facesim-models}}
EOF
  kubectl -n "$NS" wait --for=condition=Ready pod/facesim-toolbox --timeout=300s
}

toolbox() { kubectl -n "$NS" exec facesim-toolbox -- "$@"; }

load_data() {
  step "LFW onto the data volume"
  if [[ -n $LFW_DIR ]]; then
    kubectl -n "$NS" cp "$LFW_DIR" facesim-toolbox:/mnt/data/lfw
  else
    toolbox facesim data fetch lfw --out /mnt/data/lfw
  fi
}

run_tfjob() {
  step "TFJob: 2 workers, tiny"
  kubectl apply -f "$WORK/m/tfjob.yaml"
  kubectl -n "$NS" wait --for=condition=Succeeded tfjob/facesim-train --timeout=1800s
  toolbox test -f /mnt/models/facenet/1/model.json
}

run_experiment() {
  step "Katib Experiment: 2 trials"
  kubectl apply -f "$WORK/m/experiment.yaml"
  kubectl -n "$NS" wait --for=condition=Succeeded experiment/facesim-tune --timeout=3600s
  kubectl -n "$NS" get experiment facesim-tune -o jsonpath='{.status.currentOptimalTrial}{"\n"}'
}

run_predictor() {
  step "gallery, InferenceService, facesim predict"
  toolbox facesim gallery build --model /mnt/models/facenet/1 --data /mnt/data/lfw \
    --out /mnt/models/galleries/lfw/1 --limit-identities 5 --max-images-per-identity 2
  kubectl apply -f "$WORK/m/inferenceservice.yaml"
  kubectl -n "$NS" wait --for=condition=Ready inferenceservice/facesim --timeout=900s
  kubectl -n "$NS" port-forward svc/facesim-predictor 18080:80 >/dev/null &
  sleep 5
  local face
  face=$(toolbox sh -c 'ls /mnt/data/lfw/lfw-deepfunneled/*/*.jpg | head -n 1')
  kubectl -n "$NS" cp "facesim-toolbox:$face" "$WORK/face.jpg"
  "${FACESIM[@]}" predict "$WORK/face.jpg" --url http://127.0.0.1:18080 --json
}

run_pipeline() {
  step "pipeline submit (tiny) and wait for the run"
  kubectl -n kubeflow port-forward svc/ml-pipeline-ui 18888:80 >/dev/null &
  sleep 5
  local run_id
  run_id=$("${FACESIM[@]}" pipeline submit --host http://127.0.0.1:18888 --image-registry "$REGISTRY" \
    --image-tag "$TAG" --service-account facesim-pipeline --architecture tiny --workers 2 --epochs 1 \
    --steps-per-epoch 2 --max-identities 20 --val-pairs 40 --gallery-identities 5 \
    --gallery-images-per-identity 2 | sed -n 's/^run \([^ ]*\) created.*/\1/p')
  .venv/bin/python - "$run_id" <<'EOF'
import sys

import kfp

run = kfp.Client(host="http://127.0.0.1:18888").wait_for_run_completion(sys.argv[1], timeout=3600)
print(f"pipeline run {sys.argv[1]}: {run.state}")
sys.exit(0 if run.state == "SUCCEEDED" else 1)
EOF
}

main() {
  need docker kind kubectl helm
  [[ -x .venv/bin/python ]] || { echo "kind-e2e: run 'bash scripts/setup.sh' first" >&2; exit 2; }
  create_cluster
  install_storage
  install_operators
  build_images
  render
  apply_base
  start_toolbox
  load_data
  run_tfjob
  run_experiment
  run_predictor
  run_pipeline
  step "all steps passed"
}

main "$@"

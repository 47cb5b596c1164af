"""A rendered InferenceService in the one-volume-per-claim form (issue 20): the model and the
gallery as two subPaths of one volume on the models claim, no STORAGE_URI (for which KServe adds
a second volume, `kserve-pvc-source`, on the same claim: a pod the kubelet never starts before
Kubernetes 1.35). `facesim manifests` renders this form once the render-side fix is in; on an
older rendering this rewrites the file into it, on a fixed one it changes nothing."""

from __future__ import annotations

from pathlib import Path

import yaml

MODEL_MOUNT = "/mnt/models"


def one_volume_per_claim(path: Path) -> Path:
    documents = list(yaml.safe_load_all(path.read_text()))
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "InferenceService":
            continue
        predictor = document["spec"]["predictor"]
        container = predictor["containers"][0]
        env = container.get("env") or []
        uri = next((e["value"] for e in env if e["name"] == "STORAGE_URI"), None)
        if uri is None:
            continue
        claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
        container["env"] = [e for e in env if e["name"] != "STORAGE_URI"]
        renamed = {
            v["name"]: claim for v in predictor.get("volumes") or [] if v["persistentVolumeClaim"]["claimName"] == claim
        }
        predictor["volumes"] = [v for v in predictor.get("volumes") or [] if v["name"] not in renamed]
        predictor["volumes"].append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        mounts = [{**m, "name": renamed.get(m["name"], m["name"])} for m in container.get("volumeMounts") or []]
        mounts.append({"name": claim, "mountPath": MODEL_MOUNT, "subPath": sub_path, "readOnly": True})
        container["volumeMounts"] = mounts
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path

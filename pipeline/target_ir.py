"""The compiled pipeline IR as a target's KFP backend accepts it.

The KFP driver of backends 2.2-2.4.0 (Kubeflow 1.9/1.10) reads each step's container spec and
Kubernetes platform spec with a strict protobuf JSON parser, so a field its protos lack stops
every step ("unknown field"; kubeflow/pipelines#12495). kfp 2.17.3 writes two such kinds:
- `pvcMount[].pvcNameParameter` (kfp-kubernetes' mount_pvc, beside the older `constant`): the
  kubernetes_platform proto that backend 2.4.0 pins (go.mod: kubernetes_platform
  v0.0.0-20240725205754-d911c8b73b49) knows `taskOutputParameter`, `constant`,
  `componentInputParameter` and `mountPath` only;
- `resources.resourceCpuLimit` and the other resource strings, beside the deprecated numbers
  (`cpuLimit`, `memoryLimit` in GB, ...): the pipeline spec of backends 2.2-2.3 lacks them, and
  the 2.4.0 driver reads only the numbers (kubeflow/pipelines#11500).
Both carry a copy of what the older field holds, so dropping them changes nothing a step gets.
"""

from __future__ import annotations

from typing import Any

RESOURCE_STRINGS = ("resourceCpuLimit", "resourceCpuRequest", "resourceMemoryLimit", "resourceMemoryRequest")
PVC_NAME_PARAMETER = "pvcNameParameter"


def for_strict_driver(pipeline_spec: dict[str, Any], platform_spec: dict[str, Any]) -> None:
    """Drop, in place, the fields a strict (2.2-2.4.0) driver rejects or ignores."""
    for executor in pipeline_spec["deploymentSpec"]["executors"].values():
        resources = (executor.get("container") or {}).get("resources") or {}
        if any(name in resources for name in RESOURCE_STRINGS) and "cpuLimit" not in resources:
            raise ValueError("a step sets resources without the numeric fields an older KFP driver reads")
        for name in RESOURCE_STRINGS:
            resources.pop(name, None)
    for platform in platform_spec.get("platforms", {}).values():
        for executor in platform.get("deploymentSpec", {}).get("executors", {}).values():
            for mount in executor.get("pvcMount") or []:
                if PVC_NAME_PARAMETER in mount and not (
                    {"constant", "componentInputParameter", "taskOutputParameter"} & set(mount)
                ):
                    raise ValueError("a PVC mount names its claim only by pvcNameParameter")
                mount.pop(PVC_NAME_PARAMETER, None)

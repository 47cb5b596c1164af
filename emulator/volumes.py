"""A pod's volumes on this machine: PVC `NAME` is the folder `VOLUMES/NAME`; an emptyDir is a
fresh tmpfs. Symlinks inside a volume resolve in the pod, where /tmp, /home and /mnt are empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesim.emulator.pods import EmulationError, Mount


def claim_folder(volumes: Path, claim: str, sub_path: str = "") -> Path:
    """The folder standing for PVC `claim` (and a path inside it), which must exist."""
    root = volumes / claim
    if not root.is_dir():
        raise EmulationError(
            f"PVC {claim}: no folder {root}; create it (the emulator binds PVC NAME from --volumes DIR/NAME)"
        )
    target = (root / sub_path).resolve() if sub_path else root
    if sub_path and not _inside(target, root.resolve()):
        raise EmulationError(f"PVC {claim}: subPath {sub_path!r} leaves the volume")
    return target


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def container_mounts(pod: dict[str, Any], container: dict[str, Any], volumes: Path, pod_name: str) -> list[Mount]:
    """The container's volumeMounts, resolved against the pod's volumes."""
    sources = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = []
    for mount in container.get("volumeMounts") or []:
        volume = sources.get(mount["name"])
        if volume is None:
            raise EmulationError(f"{pod_name}: volumeMount {mount['name']!r} names no volume of the pod")
        sub_path = mount.get("subPath", "")
        read_only = bool(mount.get("readOnly"))
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            folder = claim_folder(volumes, claim["claimName"], sub_path)
            folder.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath
            mounts.append(Mount(str(folder), mount["mountPath"], read_only or bool(claim.get("readOnly"))))
        elif "emptyDir" in volume:
            mounts.append(Mount("tmpfs", mount["mountPath"]))
        else:
            kind = next((k for k in volume if k != "name"), "?")
            raise EmulationError(
                f"{pod_name}: volume {mount['name']!r} is a {kind}; the emulator knows PVCs and emptyDirs"
            )
    return mounts

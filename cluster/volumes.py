"""Cluster storage: a csi-driver-nfs StorageClass (docs/protocol.md: the maintained NFS route), the
ReadWriteMany PVCs for data, runs and models, and how a pod mounts them (whole claims, or
`pvc://CLAIM/PATH` locations as subPaths, one volume per claim)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes import client as k8s

from facesim.cluster.resources import APP_LABEL
from facesim.storage.uris import StorageUri, parse_uri

# Where the PVCs are mounted in every facesim pod (the predictor mounts its model read-only at
# /mnt/models, where KServe would mount a storageUri: cluster/inference_service.py).
DATA_MOUNT = "/mnt/data"
RUNS_MOUNT = "/mnt/runs"
MODELS_MOUNT = "/mnt/models"


@dataclass(frozen=True)
class VolumeClaim:
    """One ReadWriteMany PVC and where facesim pods mount it."""

    role: str  # data, runs, models
    name: str
    size: str
    mount_path: str


@dataclass
class StorageConfig:
    """The NFS StorageClass and the three shared PVCs."""

    storage_class: str = "facesim-nfs"
    nfs_server: str = "nfs-server.nfs.svc.cluster.local"
    nfs_share: str = "/exports/facesim"
    mount_options: tuple[str, ...] = ("nfsvers=4.1", "hard")
    claims: tuple[VolumeClaim, ...] = field(
        default_factory=lambda: (
            VolumeClaim("data", "facesim-data", "20Gi", DATA_MOUNT),
            VolumeClaim("runs", "facesim-runs", "20Gi", RUNS_MOUNT),
            VolumeClaim("models", "facesim-models", "5Gi", MODELS_MOUNT),
        )
    )

    def claim(self, role: str) -> VolumeClaim:
        for candidate in self.claims:
            if candidate.role == role:
                return candidate
        raise KeyError(f"no PVC for {role!r}; known: {', '.join(c.role for c in self.claims)}")


def storage_class(config: StorageConfig) -> k8s.V1StorageClass:
    """csi-driver-nfs StorageClass: each PVC becomes a subdirectory of SERVER:SHARE."""
    return k8s.V1StorageClass(
        api_version="storage.k8s.io/v1",
        kind="StorageClass",
        metadata=k8s.V1ObjectMeta(name=config.storage_class, labels={APP_LABEL: "facesim"}),
        provisioner="nfs.csi.k8s.io",
        parameters={"server": config.nfs_server, "share": config.nfs_share},
        reclaim_policy="Retain",  # datasets and trained models outlive a `kubectl delete pvc`
        volume_binding_mode="Immediate",
        allow_volume_expansion=True,
        mount_options=list(config.mount_options),
    )


def persistent_volume_claims(config: StorageConfig, namespace: str) -> list[k8s.V1PersistentVolumeClaim]:
    """The data, runs and models PVCs, ReadWriteMany: every worker, trial and predictor shares them."""
    return [
        k8s.V1PersistentVolumeClaim(
            api_version="v1",
            kind="PersistentVolumeClaim",
            metadata=k8s.V1ObjectMeta(
                name=claim.name, namespace=namespace, labels={APP_LABEL: "facesim", "facesim/volume": claim.role}
            ),
            spec=k8s.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"],
                storage_class_name=config.storage_class,
                resources=k8s.V1VolumeResourceRequirements(requests={"storage": claim.size}),
            ),
        )
        for claim in config.claims
    ]


def claim_volumes(config: StorageConfig, roles: tuple[str, ...]) -> list[k8s.V1Volume]:
    return [
        k8s.V1Volume(
            name=config.claim(role).role,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=config.claim(role).name),
        )
        for role in roles
    ]


def claim_mounts(config: StorageConfig, roles: tuple[str, ...]) -> list[k8s.V1VolumeMount]:
    return [k8s.V1VolumeMount(name=role, mount_path=config.claim(role).mount_path) for role in roles]


def pvc_uri(uri: str) -> StorageUri:
    """`uri` parsed by storage.uris, required to be `pvc://CLAIM/PATH` as KServe's storageUri takes it."""
    location = parse_uri(uri)
    if location.scheme != "pvc" or not location.path:
        raise ValueError(f"{uri!r} is not a pvc://CLAIM/PATH URI (e.g. pvc://facesim-models/facenet/1)")
    return location


@dataclass(frozen=True)
class PvcMount:
    """A `pvc://CLAIM/PATH` location mounted at `mount_path` in a container."""

    uri: str
    mount_path: str
    read_only: bool = False


def pvc_volumes(mounts: list[PvcMount]) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """One volume per claim (named after it) and one subPath mount per location. Two volumes on one
    claim leave a pod in ContainerCreating on kubelets before Kubernetes 1.35 (kubernetes#99453)."""
    claims = list(dict.fromkeys(pvc_uri(mount.uri).claim for mount in mounts))
    volumes = [
        k8s.V1Volume(name=claim, persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim))
        for claim in claims
    ]
    volume_mounts = [
        k8s.V1VolumeMount(
            name=pvc_uri(mount.uri).claim,
            mount_path=mount.mount_path,
            sub_path=pvc_uri(mount.uri).path,
            read_only=mount.read_only or None,
        )
        for mount in mounts
    ]
    return volumes, volume_mounts

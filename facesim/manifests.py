"""`facesim manifests --out DIR`: render every cluster resource as YAML, one file per kind or component.

The same builders back the SDK launchers (`--backend cluster`), so what is rendered here is what
`facesim train/tune/serve --backend cluster` would create.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ManifestFile:
    name: str
    summary: str
    resources: list[dict[str, Any]]


def _parser() -> argparse.ArgumentParser:
    from facesim.cluster.resources import ClusterConfig, StorageConfig

    cluster, storage = ClusterConfig(), StorageConfig()
    parser = argparse.ArgumentParser(
        prog="facesim manifests",
        description="Render every facesim cluster resource as YAML (namespace, NFS StorageClass, PVCs, RBAC, "
        "TFJob, Katib Experiment, InferenceService, UI Deployment and Service). Apply them in the order "
        "docs/cluster.md gives.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--out", type=Path, required=True, help="directory to write the YAML files into")
    add("--namespace", default=cluster.namespace, help="namespace of every namespaced resource")
    add("--image-registry", default=cluster.image_registry, help="registry the facesim images were pushed to")
    add("--image-tag", default=cluster.image_tag, help="tag of the facesim-{trainer,predictor,ui} images")
    add("--nfs-server", default=storage.nfs_server, help="NFS server of the csi-driver-nfs StorageClass")
    add("--nfs-share", default=storage.nfs_share, help="exported directory on the NFS server")
    add("--storage-class", default=storage.storage_class, help="StorageClass name")
    for claim in storage.claims:
        add(f"--{claim.role}-size", default=claim.size, help=f"size of the {claim.role} PVC ({claim.name})")
    add("--data-path", default="lfw", help="LFW-layout dataset (or prepared crop cache) on the data PVC")
    add("--model-version", default="1", help="version directory of the trained model on the models PVC")
    add("--workers", type=int, default=2, help="TFJob worker replicas")
    add("--epochs", type=int, default=20, help="training epochs")
    add("--steps-per-epoch", type=int, default=200, help="training steps per epoch")
    add(
        "--algorithm",
        default="tpe",
        help="Katib search algorithm (random, grid, tpe, multivariate-tpe, bayesianoptimization)",
    )
    add("--trials", type=int, default=12, help="Katib maxTrialCount")
    add("--parallel-trials", type=int, default=2, help="Katib parallelTrialCount")
    add("--trial-workers", type=int, default=1, help="TFJob workers of each trial")
    add("--trial-epochs", type=int, default=5, help="epochs of each trial")
    add("--gallery-path", default="galleries/lfw/1", help="gallery directory on the models PVC")
    add("--deployment-mode", default="Standard", help="KServe deployment mode: Standard or Knative")
    add("--ui-replicas", type=int, default=1, help="UI Deployment replicas")
    add("--ui-service-type", default="ClusterIP", help="UI Service type: ClusterIP, NodePort or LoadBalancer")
    from facesim.inference.cluster_postgres import add_manifest_arguments

    add_manifest_arguments(parser)
    return parser


def _check(args: argparse.Namespace) -> list[str]:
    problems = []
    if not DNS_LABEL.match(args.namespace):
        problems.append(f"--namespace {args.namespace!r} is not a DNS label (lower-case letters, digits, '-')")
    if not DNS_LABEL.match(args.storage_class):
        problems.append(f"--storage-class {args.storage_class!r} is not a DNS label")
    if not args.nfs_share.startswith("/"):
        problems.append(f"--nfs-share {args.nfs_share!r} must be an absolute path on the NFS server")
    if not args.nfs_server or not args.image_registry:
        problems.append("--nfs-server and --image-registry must not be empty")
    for name in ("workers", "epochs", "steps_per_epoch", "trials", "parallel_trials", "trial_workers", "trial_epochs"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    return problems


def render(args: argparse.Namespace) -> list[ManifestFile]:
    """Every resource, grouped into the files `--out` receives."""
    from dataclasses import replace

    from facesim.cluster.resources import (
        DATA_MOUNT,
        MODELS_MOUNT,
        ClusterConfig,
        StorageConfig,
        namespace,
        persistent_volume_claims,
        rbac_resources,
        storage_class,
        to_manifest,
    )
    from facesim.inference.cluster import InferenceServiceConfig, inference_service
    from facesim.training.tfjob import TFJobConfig, tfjob
    from facesim.tuning.katib import ExperimentConfig, experiment, experiment_problems
    from facesim.ui.cluster import UiDeploymentConfig, ui_deployment, ui_service

    cluster = ClusterConfig(namespace=args.namespace, image_registry=args.image_registry, image_tag=args.image_tag)
    defaults = StorageConfig()
    storage = StorageConfig(
        storage_class=args.storage_class,
        nfs_server=args.nfs_server,
        nfs_share=args.nfs_share,
        claims=tuple(replace(c, size=getattr(args, f"{c.role}_size")) for c in defaults.claims),
    )
    data = f"{DATA_MOUNT}/{args.data_path.strip('/')}"
    models_claim = storage.claim("models").name
    train_args = (
        "--data",
        data,
        "--out",
        f"{MODELS_MOUNT}/facenet/{args.model_version}",
        "--workers",
        str(args.workers),
        "--epochs",
        str(args.epochs),
        "--steps-per-epoch",
        str(args.steps_per_epoch),
    )
    job = TFJobConfig(workers=args.workers, train_args=train_args, cluster=cluster, storage=storage)
    search = ExperimentConfig(
        algorithm=args.algorithm,
        max_trial_count=args.trials,
        parallel_trial_count=args.parallel_trials,
        max_failed_trial_count=min(3, args.trials),
        train_args=(
            "--data",
            data,
            "--workers",
            str(args.trial_workers),
            "--epochs",
            str(args.trial_epochs),
            "--steps-per-epoch",
            str(args.steps_per_epoch),
        ),
        trial_job=TFJobConfig(workers=args.trial_workers, cluster=cluster, storage=storage),
    )
    predictor = InferenceServiceConfig(
        model_uri=f"pvc://{models_claim}/facenet/{args.model_version}",
        gallery_uri=f"pvc://{models_claim}/{args.gallery_path.strip('/')}",
        deployment_mode=args.deployment_mode,
        cluster=cluster,
    )
    ui = UiDeploymentConfig(replicas=args.ui_replicas, service_type=args.ui_service_type, cluster=cluster)
    tuning = to_manifest(experiment(search))
    problems = experiment_problems(tuning)
    if problems:
        raise ValueError("Katib would reject the Experiment: " + "; ".join(problems))
    manifest = to_manifest
    serving, gallery_database = manifest(inference_service(predictor)), []
    if args.gallery_backend == "postgresql":
        from facesim.inference.cluster_postgres import shared_gallery_manifests

        serving, database = shared_gallery_manifests(args, predictor)
        summary = "PostgreSQL gallery: Secret (password, DSN), headless Service, StatefulSet with its PVC"
        gallery_database = [ManifestFile("gallery-postgres.yaml", summary, database)]
    return [
        ManifestFile(
            "namespace.yaml", "namespace (Katib metrics-collector injection on)", [manifest(namespace(cluster))]
        ),
        ManifestFile("storageclass.yaml", "csi-driver-nfs StorageClass", [manifest(storage_class(storage))]),
        ManifestFile(
            "pvcs.yaml",
            "ReadWriteMany PVCs: data, runs, models",
            [manifest(c) for c in persistent_volume_claims(storage, cluster.namespace)],
        ),
        ManifestFile(
            "rbac.yaml", "pipeline ServiceAccount, Role, RoleBinding", [manifest(r) for r in rbac_resources(cluster)]
        ),
        ManifestFile("tfjob.yaml", "training TFJob", [manifest(tfjob(job))]),
        ManifestFile("experiment.yaml", "Katib Experiment (TFJob trials)", [tuning]),
        ManifestFile("inferenceservice.yaml", "KServe InferenceService", [serving]),
        *gallery_database,
        ManifestFile("ui.yaml", "UI Deployment and Service", [manifest(ui_deployment(ui)), manifest(ui_service(ui))]),
    ]


def write(files: list[ManifestFile], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for file in files:
        text = yaml.safe_dump_all(file.resources, sort_keys=False, default_flow_style=False)
        (out / file.name).write_text(f"# {file.summary}. Generated by `facesim manifests`.\n{text}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    problems = _check(args)
    if problems:
        parser.error("; ".join(problems))
    try:
        files = render(args)
    except ValueError as error:  # a config the builders refuse (algorithm, deployment mode, service type...)
        parser.error(str(error))
    try:
        write(files, args.out)
    except OSError as error:
        print(f"facesim manifests: cannot write to {args.out}: {error.strerror}", file=sys.stderr)
        return 1
    for file in files:
        print(f"{args.out / file.name}: {file.summary}")
    return 0

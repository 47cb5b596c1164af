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
    from facesim.cluster.resources import ClusterConfig, add_image_arguments
    from facesim.cluster.targets import add_target_argument
    from facesim.cluster.volumes import StorageConfig

    cluster, storage = ClusterConfig(), StorageConfig()
    parser = argparse.ArgumentParser(
        prog="facesim manifests",
        description="Render every facesim cluster resource as YAML (namespace, NFS StorageClass, PVCs, RBAC, "
        "TFJob, Katib Experiment, InferenceService, UI Deployment and Service). Apply them in the order "
        "docs/cluster.md gives. Options after `--` are `facesim train` options appended to the TFJob's and every "
        "trial's arguments (e.g. `-- --architecture tiny --max-identities 20` for a smoke run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--out", type=Path, required=True, help="directory to write the YAML files into")
    add("--namespace", default=cluster.namespace, help="namespace of every namespaced resource")
    add_image_arguments(parser)
    add_target_argument(parser)
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
    add(
        "--deployment-mode",
        default="Standard",
        help="KServe deployment mode: Standard or Knative (RawDeployment, Serverless: their former names), "
        "rendered by the name the --target's KServe knows",
    )
    add("--ui-replicas", type=int, default=1, help="UI Deployment replicas")
    add("--ui-service-type", default="ClusterIP", help="UI Service type: ClusterIP, NodePort or LoadBalancer")
    from facesim.cluster.postgres import add_manifest_arguments

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
    if not args.nfs_server:
        problems.append("--nfs-server must not be empty")
    for name in ("epochs", "steps_per_epoch", "trials", "parallel_trials", "trial_epochs"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    return problems + _worker_problems(args)


def _worker_problems(args: argparse.Namespace) -> list[str]:
    """What the workers' own TrainConfig would refuse: too few, or a batch that does not divide among them."""
    from facesim.training.config import TrainConfig

    problems = []
    for flag, workers in (("--workers", args.workers), ("--trial-workers", args.trial_workers)):
        try:
            TrainConfig(data=args.data_path, out="-", workers=workers)
        except ValueError as error:
            problems.append(f"{error} ({flag} {workers})")
    return problems


def render(args: argparse.Namespace) -> list[ManifestFile]:
    """Every resource, grouped into the files `--out` receives."""
    from dataclasses import replace

    from facesim.cluster.inference_service import KNATIVE_FEATURE_FLAGS, InferenceServiceConfig, inference_service
    from facesim.cluster.resources import (
        ClusterConfig,
        admin_token_secret,
        images_from_args,
        namespace,
        rbac_resources,
        to_manifest,
    )
    from facesim.cluster.volumes import DATA_MOUNT, MODELS_MOUNT, StorageConfig, persistent_volume_claims, storage_class
    from facesim.training.tfjob import TFJobConfig, cluster_run_dir, tfjob
    from facesim.tuning.katib import ExperimentConfig, experiment
    from facesim.ui.cluster import UiDeploymentConfig, ui_deployment, ui_service

    cluster = ClusterConfig(namespace=args.namespace, images=images_from_args(args))
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
        "--run-dir",
        cluster_run_dir(f"{MODELS_MOUNT}/facenet/{args.model_version}", storage),
        "--workers",
        str(args.workers),
        "--epochs",
        str(args.epochs),
        "--steps-per-epoch",
        str(args.steps_per_epoch),
        *args.train_options,
    )
    job = TFJobConfig(workers=args.workers, train_args=train_args, cluster=cluster, storage=storage)
    search = ExperimentConfig(
        algorithm=args.algorithm,
        max_trial_count=args.trials,
        parallel_trial_count=args.parallel_trials,
        trial_epochs=args.trial_epochs,
        train_args=(
            "--data",
            data,
            "--workers",
            str(args.trial_workers),
            "--steps-per-epoch",
            str(args.steps_per_epoch),
            *args.train_options,  # before each trial's parameters, which therefore win
        ),
        trial_job=TFJobConfig(workers=args.trial_workers, cluster=cluster, storage=storage),
        target=args.target,
    )
    predictor = InferenceServiceConfig(
        model_uri=f"pvc://{models_claim}/facenet/{args.model_version}",
        gallery_uri=f"pvc://{models_claim}/{args.gallery_path.strip('/')}",
        deployment_mode=args.deployment_mode,
        target=args.target,
        cluster=cluster,
    )
    ui = UiDeploymentConfig(replicas=args.ui_replicas, service_type=args.ui_service_type, cluster=cluster)
    tuning = to_manifest(experiment(search))
    serving = "KServe InferenceService"
    if predictor.deployment_mode == "Knative":
        serving += f" (Knative: enable {', '.join(KNATIVE_FEATURE_FLAGS)} in knative-serving/config-features)"
    manifest = to_manifest
    service_manifest, gallery_database = manifest(inference_service(predictor)), []
    if args.gallery_backend == "postgresql":
        from facesim.cluster.postgres import shared_gallery_manifests

        service_manifest, database = shared_gallery_manifests(args, predictor)
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
        ManifestFile(
            "secret.yaml",
            "admin token for gallery writes (placeholder: set it)",
            [manifest(admin_token_secret(cluster))],
        ),
        ManifestFile("inferenceservice.yaml", serving, [service_manifest]),
        *gallery_database,
        ManifestFile("ui.yaml", "UI Deployment and Service", [manifest(ui_deployment(ui)), manifest(ui_service(ui))]),
    ]


def write(files: list[ManifestFile], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for file in files:
        text = yaml.safe_dump_all(file.resources, sort_keys=False, default_flow_style=False)
        (out / file.name).write_text(f"# {file.summary}. Generated by `facesim manifests`.\n{text}")


# Set by the manifests themselves: the TFJob's replicas and the trials' output dirs depend on them.
FIXED_TRAIN_OPTIONS = ("--workers", "--out")


def _train_options(extra: list[str]) -> list[str]:
    """Problems of the training options given after `--` (they must parse as `facesim train` options)."""
    from facesim.training.config import parse_config

    fixed = [a for a in extra if a.split("=")[0] in FIXED_TRAIN_OPTIONS]
    if fixed:
        return [f"{', '.join(fixed)} after --: use the manifests' own --workers/--trial-workers and --model-version"]
    try:
        parse_config(["--data", "DATA", "--out", "OUT", *extra], prog="facesim manifests ... --")
    except ValueError as error:
        return [f"training options after --: {error}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.train_options = tuple(argv[split + 1 :])
    problems = _check(args) + _train_options(list(args.train_options))
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

"""`facesim train`, `python -m facesim.training` (one worker) and `facesim evaluate`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from facesim.faces.detect import add_yunet_argument
from facesim.training.config import add_config_arguments, config_from_namespace

if TYPE_CHECKING:
    from facesim.cluster.resources import Images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim train",
        description="Train FaceNet embeddings with triplet loss on LFW (identity-disjoint protocol, docs/protocol.md) "
        "and export the model artifact (SavedModel + model.json) into --out. Prints metric lines "
        "(loss=, val_accuracy=, ...). Rerun with the same --run-dir to resume from its last checkpoint.",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "cluster"),
        default="local",
        help="local: N worker processes here; cluster: a TFJob (default: %(default)s)",
    )
    from facesim.cluster.resources import add_image_arguments

    cluster = parser.add_argument_group("cluster backend (TFJob)")
    cluster.add_argument("--job-name", default="facesim-train", help="TFJob name")
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    cluster.add_argument("--no-wait", action="store_true", help="return once the TFJob is created")
    add_image_arguments(cluster)
    add_config_arguments(parser)
    return parser


def train_main(argv: list[str] | None = None) -> int:
    from facesim.cluster.resources import images_from_args

    parser = _train_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_namespace(args)
        images = images_from_args(args)
    except (ValueError, FileNotFoundError) as error:  # FileNotFoundError: --init MODEL_DIR has no model.json
        parser.error(str(error))
    if args.backend == "cluster":
        return _train_on_cluster(config, args.job_name, images, args.kubeconfig, wait=not args.no_wait)
    from facesim.training.api import TrainingFailed, train

    try:
        train(config)
    except (FileNotFoundError, ValueError) as error:
        print(f"facesim train: {error}", file=sys.stderr)
        return 2
    except TrainingFailed as failure:
        print(f"facesim train: {failure}", file=sys.stderr)
        return failure.exit_code
    return 0


def _train_on_cluster(config, job_name: str, images: Images, kubeconfig: str | None, wait: bool) -> int:
    from dataclasses import replace

    from facesim.cluster.client import ClusterError
    from facesim.cluster.resources import ClusterConfig
    from facesim.cluster.volumes import StorageConfig
    from facesim.training.tfjob import TFJobConfig, cluster_run_dir, submit_tfjob

    if config.run_dir is None:
        config = replace(config, run_dir=cluster_run_dir(config.out, StorageConfig()))
    try:
        cluster = ClusterConfig(images=images)
        job = TFJobConfig(name=job_name, workers=config.workers, train_args=tuple(config.to_args()), cluster=cluster)
    except ValueError as error:  # e.g. a --job-name too long for its workers' Service names
        print(f"facesim train: {error}", file=sys.stderr)
        return 2
    try:
        submit_tfjob(job, wait=wait, kubeconfig=kubeconfig)
    except ClusterError as error:
        print(f"facesim train: {error}", file=sys.stderr)
        return 1
    return 0


def worker_main(argv: list[str] | None = None) -> int:
    """One worker (reads TF_CONFIG): the container entrypoint a TFJob runs."""
    parser = argparse.ArgumentParser(
        prog="python -m facesim.training",
        description="One training worker. Its cluster comes from TF_CONFIG (none: a single worker); worker 0 "
        "is the chief and exports the model. Takes the options of `facesim train`.",
    )
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_namespace(args)
    except (ValueError, FileNotFoundError) as error:  # FileNotFoundError: --init MODEL_DIR has no model.json
        parser.error(str(error))
    from facesim.training.worker import run_worker

    try:
        run_worker(config)
    except (FileNotFoundError, ValueError) as error:
        print(f"python -m facesim.training: {error}", file=sys.stderr)
        return 2
    return 0


def evaluate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facesim evaluate",
        description="Score an exported model on LFW verification pairs at the threshold in its model.json "
        "(accuracy=, auc=, tar_at_zero_false_accepts= with negative_pairs=, threshold=), and with --fold over "
        "every pair of that fold's images at thresholds set on the calibration fold's images "
        "(impostor_pairs=, tar_at_far_1e-3=, tar_at_far_1e-4=, far_achieved_*=); then the best threshold "
        "for these pairs in hindsight.",
    )
    parser.add_argument("--model", required=True, type=Path, help="model directory (SavedModel + model.json)")
    parser.add_argument("--data", required=True, type=Path, help="LFW root (or a crop cache prepared from it)")
    parser.add_argument(
        "--pairs", type=Path, help="pairs file (pairs.txt, pairsDevTest.txt, ...; default: DATA/pairs.txt)"
    )
    parser.add_argument("--fold", type=int, help="score only this fold (1-based; fold 10 is the test fold)")
    parser.add_argument(
        "--calibration-fold",
        type=int,
        help="fold whose images set the thresholds of the FAR figures (default: 9, the validation fold)",
    )
    parser.add_argument("--limit-pairs", type=int, help="at most this many pairs, half same, half different")
    parser.add_argument("--cache-dir", help="face-crop cache (default: $FACESIM_CACHE/<preprocessing key>)")
    add_yunet_argument(parser)
    parser.add_argument("--prepare-workers", type=int, default=2, help="processes preparing crops")
    parser.add_argument(
        "--runtime",
        choices=("tensorflow", "onnx"),
        default="tensorflow",
        help="what runs the network: the SavedModel under TensorFlow, or model.onnx under ONNX Runtime "
        "(what `facesim serve` runs by default) (default: %(default)s)",
    )
    parser.add_argument(
        "--protocol",
        choices=("pairs", "lfw-10fold"),
        default="pairs",
        help="pairs: the figures above; lfw-10fold: LFW View 2's standard figure, each of the 10 folds "
        "scored at the threshold best on the other nine (fold<k>_accuracy=, lfw_10fold_accuracy=, "
        "lfw_10fold_std=) (default: %(default)s)",
    )
    parser.add_argument(
        "--compare-runtimes",
        action="store_true",
        help="also embed the pairs on the other runtime: runtime_decisions_differing= (same/different at the "
        "model's threshold) and runtime_max_distance_difference=",
    )
    args = parser.parse_args(argv)
    from facesim.storage.model_artifact import ModelError
    from facesim.training.evaluate import EvaluateRequest, evaluate_model

    try:
        evaluate_model(EvaluateRequest(**vars(args)))
    except (FileNotFoundError, ValueError, ModelError) as error:
        print(f"facesim evaluate: {error}", file=sys.stderr)
        return 2
    return 0

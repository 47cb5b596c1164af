"""`facesim tune` / `python -m facesim.tuning`: search margin, embedding size and learning rate.

`--backend local` runs the trials here with optuna (tuning/local.py); `--backend cluster` creates
a Katib Experiment whose trials are TFJobs and follows it (tuning/katib.py). Options after `--`
go to every trial's training command unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from facesim.training.options import add_options, from_namespace
from facesim.tuning.space import SearchSettings


def _parser() -> argparse.ArgumentParser:
    from facesim.cluster.resources import add_image_arguments
    from facesim.cluster.targets import add_target_argument

    parser = argparse.ArgumentParser(
        prog="facesim tune",
        description="Tune the triplet margin, embedding size and learning rate (search space: tuning/space.py). "
        "Arguments after `--` are passed to every trial's `facesim train`, e.g. `-- --architecture tiny`.",
    )
    add = parser.add_argument
    add(
        "--backend",
        choices=("local", "cluster"),
        default="local",
        help="local: optuna trials as local training runs; cluster: a Katib Experiment (default: %(default)s)",
    )
    add(
        "--data",
        default=os.environ.get("FACESIM_LFW"),
        help="LFW-layout root or prepared crop cache (default: $FACESIM_LFW; on a cluster /mnt/data/lfw)",
    )
    add(
        "--out",
        type=Path,
        help="where trial logs, results.json and best_params.json go (default: $FACESIM_HOME/tuning/<timestamp>)",
    )
    add_options(parser, SearchSettings)
    cluster = parser.add_argument_group("cluster backend (Katib)")
    cluster.add_argument("--experiment-name", default="facesim-tune", help="Experiment name (default: %(default)s)")
    cluster.add_argument(
        "--namespace", help="namespace (default: $FACESIM_NAMESPACE, else the pod's own, else facesim)"
    )
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    add_image_arguments(cluster)
    add_target_argument(cluster)
    return parser


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def _default_out() -> Path:
    from facesim.storage.paths import facesim_home

    return facesim_home() / "tuning" / time.strftime("%Y%m%d-%H%M%S")


def _trial_problem(args: argparse.Namespace, train_args: list[str]) -> str | None:
    """What a trial's `facesim train` would refuse for the settings every trial shares (the worker
    count and the batch, for one): found here, before any trial or Katib Experiment exists."""
    from facesim.training.config import add_config_arguments, config_from_namespace

    shared = ["--data", args.data or "-", "--out", "-", "--workers", str(args.workers)]
    shared += ["--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch)]
    train_parser = argparse.ArgumentParser(prog="facesim tune -- (the trials' facesim train options)")
    add_config_arguments(train_parser)
    options, unknown = train_parser.parse_known_args([*shared, *train_args])
    if unknown:
        return f"`facesim train` has no option {' '.join(unknown)}"
    try:
        config_from_namespace(options)
    except (ValueError, OSError) as error:
        return str(error)
    return None


def main(argv: list[str] | None = None) -> int:
    own, train_args = _split_passthrough(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args = parser.parse_args(own)
    problem = _trial_problem(args, train_args)
    if problem:
        parser.error(f"every trial would fail: {problem}")
    try:
        search = from_namespace(SearchSettings, args)  # the checks of both backends
    except ValueError as error:
        parser.error(str(error))
    if args.backend == "cluster":
        return _run_cluster(args, train_args, parser)
    if not args.data:
        parser.error("give --data DIR (an LFW-layout root or a prepared crop cache) or set FACESIM_LFW")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such directory")
    return _run_local(args, search, train_args, parser)


def _run_local(
    args: argparse.Namespace, search: SearchSettings, train_args: list[str], parser: argparse.ArgumentParser
) -> int:
    from facesim.tuning.best import BEST_PARAMS_FILE
    from facesim.tuning.local import LocalTuneConfig, TuningFailed, results_table, tune_locally

    try:
        config = LocalTuneConfig(
            **asdict(search), data=args.data, out=args.out or _default_out(), train_args=train_args
        )
    except ValueError as error:  # UnknownAlgorithm included
        parser.error(str(error))
    try:
        result = tune_locally(config)
    except TuningFailed as error:
        print(f"facesim tune: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facesim tune: interrupted; running trials were stopped", file=sys.stderr)
        return 130
    print(results_table(result))
    print(
        f"best: trial {result.best.number} {result.objective}={result.best.objective:.4f} "
        f"{json.dumps(result.best.params)}"
    )
    print(f"written: {result.out / BEST_PARAMS_FILE}")
    return 0


def _namespace(args: argparse.Namespace) -> dict[str, str]:
    return {"namespace": args.namespace} if args.namespace else {}


def _run_cluster(args: argparse.Namespace, train_args: list[str], parser: argparse.ArgumentParser) -> int:
    """A Katib Experiment with the same search space, followed to the end; its optimal trial is
    written to OUT/best_params.json when --out is given."""
    from facesim.cluster.client import ClusterError
    from facesim.cluster.resources import ClusterConfig, images_from_args
    from facesim.training.tfjob import DEFAULT_DATA, TFJobConfig
    from facesim.tuning.best import BEST_PARAMS_FILE
    from facesim.tuning.katib import ExperimentConfig, tune_on_cluster

    shared_args = ("--data", args.data or DEFAULT_DATA, "--steps-per-epoch", str(args.steps_per_epoch), *train_args)
    try:
        cluster = ClusterConfig(**_namespace(args), images=images_from_args(args))
        config = ExperimentConfig(
            name=args.experiment_name,
            algorithm=args.algorithm,
            objective=args.objective,
            maximize=not args.minimize,
            max_trial_count=args.trials,
            parallel_trial_count=args.parallel or min(2, args.trials),
            early_stopping=args.early_stopping,
            grid_points=args.grid_points,
            trial_epochs=args.epochs,
            train_args=shared_args,
            trial_job=TFJobConfig(workers=args.workers, cluster=cluster),
            target=args.target,
        )
    except ValueError as error:
        parser.error(str(error))
    try:
        best = tune_on_cluster(config, args.out, kubeconfig=args.kubeconfig)
    except ClusterError as error:
        print(f"facesim tune: {error}", file=sys.stderr)
        return 1
    print(f"best: trial {best.trial} {args.objective}={best.value} {json.dumps(best.parameters)}")
    if args.out:
        print(f"written: {args.out / BEST_PARAMS_FILE}")
    return 0

"""`facesim pipeline compile | run | submit` (also `python -m facesim.pipeline`).

The pipeline's parameters (pipeline/definition.py) become options of `run` and `submit`; `run`
uses defaults sized for one small machine, `submit` sends only the options given (the compiled
defaults are the cluster's).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

PACKAGE_YAML = Path(__file__).with_name("facesim_pipeline.yaml")
# `facesim pipeline run` defaults: a 2-core machine, roughly 10-20 minutes on LFW (README).
LOCAL_DEFAULTS: dict[str, Any] = {
    "data": os.environ.get("FACESIM_LFW", ""),
    "workers": 1,
    "epochs": None,  # resolve_epochs: the init's (fine-tuning made fold 10 worse: docs/results.md)
    "steps_per_epoch": 50,
    "trials": 4,
    "tune_epochs": 2,
    "tune_steps_per_epoch": 30,
}
# Epochs of a local run when none are given: from scratch 3 x 50 steps (a demo); from a pretrained
# start 0, i.e. its weights calibrated on fold 9 and served as they are.
LOCAL_EPOCHS = {"scratch": 3, "pretrained": 0}
_TYPES = {"Integer": int, "Float": float, "String": str, "Boolean": bool}


def _pipeline_inputs() -> dict[str, Any]:
    from facesim.pipeline.definition import facesim_pipeline

    return facesim_pipeline.component_spec.inputs


def _add_pipeline_options(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None, skip: set[str]) -> None:
    """One option per pipeline parameter. With `defaults=None` an option left out is not sent."""
    from facesim.pipeline.definition import PARAMETER_HELP

    group = parser.add_argument_group("pipeline parameters")
    for name, spec in _pipeline_inputs().items():
        if name in skip:
            continue
        default = spec.default if defaults is None else defaults.get(name, spec.default)
        kind = _TYPES[spec.type]
        shown = f"{PARAMETER_HELP.get(name, name)} (default: {default!r})"
        options: dict[str, Any] = {
            "dest": f"param_{name}",
            "help": shown,
            "default": argparse.SUPPRESS if defaults is None else default,
        }
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
            options["metavar"] = name.upper()
        group.add_argument("--" + name.replace("_", "-"), **options)


def _pipeline_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {key.removeprefix("param_"): value for key, value in vars(args).items() if key.startswith("param_")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim pipeline",
        description="The kfp v2 pipeline: prepare data -> (tune) -> train -> evaluate -> gallery -> deploy.",
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    compile_ = commands.add_parser(
        "compile", help="write the pipeline IR YAML", description="Compile the pipeline to kfp IR YAML."
    )
    compile_.add_argument("--out", type=Path, default=PACKAGE_YAML, help="output file (default: %(default)s)")

    run = commands.add_parser(
        "run",
        help="run the whole pipeline here through kfp.local",
        description="Run the pipeline on this machine (kfp.local): training as local "
        "workers, tuning as local trials, deploy = the model and gallery registered "
        "where `facesim serve` finds them.",
    )
    run.add_argument("--verbose", action="store_true", help="show every step's full output, not only progress")
    run.add_argument("--log", type=Path, help="full output log (default: WORK_ROOT/logs/run-<time>.log)")
    _add_pipeline_options(run, LOCAL_DEFAULTS, skip={"backend", "service_name"})

    submit = commands.add_parser(
        "submit",
        help="submit a run to Kubeflow Pipelines",
        description="Submit the compiled pipeline to Kubeflow Pipelines. Pipeline "
        "options left out keep the compiled (cluster) defaults.",
    )
    submit.add_argument("--host", required=True, help="Kubeflow Pipelines API URL, e.g. http://localhost:8888")
    submit.add_argument("--package", type=Path, default=PACKAGE_YAML, help="compiled pipeline (default: %(default)s)")
    submit.add_argument("--experiment", default="facesim", help="experiment name (default: %(default)s)")
    submit.add_argument("--run-name", help="run name (default: the package name and the time)")
    submit.add_argument("--namespace", help="profile namespace (multi-user Kubeflow)")
    submit.add_argument("--service-account", help="service account of the run's pods (needs the facesim RBAC)")
    submit.add_argument(
        "--token", default=os.environ.get("KF_PIPELINES_TOKEN"), help="bearer token (default: $KF_PIPELINES_TOKEN)"
    )
    submit.add_argument("--upload", metavar="NAME", help="also upload the package as pipeline NAME")
    _add_pipeline_options(submit, None, skip=set())
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    return {"compile": _compile, "run": _run, "submit": _submit}[args.action](args)


def _compile(args: argparse.Namespace) -> int:
    from kfp import compiler

    from facesim.pipeline.definition import facesim_pipeline

    args.out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(facesim_pipeline, str(args.out))
    print(f"pipeline IR written to {args.out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from facesim.pipeline.local_run import PipelineFailed, run_locally
    from facesim.pipeline.steps import local_work_root

    arguments = _pipeline_arguments(args)
    if arguments["epochs"] is None:
        arguments["epochs"] = LOCAL_EPOCHS["scratch" if arguments["init"] == "scratch" else "pretrained"]
    problems = run_problems(arguments)
    if problems:
        for problem in problems:
            print(f"facesim pipeline run: {problem}", file=sys.stderr)
        return 2
    arguments["data"] = str(Path(arguments["data"]).resolve())
    work_root = local_work_root(arguments["work_root"]).resolve()
    arguments["work_root"] = str(work_root)
    log_path = args.log or work_root / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"facesim pipeline: running locally (kfp.local); full output in {log_path}")
    try:
        result = run_locally(arguments, work_root / "kfp", log_path, verbose=args.verbose)
    except PipelineFailed as error:
        print(f"facesim pipeline: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"facesim pipeline: interrupted; output so far in {log_path}", file=sys.stderr)
        return 130
    print(
        f"facesim pipeline: done in {result.seconds / 60:.1f} min; `facesim serve` serves the registered "
        "model and gallery"
    )
    return 0


def run_problems(arguments: dict[str, Any]) -> list[str]:
    """What is wrong with a local run's arguments, found before any step starts."""
    from facesim.storage.lfw import LfwLayout
    from facesim.training.config import ARCHITECTURES, PRETRAINED_INIT, SCRATCH_INIT
    from facesim.tuning.space import ALGORITHMS

    problems: list[str] = []
    if not arguments["data"]:
        problems.append(
            "give --data DIR (an LFW-layout root) or set FACESIM_LFW (`facesim data fetch lfw` downloads LFW)"
        )
    else:
        try:
            LfwLayout.find(arguments["data"])
        except FileNotFoundError as error:
            problems.append(f"--data: {error}")
    if arguments["architecture"] not in ARCHITECTURES:
        problems.append(f"--architecture must be one of {', '.join(ARCHITECTURES)}")
    init = arguments["init"]
    if init not in (SCRATCH_INIT, PRETRAINED_INIT) and not Path(init, "model.json").is_file():
        problems.append(f"--init must be {PRETRAINED_INIT}, {SCRATCH_INIT} or a model directory, not {init!r}")
    if arguments["tune"] and init != SCRATCH_INIT:
        problems.append(
            "--tune sweeps the embedding size, which a pretrained start keeps (128): add --init scratch to tune"
        )
    if arguments["tune_algorithm"] not in ALGORITHMS:
        problems.append(f"--tune-algorithm must be one of {', '.join(ALGORITHMS)}")
    if arguments["epochs"] < (1 if init == SCRATCH_INIT else 0):
        problems.append("--epochs must be at least 1 (0 only with a pretrained or model --init)")
    for name in (
        "workers",
        "steps_per_epoch",
        "trials",
        "tune_epochs",
        "tune_steps_per_epoch",
        "gallery_identities",
        "gallery_images_per_identity",
        "embedding_dim",
    ):
        if arguments[name] < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    return problems


def _submit(args: argparse.Namespace) -> int:
    from facesim.pipeline.submit import Submission, describe_error, submit

    if not args.package.is_file():
        print(
            f"facesim pipeline submit: {args.package}: no such file (run `facesim pipeline compile`)", file=sys.stderr
        )
        return 2
    submission = Submission(
        host=args.host,
        package=args.package,
        arguments=_pipeline_arguments(args),
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        service_account=args.service_account,
        token=args.token,
        upload_as=args.upload,
    )
    try:
        submitted = submit(submission)
    except Exception as error:  # the kfp client raises urllib3/ApiException/ValueError: all are the user's to fix
        print(f"facesim pipeline submit: {args.host}: {describe_error(error)}", file=sys.stderr)
        return 1
    if submitted.pipeline_id:
        print(f"uploaded pipeline {args.upload} ({submitted.pipeline_id})")
    print(f"run {submitted.run_id} created: {submitted.run_url}")
    return 0

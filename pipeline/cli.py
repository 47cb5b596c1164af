"""`facesim pipeline compile | run | submit` (also `python -m facesim.pipeline`).

The pipeline's parameters (pipeline/definition.py) become options of `run` and `submit`; `run`
uses defaults sized for one small machine, `submit` sends only the options given (the compiled
defaults are the cluster's). `compile` and `submit` take the image registry and tag: the steps run
in that pipeline image and create their TFJobs, trials and InferenceService from the same registry.
They also take the target cluster (`--target`): the IR holds only fields its KFP backend accepts,
and the steps render for its operators.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facesim.cluster.resources import Images
    from facesim.cluster.targets import Target

PACKAGE_YAML = Path(__file__).with_name("facesim_pipeline.yaml")
# `facesim pipeline run` defaults: a 2-core machine, roughly 10-20 minutes on LFW (README).
LOCAL_DEFAULTS: dict[str, Any] = {
    "data": os.environ.get("FACESIM_LFW", ""),
    "workers": 1,
    "epochs": None,  # the init's (LOCAL_EPOCHS)
    "steps_per_epoch": 50,
    "trials": 4,
    "tune_epochs": 2,
    "tune_steps_per_epoch": 30,
}
# Epochs of a local run when none are given: from scratch 3 x 50 steps (a demo); from a pretrained
# start 2 x 50 steps of the fine-tuning recipe (training/config.py RECIPES: ~2.5 min on 2 cores; it
# raised fold 9's TAR at FAR 1e-3 from 96.0 % to 96.6 %, docs/results.md). --epochs 0 serves the
# imported weights calibrated on fold 9.
LOCAL_EPOCHS = {"scratch": 3, "pretrained": 2}
_TYPES = {"Integer": int, "Float": float, "String": str, "Boolean": bool}


def _pipeline_inputs() -> dict[str, Any]:
    from facesim.cluster.resources import Images
    from facesim.cluster.targets import target
    from facesim.pipeline.definition import build_pipeline

    return build_pipeline(Images(), target()).component_spec.inputs


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
    from facesim.cluster.resources import ClusterConfig, add_image_arguments
    from facesim.cluster.targets import add_target_argument

    parser = argparse.ArgumentParser(
        prog="facesim pipeline",
        description="The kfp v2 pipeline: prepare data -> (tune) -> train -> evaluate -> accuracy gate -> "
        "quantize (int8 when it holds) -> gallery -> deploy.",
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    compile_ = commands.add_parser(
        "compile", help="write the pipeline IR YAML", description="Compile the pipeline to kfp IR YAML."
    )
    compile_.add_argument("--out", type=Path, default=PACKAGE_YAML, help="output file (default: %(default)s)")
    add_image_arguments(compile_)
    add_target_argument(compile_)

    run = commands.add_parser(
        "run",
        help="run the whole pipeline here through kfp.local",
        description="Run the pipeline on this machine (kfp.local): training as local "
        "workers, tuning as local trials, deploy = the model and gallery registered "
        "where `facesim serve` finds them.",
    )
    run.add_argument("--verbose", action="store_true", help="show every step's full output, not only progress")
    run.add_argument("--log", type=Path, help="full output log (default: WORK_ROOT/logs/run-<time>.log)")
    run.add_argument(
        "--reuse",
        action="store_true",
        help="skip the run when the latest registered model and gallery come from a run with the same data and "
        "settings (WORK_ROOT/last-run.json); say why when they do not",
    )
    _add_pipeline_options(run, LOCAL_DEFAULTS, skip={"backend", "service_name", "deployment_mode"})

    submit = commands.add_parser(
        "submit",
        help="submit a run to Kubeflow Pipelines",
        description="Submit the compiled pipeline to Kubeflow Pipelines. Pipeline "
        "options left out keep the compiled (cluster) defaults.",
    )
    submit.add_argument("--host", required=True, help="Kubeflow Pipelines API URL, e.g. http://localhost:8888")
    submit.add_argument(
        "--package",
        type=Path,
        help="submit this compiled pipeline as it is (default: compile one with the images below)",
    )
    add_image_arguments(submit)
    add_target_argument(submit)
    submit.add_argument("--experiment", default="facesim", help="experiment name (default: %(default)s)")
    submit.add_argument("--run-name", help="run name (default: the package name and the time)")
    submit.add_argument("--namespace", help="profile namespace (multi-user Kubeflow)")
    submit.add_argument(
        "--service-account",
        default=ClusterConfig().service_account,
        help="service account of the run's pods: rbac.yaml of `facesim manifests` gives it what KFP's steps and "
        "facesim's launchers need (default: %(default)s)",
    )
    submit.add_argument(
        "--token", default=os.environ.get("KF_PIPELINES_TOKEN"), help="bearer token (default: $KF_PIPELINES_TOKEN)"
    )
    submit.add_argument("--upload", metavar="NAME", help="also upload the package as pipeline NAME")
    _add_pipeline_options(submit, None, skip=set())
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv[1:]  # the options after the action, for the run's summary
    return {"compile": _compile, "run": _run, "submit": _submit}[args.action](args)


def compile_package(images: Images, out: Path, target: Target) -> None:
    """The pipeline IR for `images` and `target`, written to `out`."""
    import yaml
    from kfp import compiler

    from facesim.pipeline.definition import build_pipeline
    from facesim.pipeline.target_ir import for_strict_driver

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(images, target), str(out))
    if target.kfp_strict_driver:
        pipeline_spec, platform_spec = yaml.safe_load_all(out.read_text())
        for_strict_driver(pipeline_spec, platform_spec)
        out.write_text(yaml.safe_dump_all([pipeline_spec, platform_spec], sort_keys=True))


def _images(args: argparse.Namespace, command: str) -> Images | None:
    from facesim.cluster.resources import images_from_args

    try:
        return images_from_args(args)
    except ValueError as error:
        print(f"facesim pipeline {command}: {error}", file=sys.stderr)
        return None


def _compile(args: argparse.Namespace) -> int:
    images = _images(args, "compile")
    if images is None:
        return 2
    compile_package(images, args.out, args.target)
    print(
        f"pipeline IR written to {args.out} (images {images.image('pipeline')} and its siblings; "
        f"target {args.target.name})"
    )
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
    if args.reuse and _reused(arguments, work_root):
        return 0
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
    _summarise(result, arguments, work_root, args.argv)
    return 0


def _reused(arguments: dict[str, Any], work_root: Path) -> bool:
    """With --reuse: True (and say so) when the registered model and gallery can be served as they are."""
    from facesim.pipeline.summary import reusable
    from facesim.storage.paths import latest_gallery, latest_model

    reuse = reusable(arguments, work_root, (latest_model(), latest_gallery()))
    if reuse.summary is None:
        print(f"facesim pipeline: running: {reuse.reason}")
        return False
    print(
        f"facesim pipeline: nothing to run: {reuse.reason} "
        "(to run it anyway: scripts/run-main.sh --retrain, or facesim pipeline run without --reuse)"
    )
    return True


def _summarise(result: Any, arguments: dict[str, Any], work_root: Path, argv: list[str]) -> None:
    """Write the run's summary (JSON) and print it as one line."""
    from facesim.pipeline.summary import (
        Registered,
        RunSummary,
        command_line,
        data_fingerprint,
        human_line,
        machine_facts,
        model_precision,
        write_summary,
    )
    from facesim.storage.paths import latest_gallery, latest_model

    model, gallery = latest_model(), latest_gallery()  # what this run's deploy step registered
    summary = RunSummary(
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=round(result.seconds, 1),
        steps=result.steps,
        metrics=result.metrics,
        model=Registered(model.name, str(model)) if model else None,
        gallery=Registered(gallery.name, str(gallery)) if gallery else None,
        arguments=arguments,
        data_fingerprint=data_fingerprint(arguments["data"]),
        command=command_line(argv),
        log=str(result.log_path),
        machine=machine_facts(),
        precision=model_precision(model) if model else "",
    )
    path = write_summary(summary, work_root)
    print(f"facesim pipeline: done in {human_line(summary)}")
    print(f"facesim pipeline: summary in {path}; `facesim serve` serves the registered model and gallery")


def run_problems(arguments: dict[str, Any]) -> list[str]:
    """What is wrong with a local run's arguments, found before any step starts."""
    from facesim.storage.lfw import LfwLayout

    if not arguments["data"]:
        return [
            "give --data DIR (an LFW-layout root) or set FACESIM_LFW (`facesim data fetch lfw` downloads LFW)",
            *settings_problems(arguments),
        ]
    try:
        LfwLayout.find(arguments["data"])
    except FileNotFoundError as error:
        return [f"--data: {error}", *settings_problems(arguments)]
    return settings_problems(arguments)


def settings_problems(arguments: dict[str, Any]) -> list[str]:
    """What the training run (TrainConfig's own checks), the search and the gallery would refuse."""
    from facesim.pipeline.settings import TrainingSettings, struct
    from facesim.training.config import SCRATCH_INIT
    from facesim.tuning.space import ALGORITHMS

    hyper = {name: arguments[name] or None for name in ("margin", "embedding_dim", "learning_rate")}
    try:
        TrainingSettings(**struct(TrainingSettings, arguments)).train_config(arguments["data"], "-", **hyper)
        problems: list[str] = []
    except ValueError as error:
        problems = str(error).split("; ")
    if arguments["tune"] and arguments["init"] != SCRATCH_INIT:
        problems.append("--tune sweeps the embedding size, which a pretrained start keeps (128): add --init scratch")
    if arguments["tune_algorithm"] not in ALGORITHMS:
        problems.append(f"--tune-algorithm must be one of {', '.join(ALGORITHMS)}")
    counts = ("trials", "tune_epochs", "tune_steps_per_epoch", "gallery_identities", "gallery_images_per_identity")
    problems += [f"--{name.replace('_', '-')} must be at least 1" for name in counts if arguments[name] < 1]
    return problems


def _submit(args: argparse.Namespace) -> int:
    import tempfile

    arguments = _pipeline_arguments(args)
    defaults = {name: spec.default for name, spec in _pipeline_inputs().items()}
    problems = settings_problems({**defaults, **arguments})
    for problem in problems:
        print(f"facesim pipeline submit: {problem}", file=sys.stderr)
    if problems:
        return 2
    if args.package is not None:
        if not args.package.is_file():
            print(
                f"facesim pipeline submit: {args.package}: no such file (run `facesim pipeline compile`)",
                file=sys.stderr,
            )
            return 2
        return _send(args, args.package, arguments)
    images = _images(args, "submit")
    if images is None:
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        package = Path(scratch) / "facesim_pipeline.yaml"
        compile_package(images, package, args.target)
        return _send(args, package, arguments)


def _send(args: argparse.Namespace, package: Path, arguments: dict[str, Any]) -> int:
    from facesim.pipeline.submit import Submission, describe_error, submit

    submission = Submission(
        host=args.host,
        package=package,
        arguments=arguments,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        service_account=args.service_account,
        token=args.token,
        upload_as=args.upload,
    )
    try:
        submitted = submit(submission)
    except Exception as error:  # noqa: BLE001 - the kfp client raises urllib3/ApiException/ValueError: all are the user's to fix
        print(f"facesim pipeline submit: {args.host}: {describe_error(error)}", file=sys.stderr)
        return 1
    if submitted.pipeline_id:
        print(f"uploaded pipeline {args.upload} ({submitted.pipeline_id})")
    print(f"run {submitted.run_id} created: {submitted.run_url}")
    return 0

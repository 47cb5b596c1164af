"""The `facesim` console script: one entry point that dispatches to each component's CLI.

Components are imported lazily so that `facesim --help` (and the UI, which never imports
TensorFlow) start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    name: str
    target: str  # "module:function"; the function takes argv (list[str]) and returns an exit code
    summary: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("data", "facesim.storage.cli:main", "fetch and prepare face datasets (LFW, identity folders)"),
    Subcommand("train", "facesim.training.cli:train_main", "train FaceNet (local workers or a TFJob)"),
    Subcommand("model", "facesim.training.importer:main", "import pretrained weights as a model (faceapi-resnet)"),
    Subcommand("evaluate", "facesim.training.cli:evaluate_main", "score a model on LFW verification pairs"),
    Subcommand("tune", "facesim.tuning.cli:main", "tune margin / embedding size / learning rate (optuna or Katib)"),
    Subcommand("gallery", "facesim.gallery.cli:main", "build and inspect identity galleries"),
    Subcommand("serve", "facesim.inference.cli:serve_main", "run the KServe predictor (local or InferenceService)"),
    Subcommand("predict", "facesim.ui.predict:main", "query a predictor with an image"),
    Subcommand("ui", "facesim.ui.cli:main", "run the Flask web front end"),
    Subcommand("pipeline", "facesim.pipeline.cli:main", "compile, run locally, or submit the kfp pipeline"),
    Subcommand("manifests", "facesim.manifests:main", "render every cluster resource as YAML"),
    Subcommand("emulate", "facesim.emulator.cli:main", "run rendered cluster jobs and services here as pods"),
    Subcommand("images", "facesim.cluster.images:main", "build the container images of containers/ (podman or docker)"),
    Subcommand(
        "bench", "facesim.benchmarks.cli:main", "benchmarks: accuracy, training, gallery search, serving, soak, faults"
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim",
        description="Face similarity with FaceNet embeddings, the Kubeflow way. "
        "Run `facesim COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"facesim {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for sub in SUBCOMMANDS:
        commands.add_parser(sub.name, help=sub.summary, add_help=False)
    return parser


def _version() -> str:
    from facesim.contract.version import __version__

    return __version__


def _resolve(target: str):
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] not in {s.name for s in SUBCOMMANDS}:
        parser.parse_args(argv or ["--help"])
        return 2
    sub = next(s for s in SUBCOMMANDS if s.name == argv[0])
    try:
        return int(_resolve(sub.target)(argv[1:]) or 0)
    except KeyboardInterrupt:  # each command cleans up its own work (jobs, trials, servers) first
        print(f"facesim {sub.name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

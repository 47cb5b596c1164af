"""What each target cluster's operators accept (`--target`; docs/cluster.md has the matrix).

- `standalone` (the default): the versions docs/cluster.md installs (KServe 0.20, KFP 2.17.3,
  Katib 0.18, Training Operator 1.9).
- `kubeflow-1.10`: a Kubeflow 1.9/1.10 platform install (KServe 0.13-0.15, KFP backend 2.2-2.4,
  Katib 0.17, Training Operator 1.8/1.9). Its KServe knows the deployment modes RawDeployment,
  Serverless and ModelMesh, not Standard/Knative (kserve/kserve v0.14.1 pkg/constants/constants.go,
  `DeploymentModeType`), and its InferenceService CRD has no `scaleMetricType` (CPU targets are
  utilisation there); its KFP driver parses the compiled pipeline strictly and stops on fields it
  does not know (kubeflow/pipelines#12495: `pvcMount[].pvcNameParameter`, and the resource strings
  before 2.4); its Katib ignores `distribution: logUniform` (added in 0.18, kubeflow/katib#2334).

A compiled pipeline gives its target to every step as $FACESIM_TARGET, so the launchers inside the
steps (TFJob, Katib, InferenceService) render for the same cluster.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

TARGET_ENV = "FACESIM_TARGET"
# The deployment modes facesim takes, by their current KServe names; the former names are accepted too.
DEPLOYMENT_MODES = ("Standard", "Knative")
FORMER_MODE_NAMES = {"RawDeployment": "Standard", "Serverless": "Knative"}


@dataclass(frozen=True)
class Target:
    name: str
    kserve_modes: dict[str, str]  # facesim's mode name -> the annotation value this KServe knows
    kfp_strict_driver: bool  # the KFP driver rejects platform/resource fields it does not know
    katib_log_uniform: bool  # Katib samples `distribution: logUniform`
    kserve_scale_metric_type: bool  # the InferenceService CRD has spec.predictor.scaleMetricType

    def deployment_mode(self, mode: str) -> str:
        """The `serving.kserve.io/deploymentMode` value for `mode` (Standard or Knative, or a former name)."""
        return self.kserve_modes[canonical_mode(mode)]


TARGETS: dict[str, Target] = {
    "standalone": Target(
        "standalone",
        {"Standard": "Standard", "Knative": "Knative"},
        kfp_strict_driver=False,
        katib_log_uniform=True,
        kserve_scale_metric_type=True,
    ),
    "kubeflow-1.10": Target(
        "kubeflow-1.10",
        {"Standard": "RawDeployment", "Knative": "Serverless"},
        kfp_strict_driver=True,
        katib_log_uniform=False,
        kserve_scale_metric_type=False,
    ),
}
DEFAULT_TARGET = "standalone"


def canonical_mode(mode: str) -> str:
    """Standard or Knative for any of their names; ValueError names the choices."""
    mode = FORMER_MODE_NAMES.get(mode, mode)
    if mode not in DEPLOYMENT_MODES:
        choices = ", ".join([*DEPLOYMENT_MODES, *FORMER_MODE_NAMES])
        raise ValueError(f"deployment mode must be one of {choices}")
    return mode


def target(name: str | None = None) -> Target:
    """The target called `name`, else $FACESIM_TARGET, else standalone; ValueError for an unknown one."""
    name = name or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def _target_option(name: str) -> Target:
    try:
        return target(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_target_argument(parser: argparse._ActionsContainer) -> None:  # a parser or an argument group
    """--target, the same in every command that renders cluster resources (its value: a Target; a
    bad name, given or in $FACESIM_TARGET, is a usage error)."""
    parser.add_argument(
        "--target",
        type=_target_option,
        metavar="{" + ",".join(TARGETS) + "}",
        default=os.environ.get(TARGET_ENV) or DEFAULT_TARGET,
        help="the cluster the resources are for: standalone (the operator versions docs/cluster.md installs) or "
        f"kubeflow-1.10 (a Kubeflow 1.9/1.10 install: KServe 0.14, KFP 2.4, Katib 0.17); default: ${TARGET_ENV}, "
        "else %(default)s",
    )

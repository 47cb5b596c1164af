"""Does a compiled pipeline hold a field that the KFP 2.4.0 driver's protos lack?

The driver parses the pipeline spec and each step's Kubernetes platform spec with protobuf's
strict JSON parser: an unknown field stops the step (kubeflow/pipelines#12495). The field names
that backend knew are in kfp_2_4_0_fields.json (generated from the upstream protos at the commits
its go.mod pins; its `_source` says which). The walk takes each field's type from the protos of
the installed kfp (a superset), and checks each name against the 2.4.0 list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

KNOWN_2_4_0: dict[str, set[str]] = {
    name: set(fields)
    for name, fields in json.loads((Path(__file__).with_name("kfp_2_4_0_fields.json")).read_text())["messages"].items()
}
FREE_FORM = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
# Fields typed as Struct that the backend parses as a message of its own.
PARSED_AS: dict[tuple[str, str], Descriptor] = {
    ("ml_pipelines.PipelineSpec", "deploymentSpec"): pipeline_spec_pb2.PipelineDeploymentConfig.DESCRIPTOR,
    ("ml_pipelines.PlatformDeploymentConfig", "executors"): (
        kubernetes_executor_config_pb2.KubernetesExecutorConfig.DESCRIPTOR
    ),
}


def unknown_fields(value: Any, message: Descriptor, path: str = "") -> list[str]:
    """Paths of the fields in `value` (protobuf JSON of `message`) that KFP 2.4.0 does not know."""
    if not isinstance(value, dict):
        return [f"{path}: not an object"]
    problems = []
    known = KNOWN_2_4_0.get(message.full_name, set())
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        field = message.fields_by_camelcase_name.get(key) or message.fields_by_name.get(key)
        if field is None or key not in known:
            problems.append(where)
            continue
        problems += _walk_field(item, message, field, where)
    return problems


def _walk_field(value: Any, message: Descriptor, field: FieldDescriptor, path: str) -> list[str]:
    parsed_as = PARSED_AS.get((message.full_name, field.json_name))
    if field.message_type is None:
        return []
    if field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        element = parsed_as or value_field.message_type
        if element is None or (parsed_as is None and element.full_name in FREE_FORM):
            return []
        return [problem for key, item in value.items() for problem in unknown_fields(item, element, f"{path}.{key}")]
    element = parsed_as or field.message_type
    if parsed_as is None and element.full_name in FREE_FORM:
        return []
    items = value if field.is_repeated else [value]
    return [problem for item in items for problem in unknown_fields(item, element, path)]


def pipeline_problems(pipeline_spec: dict[str, Any], platform_spec: dict[str, Any]) -> list[str]:
    """Every field of a compiled pipeline (its two YAML documents) that the 2.4.0 driver would reject."""
    return unknown_fields(pipeline_spec, pipeline_spec_pb2.PipelineSpec.DESCRIPTOR) + unknown_fields(
        platform_spec, pipeline_spec_pb2.PlatformSpec.DESCRIPTOR
    )

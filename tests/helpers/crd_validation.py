"""Validate custom resources against the official CRDs (../shared/crds) with jsonschema.

A CRD's openAPIV3Schema is structural: the API server prunes or rejects fields it does not list
unless `x-kubernetes-preserve-unknown-fields` says otherwise. JSON Schema allows unknown fields by
default, so the conversion closes every object that lists properties, and turns
`x-kubernetes-int-or-string` into an explicit integer-or-string choice.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def to_json_schema(node: Any) -> Any:
    """A copy of a CRD schema node in plain JSON Schema terms."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserves_unknown = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserves_unknown:
        converted["additionalProperties"] = False
    return converted


@cache
def crd_validator(crd_path: Path, version: str) -> jsonschema.Draft7Validator:
    crd = yaml.load(
        crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )  # the KServe CRD is 2 MB
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return jsonschema.Draft7Validator(to_json_schema(served["schema"]["openAPIV3Schema"]))
    raise KeyError(f"{crd_path.name} serves no version {version}")


def crd_errors(resource: dict[str, Any], crd_path: Path) -> list[str]:
    """Every schema violation of `resource` (empty when the CRD accepts it)."""
    version = resource["apiVersion"].split("/")[-1]
    validator = crd_validator(crd_path, version)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}" for error in validator.iter_errors(resource)
    ]

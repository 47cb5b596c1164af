"""Validate custom resources against the official CRDs (../shared/crds) with jsonschema.

A CRD's openAPIV3Schema is structural: the API server prunes or rejects fields it does not list
unless `x-kubernetes-preserve-unknown-fields` says otherwise. JSON Schema allows unknown fields by
default, so the conversion closes every object that lists properties, turns
`x-kubernetes-int-or-string` into an explicit integer-or-string choice, and checks list types
(`x-kubernetes-list-type: map` items unique by their `x-kubernetes-list-map-keys`, defaults
applied first as the API server does; `set` items unique).

What this cannot check, `unchecked_rules` lists for a CRD: CEL rules (`x-kubernetes-validations`,
which need a CEL interpreter and, for transition rules, the old object), and everything under a
node that preserves unknown fields (the API server accepts anything there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

LIST_TYPE = "x-kubernetes-list-type"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"


def to_json_schema(node: Any) -> Any:
    """A copy of a CRD schema node in plain JSON Schema terms (list-type rules kept for `_list_type`)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    kept = (LIST_TYPE, LIST_MAP_KEYS)
    converted = {
        key: to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-") or key in kept
    }
    if node.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserves_unknown = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserves_unknown:
        converted["additionalProperties"] = False
    return converted


def _list_type(validator, list_type: str, instance: Any, schema: dict) -> Iterator[jsonschema.ValidationError]:
    """The API server's uniqueness rule for `map` lists (by their keys, defaults applied) and `set` lists."""
    if list_type not in ("map", "set") or not validator.is_type(instance, "array"):
        return
    keys = schema.get(LIST_MAP_KEYS, []) if list_type == "map" else []
    defaults = {name: spec.get("default") for name, spec in schema.get("items", {}).get("properties", {}).items()}
    seen: set = set()
    for item in instance:
        if keys and not isinstance(item, dict):
            continue  # the items schema reports the wrong type
        key = tuple(item.get(name, defaults.get(name)) for name in keys) if keys else json.dumps(item, sort_keys=True)
        if key in seen:
            shown = ", ".join(f"{name}={value!r}" for name, value in zip(keys, key, strict=True)) if keys else key
            yield jsonschema.ValidationError(f"duplicate entries for key [{shown}]")
        seen.add(key)


CrdValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {LIST_TYPE: _list_type})


def _version_schema(crd_path: Path, version: str) -> dict:
    crd = yaml.load(
        crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )  # the KServe CRD is 2 MB
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd_path.name} serves no version {version}")


@cache
def crd_validator(crd_path: Path, version: str) -> jsonschema.protocols.Validator:
    return CrdValidator(to_json_schema(_version_schema(crd_path, version)))


def crd_errors(resource: dict[str, Any], crd_path: Path) -> list[str]:
    """Every schema violation of `resource` (empty when the CRD accepts it)."""
    version = resource["apiVersion"].split("/")[-1]
    validator = crd_validator(crd_path, version)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}" for error in validator.iter_errors(resource)
    ]


def unchecked_rules(crd_path: Path, version: str) -> list[str]:
    """What `crd_errors` cannot check for this CRD version, one line per schema location."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        for rule in node.get("x-kubernetes-validations", []):
            found.append(f"{path or '.'}: CEL rule {rule['rule']!r} ({rule.get('message', 'no message')})")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{path or '.'}: unknown fields preserved, anything below is accepted")
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[]" if key == "items" else f"{path}.*")

    walk(_version_schema(crd_path, version), "")
    return found

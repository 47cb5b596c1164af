"""How people read what the predictor answers: identity names and the model card's numbers.

One module for every place that shows them (the UI's pages, `facesim predict`), so a count, a
learning rate or a template point reads the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DECIMALS = 4  # rates, AUC, thresholds
POINT_DECIMALS = 1  # pixel coordinates of the alignment template
SMALL = 1e-3  # below this (not 0) a value reads in scientific notation: 2e-05, not 0.0000
MISSING = "—"
SPLITS = (("val_", "Validation (fold 9)"), ("test_", "Test (fold 10)"))


def display_name(identity: str) -> str:
    """An identity key as a name: LFW's "George_W_Bush" reads "George W Bush"; the key is unchanged."""
    return identity.replace("_", " ")


def is_count(value: Any) -> bool:
    """Integers, and whole floats of 2 or more (model.json stores every metric as a float: 307011.0);
    rates, AUCs and thresholds live in [0, 1] or are fractional."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) >= 2


def format_number(value: float | int, decimals: int = DECIMALS) -> str:
    """307011.0 -> "307,011"; 2e-05 -> "2e-05"; 0.99333 -> "0.9933"."""
    if is_count(value):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < SMALL:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    return f"{value:,.{decimals}f}"


def is_point_list(value: Any) -> bool:
    """A list of (x, y) pairs: an alignment template's points."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(p, list | tuple) and len(p) == 2 and all(_is_number(c) for c in p) for p in value)
    )


def format_value(value: Any) -> str:
    """Any leaf of the model card as text: numbers as above, points to one decimal, lists joined."""
    if _is_number(value):
        return format_number(value)
    if is_point_list(value):
        return ", ".join(f"({format_number(x, POINT_DECIMALS)}, {format_number(y, POINT_DECIMALS)})" for x, y in value)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class MetricRow:
    """One metric, its validation and test values side by side (`other`: a metric of neither split)."""

    name: str
    validation: str = MISSING
    test: str = MISSING
    other: str | None = None


def metric_rows(metrics: dict[str, Any]) -> list[MetricRow]:
    """val_X and test_X in one row named X (in name order), then the metrics of neither split."""
    paired: dict[str, dict[str, str]] = {}
    others: list[MetricRow] = []
    for name, value in sorted(metrics.items()):
        split = next((prefix for prefix, _ in SPLITS if name.startswith(prefix)), None)
        if split is None:
            others.append(MetricRow(name, other=format_value(value)))
        else:
            paired.setdefault(name.removeprefix(split), {})[split] = format_value(value)
    rows = [
        MetricRow(name, values.get("val_", MISSING), values.get("test_", MISSING))
        for name, values in sorted(paired.items())
    ]
    return rows + others


def card_summary(card: dict[str, Any], model_version: str | None = None) -> list[tuple[str, str]]:
    """The model card's headline fields in reading order, formatted, skipping those it does not have."""
    fields = (
        ("Model", card.get("name", "facenet")),
        ("Version", card.get("version") or model_version),
        ("Created", card.get("created")),
        ("Code version", card.get("code_version")),
        ("Architecture", card.get("architecture")),
        ("Image size", card.get("image_size")),
        ("Embedding size", card.get("embedding_dim")),
        ("Triplet margin", card.get("margin")),
        ("Threshold (squared L2)", card.get("threshold")),
        ("Precision", precision(card)),
    )
    return [(label, format_value(value)) for label, value in fields if value is not None]


def precision(card: dict[str, Any]) -> str:
    """float32, or int8 with what its check found (`facesim model quantize` records it in model.json)."""
    quantization = card.get("quantization")
    if not isinstance(quantization, dict):
        return "float32"
    check = quantization.get("check") or {}
    right = {name: (check.get(name) or {}).get("fold10_correct_pairs") for name in ("int8", "float")}
    if not all(isinstance(value, int | float) for value in right.values()):
        return "int8"
    return f"int8 (fold 10: {right['int8']:.0f} pairs right, the float model {right['float']:.0f})"


def card_text(card: dict[str, Any], model_version: str | None = None) -> str:
    """The model card as the terminal shows it: headline fields, the metrics table, training and
    preprocessing as indented `key: value` lines."""
    lines = [f"{label}: {value}" for label, value in card_summary(card, model_version)]
    rows = metric_rows(card.get("metrics") or {})
    if rows:
        width = max(len(row.name) for row in rows)
        lines += ["", f"{'metric':<{width}}  {SPLITS[0][1]:>20}  {SPLITS[1][1]:>20}"]
        for row in rows:
            values = f"{row.other:>20}" if row.other is not None else f"{row.validation:>20}  {row.test:>20}"
            lines.append(f"{row.name:<{width}}  {values}")
    for section in ("training", "preprocessing", "quantization"):
        if card.get(section):
            lines += ["", f"{section}:", *_tree_lines(card[section], "  ")]
    return "\n".join(lines)


def _tree_lines(value: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for key, item in value.items():
        if item is None or item in ("", [], {}):
            continue
        if isinstance(item, dict):
            lines += [f"{indent}{key}:", *_tree_lines(item, indent + "  ")]
        else:
            lines.append(f"{indent}{key}: {format_value(item)}")
    return lines

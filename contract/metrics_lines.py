"""Metrics as `name=value` lines: what training prints and what Katib's StdOut collector reads.

The local tuner parses trial output with the same pattern as Katib (docs/protocol.md, fixed), so a
metric that Katib would miss is missed locally too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# Katib's default StdOut filter (katib pkg/metricscollector/v1beta1/common): name=value.
KATIB_METRIC_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
_PATTERN = re.compile(KATIB_METRIC_FILTER)


def format_metric(name: str, value: float) -> str:
    """One metric line; non-finite values are written so that Katib's filter skips them."""
    if not math.isfinite(value):
        return f"{name}=nan"
    return f"{name}={value:.6g}"


def parse_metrics(lines: Iterable[str]) -> list[tuple[str, float]]:
    """Every (name, value) the Katib filter finds, in order of appearance."""
    found: list[tuple[str, float]] = []
    for line in lines:
        for match in _PATTERN.finditer(line):
            text = match.group(2)
            if text in ("", "+", "-", ".") or not any(ch.isdigit() for ch in text):
                continue
            found.append((match.group(1), float(text)))
    return found


def latest_metrics(lines: Iterable[str]) -> dict[str, float]:
    """The last value seen of each metric (Katib's `latest` strategy)."""
    return dict(parse_metrics(lines))

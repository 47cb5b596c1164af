"""Metrics as `name=value` lines: what training prints and what Katib's StdOut collector reads.

The local tuner parses trial output with the same pattern as Katib (docs/protocol.md, fixed), so a
metric that Katib would miss is missed locally too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timezone

# Katib's default StdOut filter (katib pkg/metricscollector/v1beta1/common): name=value.
KATIB_METRIC_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
_PATTERN = re.compile(KATIB_METRIC_FILTER)


def format_metric(name: str, value: float, when: datetime | None = None) -> str | None:
    """One metric line, `<RFC 3339 UTC time> name=value`; None for a non-finite value.

    Katib's StdOut collector takes a line's first word as its timestamp when it parses as RFC 3339
    (else every value gets the zero time, and `latest` becomes whichever its database returns
    last). It records `name=nan` as an empty value, which can then win as `latest` and become the
    optimal trial's objective: such values are not printed at all.
    """
    if not math.isfinite(value):
        return None
    stamp = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds")
    return f"{stamp.replace('+00:00', 'Z')} {name}={value:.6g}"


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

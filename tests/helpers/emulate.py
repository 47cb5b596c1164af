"""`facesim emulate` as the emulator tests run it: pods as host processes, each one's log kept."""

from __future__ import annotations

import sys
from pathlib import Path


def emulate_command(files: list[Path], volumes: Path, logs: Path, timeout: int) -> list[str]:
    """The command running the rendered `files` as process pods (PVC `NAME` = folder `volumes/NAME`)."""
    return [
        sys.executable,
        "-m",
        "facesim",
        "emulate",
        "--runtime",
        "process",
        *map(str, files),
        "--volumes",
        str(volumes),
        "--timeout",
        str(timeout),
        "--logs",
        str(logs),
    ]

"""Where facesim keeps its own files (downloaded weights, the local registry).

It lives in `faces/` because `faces/` is the bottom package: the YuNet download cache needs it
and `storage.paths` re-exports it.
"""

from __future__ import annotations

import os
from pathlib import Path


def facesim_home() -> Path:
    """`$FACESIM_HOME`, default `~/.facesim`."""
    return Path(os.environ.get("FACESIM_HOME") or "~/.facesim").expanduser()

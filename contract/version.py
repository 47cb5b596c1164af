"""The code version: recorded in model.json and galleries, and the default image tag."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("facesim")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

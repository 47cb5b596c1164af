"""Where things live locally: `$FACESIM_HOME` and the local registry of models and galleries.

Registry layout: `registry_dir()/models/<name>/<version>/` and `.../galleries/<name>/<version>/`,
versions `v1`, `v2`, ... with a `latest` file naming the newest. `facesim serve` without
`--model`/`--gallery` serves the latest ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from facesim.faces.home import facesim_home

__all__ = [
    "facesim_home",
    "latest_gallery",
    "latest_model",
    "register_gallery",
    "register_model",
    "registered_version",
    "registry_dir",
    "versions",
]

KINDS = ("models", "galleries")


def registry_dir() -> Path:
    """`$FACESIM_REGISTRY`, default `$FACESIM_HOME/registry`."""
    return Path(os.environ.get("FACESIM_REGISTRY") or facesim_home() / "registry").expanduser()


def versions(kind: str, name: str) -> list[str]:
    """Registered versions, oldest first."""
    folder = _kind_dir(kind) / name
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.is_dir() and p.name[1:].isdigit() and p.name[0] == "v"]
    return sorted(found, key=lambda version: int(version[1:]))


def register(kind: str, source: str | Path, name: str) -> str:
    """Copy `source` into the registry as the next version and make it the latest; returns the version."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"cannot register {source}: it is not a directory")
    folder = _kind_dir(kind) / name
    folder.mkdir(parents=True, exist_ok=True)
    number = int(versions(kind, name)[-1][1:]) + 1 if versions(kind, name) else 1
    while True:  # mkdir is atomic: two registrations never get the same version
        staging = folder / f".v{number}.partial"
        try:
            staging.mkdir()
            break
        except FileExistsError:
            number += 1
    shutil.copytree(source, staging, dirs_exist_ok=True)
    version = f"v{number}"
    staging.rename(folder / version)
    pointer = folder / ".latest.partial"
    pointer.write_text(version + "\n")
    pointer.replace(folder / "latest")
    return version


def latest(kind: str, name: str) -> Path | None:
    """The directory of the latest version, or None when nothing is registered."""
    folder = _kind_dir(kind) / name
    pointer = folder / "latest"
    if pointer.is_file() and (folder / pointer.read_text().strip()).is_dir():
        return folder / pointer.read_text().strip()
    found = versions(kind, name)
    return folder / found[-1] if found else None


def register_model(model_dir: str | Path, name: str = "facenet") -> str:
    return register("models", model_dir, name)


def latest_model(name: str = "facenet") -> Path | None:
    return latest("models", name)


def register_gallery(gallery_dir: str | Path, name: str = "default") -> str:
    return register("galleries", gallery_dir, name)


def latest_gallery(name: str = "default") -> Path | None:
    return latest("galleries", name)


def registered_version(directory: str | Path, kind: str = "galleries") -> str | None:
    """`v3` when `directory` is a registered version in this registry, else None."""
    try:
        parts = Path(directory).resolve().relative_to(_kind_dir(kind).resolve()).parts
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 and parts[1][:1] == "v" and parts[1][1:].isdigit() else None


def _kind_dir(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}: one of {', '.join(KINDS)}")
    return registry_dir() / kind

"""Identity-folder datasets: ROOT/<identity>/<image>.jpg|png, one folder per person."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass
class IdentityDataset:
    root: Path
    identities: dict[str, list[Path]] = field(default_factory=dict)  # sorted names -> sorted image paths

    @classmethod
    def scan(cls, root: str | Path, only: Iterable[str] | None = None, limit: int | None = None) -> IdentityDataset:
        """Identity folders under `root` that hold images (hidden entries ignored).

        `only` keeps the named identities (all must exist); `limit` keeps the first N names.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder {root} does not exist: give a folder of identity folders")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if only is not None:
            wanted = set(only)
            missing = wanted - {folder.name for folder in folders}
            if missing:
                shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
                raise ValueError(f"{len(missing)} identities are not in {root}: {shown}")
            folders = [folder for folder in folders if folder.name in wanted]
        identities = {}
        for folder in folders:
            images = sorted(
                p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if images:
                identities[folder.name] = images
            if limit is not None and len(identities) >= limit:
                break
        return cls(root, identities)

    @property
    def num_images(self) -> int:
        return sum(len(images) for images in self.identities.values())

    def images(self) -> list[tuple[str, Path]]:
        """(identity, path) for every image, in a stable order."""
        return [(name, path) for name, paths in self.identities.items() for path in paths]

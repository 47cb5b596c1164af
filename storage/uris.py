"""Storage URIs as KServe and the cluster see them: `pvc://NAME/SUBPATH`, `file:///x`, plain paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

SCHEMES = ("pvc", "file")


@dataclass(frozen=True)
class StorageUri:
    scheme: str  # "pvc" or "file"
    path: str  # the subpath inside the claim (no leading slash) for pvc; a filesystem path for file
    claim: str | None = None  # the PersistentVolumeClaim's name, for pvc

    def __str__(self) -> str:
        if self.scheme == "pvc":
            return f"pvc://{self.claim}/{self.path}" if self.path else f"pvc://{self.claim}"
        return self.path

    def local_path(self, claim_mount: str | Path | None = None) -> Path:
        """Where the data is on this machine; a pvc URI needs where its claim is mounted."""
        if self.scheme == "file":
            return Path(self.path)
        if claim_mount is None:
            raise ValueError(f"{self} is on a cluster volume: give the directory where claim {self.claim!r} is mounted")
        return Path(claim_mount) / self.path


def parse_uri(uri: str | Path) -> StorageUri:
    """Parse a storage location; unsupported schemes (s3://, gs://, ...) are refused by name."""
    text = str(uri).strip()
    if not text:
        raise ValueError("empty storage location: give a path, file:///PATH or pvc://CLAIM/SUBPATH")
    if "://" not in text:
        return StorageUri("file", text)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{text}: file URIs name no host (use file:///absolute/path)")
        return StorageUri("file", unquote(parsed.path))
    if parsed.scheme == "pvc":
        if not parsed.netloc:
            raise ValueError(f"{text}: a pvc URI needs a claim name (pvc://CLAIM/SUBPATH)")
        subpath = PurePosixPath(unquote(parsed.path).lstrip("/"))
        if ".." in subpath.parts:
            raise ValueError(f"{text}: '..' may not leave the claim")
        return StorageUri("pvc", "" if str(subpath) == "." else str(subpath), parsed.netloc)
    raise ValueError(f"{text}: unsupported scheme {parsed.scheme!r}; use a path, file:// or pvc://")

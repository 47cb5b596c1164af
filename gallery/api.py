"""The gallery's API: the `Gallery` protocol both backends implement (store.py: SQLite in a directory;
postgres.py: PostgreSQL shared by replicas), the values it takes and returns, and its errors.

Callers (the predictor, the index, backups, the CLI) depend on this module, not on a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from facesim.contract.api import GALLERY_UNAVAILABLE, IdentityNameError
from facesim.contract.api import validate_identity as contract_identity

GALLERY_FORMAT = 1
# A gallery's location: a directory, or a PostgreSQL DSN.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(POSTGRES_SCHEMES)


def gallery_location(text: str) -> Path | str:
    """A command-line gallery: a DSN stays text (a Path would fold its `//`), anything else is a directory."""
    return text if is_postgres(text) else Path(text)


def redacted(location: str | Path) -> str:
    """A gallery location for messages and logs: a DSN's password replaced."""
    parts = urlsplit(str(location))
    if not is_postgres(location) or parts.password is None:
        return str(location)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


class GalleryError(ValueError):
    """A gallery problem a user can fix (bad identity name, wrong model, missing gallery)."""


class UnknownIdentity(GalleryError):
    pass


class IdempotencyConflict(GalleryError):
    """An idempotency key already used for another request (HTTP 422, as the IETF draft advises)."""


class GalleryUnavailable(Exception):
    """The gallery's database cannot be reached now; a retry later may succeed (HTTP 503).

    `str()` is the public message; `detail` (location without password, driver text) is for the
    log and for operators' command lines."""

    def __init__(self, detail: str):
        super().__init__(GALLERY_UNAVAILABLE)
        self.detail = detail


@dataclass(frozen=True)
class WriteRequest:
    """A write's idempotency key and its request's fingerprint (a hash of what was asked)."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class GalleryInfo:
    """What gallery.json records: which model's embedding space the rows live in."""

    model_version: str
    embedding_dim: int
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    source: dict = field(default_factory=dict)
    format: int = GALLERY_FORMAT
    calibration: dict | None = None  # `facesim gallery calibrate`: this gallery's own threshold (calibrate.py)


@dataclass(frozen=True)
class EnrolResult:
    identity: str
    added: int
    count: int
    version: int  # the gallery's change counter after the write (`gallery_edits` over HTTP)


@dataclass(frozen=True)
class GalleryRows:
    """Embedding rows read from the database: row ids, owner identity, vectors (N, D)."""

    version: int
    removals: int
    ids: np.ndarray
    identities: list[str]
    vectors: np.ndarray


@dataclass(frozen=True)
class GalleryChanges:
    """What was committed after an index's state, read in one snapshot: the identities removed
    (None when the removal log does not reach back: read everything), then the rows added."""

    removed: list[str] | None
    rows: GalleryRows


@dataclass(frozen=True)
class GallerySnapshot:
    """Every row of a gallery as of one moment (what backups and restores move)."""

    info: GalleryInfo
    version: int
    removals: int
    identities: list[tuple[str, bytes | None]]  # name, thumbnail
    embeddings: list[tuple[int, str, bytes, str | None]]  # row id, identity, vector bytes, source


@dataclass(frozen=True)
class IndexState:
    """Which gallery state an index reflects: its change counters and the largest row id read."""

    version: int = -1
    removals: int = -1
    last_id: int = 0


def validate_identity(name: object) -> str:
    """The contract's identity-name rule, failing with a GalleryError."""
    try:
        return contract_identity(name)
    except IdentityNameError as error:
        raise GalleryError(str(error)) from None


class ChangeListener(Protocol):
    """Announcements of other writers' commits (PostgreSQL's LISTEN/NOTIFY)."""

    def wait(self, timeout: float) -> bool: ...  # True on a commit, False on timeout
    def close(self) -> None: ...


class Gallery(Protocol):
    """Everything the predictor, the index, the routes, backups and the CLI use of a gallery, whichever
    backend keeps it (gallery/store.py: SQLite; gallery/postgres.py: PostgreSQL)."""

    info: GalleryInfo
    location: str  # for messages: a directory, or a DSN without its password

    @property
    def writable(self) -> bool: ...  # the database answered its last call
    def add(
        self,
        identity: str,
        vectors: np.ndarray,
        thumbnail: bytes | None = None,
        sources: list[str] | None = None,
        request: WriteRequest | None = None,
    ) -> EnrolResult: ...
    def remove(self, identity: str, request: WriteRequest | None = None) -> int: ...
    def erasure_digest(self, identity: str) -> str: ...
    def purge(self) -> float: ...
    def snapshot(self) -> GallerySnapshot: ...
    def identities(self) -> list[tuple[str, int]]: ...
    def thumbnail(self, identity: str) -> bytes | None: ...
    def counters(self) -> tuple[int, int]: ...
    def changes(self, since: IndexState) -> GalleryChanges: ...
    def listen(self) -> ChangeListener | None: ...  # None: no notifications (a directory is read per search)

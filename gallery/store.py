"""The gallery ("image database"): identities, their face embeddings and a thumbnail each.

Two backends keep the same rows behind one interface (`Gallery`, api.py): a directory holding
`gallery.json` (format, the model that made the embeddings, embedding size, provenance) and
`gallery.sqlite` (the rows), for one machine; and a PostgreSQL database (`postgresql://...`,
postgres.py) that several predictor replicas share. SQLite gives what enrolment needs
without our own locking: every change is one transaction (a kill -9 mid-write loses nothing
already committed), concurrent writers from threads or server workers are serialised, and the
change counter `version` lets every reader notice a change by reading one row.
Identity names are only ever stored as text values, never used as file names.

Faults outside the process: a database that cannot be reached raises `GalleryUnavailable` (HTTP
503, a public message; the details go to the log once per outage). A write may carry an
idempotency key (`WriteRequest`): the key and the write's answer are stored in the write's own
transaction, so a retry of an acknowledged write returns the first answer and changes nothing.
Removal erases: SQLite runs with `secure_delete` (freed pages are zeroed) and the removal log
records a keyed hash of the name, never the name (docs/gallery.md "Erasure").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facesim.gallery.api import (
    ChangeListener,
    EnrolResult,
    GalleryChanges,
    GalleryError,
    GalleryInfo,
    GalleryRows,
    GallerySnapshot,
    GalleryUnavailable,
    IdempotencyConflict,
    IndexState,
    UnknownIdentity,
    WriteRequest,
    validate_identity,
)
from facesim.storage.faults import pause_point

MANIFEST_NAME = "gallery.json"
DATABASE_NAME = "gallery.sqlite"
# Writers wait this long for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 30.0
# Idempotency keys are kept at least this long (a client retrying later than that gets a new write).
IDEMPOTENCY_TTL_S = 24 * 3600.0

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    name TEXT PRIMARY KEY,
    thumbnail BLOB
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL REFERENCES identities(name) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT
);
CREATE INDEX IF NOT EXISTS embeddings_identity ON embeddings(identity);
%s
INSERT OR IGNORE INTO meta VALUES ('version', 0), ('removals', 0);
"""
# Which identity each removal took (by the version it made), as a keyed hash of its name
# (`erasure_digest`): an index saved at an older version catches up by removing those, without
# reading the whole gallery again, and the log keeps no name of a removed person.
_REMOVAL_LOG = "CREATE TABLE IF NOT EXISTS removal_log (version INTEGER PRIMARY KEY, identity TEXT NOT NULL);"
# Added after the first galleries: created by every writer too (IF NOT EXISTS), so old galleries get them.
_WRITE_TABLES = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys(created);
CREATE TABLE IF NOT EXISTS erasure_key (id INTEGER PRIMARY KEY CHECK (id = 1), key BLOB NOT NULL);
INSERT OR IGNORE INTO erasure_key VALUES (1, randomblob(32));
"""
_SCHEMA = _SCHEMA % (_REMOVAL_LOG + _WRITE_TABLES)


class OutageLog:
    """Whether the gallery's database answered its last call; logs an outage once when it starts
    (with the details) and once when it ends, however many requests fail meanwhile."""

    def __init__(self, location: str):
        self.location = location
        self.writable = True
        self._lock = threading.Lock()

    def failed(self, detail: str) -> GalleryUnavailable:
        with self._lock:
            if self.writable:
                log.warning(
                    "gallery database %s unreachable (answering 503 until it is back): %s", self.location, detail
                )
            self.writable = False
        return GalleryUnavailable(f"gallery database {self.location}: {detail}")

    def succeeded(self) -> None:
        if self.writable:
            return
        with self._lock:
            if not self.writable:
                log.warning("gallery database %s reachable again", self.location)
            self.writable = True


def replayed_answer(request: WriteRequest | None, stored: tuple[str, str] | None) -> dict | None:
    """The first answer to a retried write (stored: fingerprint, answer JSON); None for a new key."""
    if request is None or stored is None:
        return None
    fingerprint, answer = stored
    if fingerprint != request.fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different request: send a new key for a new request"
        )
    return json.loads(answer)


@dataclass
class IdempotentWrite:
    """A write transaction in progress: `replay` is the first answer when the request is a retry (then
    nothing is written); otherwise the writer sets `answer`, stored with the key. Answers hold no
    names (the caller has them from the request): a removed person's name stays in no table."""

    db: Any
    replay: dict | None
    answer: dict = field(default_factory=dict)


def erasure_digest(key: bytes, identity: str) -> str:
    """The removal log's record of an identity: a keyed hash (the key stays in the gallery), not its name."""
    return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()


def checked_rows(
    info: GalleryInfo, identity: str, vectors: np.ndarray, sources: list[str] | None
) -> tuple[str, np.ndarray, list[str]]:
    """An enrolment's checked parts: a valid name, (N, D) float32 vectors, one source per row."""
    identity = validate_identity(identity)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != info.embedding_dim:
        raise GalleryError(f"embeddings must have shape (N, {info.embedding_dim}), got {vectors.shape}")
    sources = sources or [""] * len(vectors)
    if len(sources) != len(vectors):
        raise GalleryError(f"{len(vectors)} embeddings but {len(sources)} sources")
    return identity, vectors, sources


def log_covers(removed: Sequence[object], removals_now: int, since_removals: int) -> bool:
    """Whether the removal log holds every removal after an index's state (older galleries had no log)."""
    return since_removals >= 0 and len(removed) == removals_now - since_removals


class GalleryStore:
    """One gallery directory. Safe to use from several threads and processes at once."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST_NAME
        if not manifest.is_file() or not (self.directory / DATABASE_NAME).is_file():
            raise GalleryError(
                f"{self.directory} is not a gallery (no {MANIFEST_NAME} / {DATABASE_NAME}); "
                "build one with `facesim gallery build`"
            )
        self.info = GalleryInfo(**json.loads(manifest.read_text()))
        self.location = str(self.directory)
        self._outage = OutageLog(self.location)
        self._erasure_key: bytes | None = None

    @property
    def writable(self) -> bool:
        return self._outage.writable

    @classmethod
    def create(cls, directory: Path | str, info: GalleryInfo) -> GalleryStore:
        directory = Path(directory)
        if (directory / MANIFEST_NAME).exists():
            raise GalleryError(f"{directory} already holds a gallery; choose another --out")
        directory.mkdir(parents=True, exist_ok=True)
        with closing(sqlite_connect(directory / DATABASE_NAME)) as db:
            db.executescript(_SCHEMA)
        # The manifest goes last: a directory with a manifest is a complete gallery.
        _write_manifest(directory, info)
        return cls(directory)

    def set_info(self, info: GalleryInfo) -> None:
        """Replace gallery.json (atomically): e.g. to record a calibration."""
        _write_manifest(self.directory, info)
        self.info = info

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._reachable(), closing(sqlite_connect(self.directory / DATABASE_NAME)) as db:
            yield db

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """SQLite's own failures (locked past the busy timeout, disk full or read-only) as GalleryUnavailable."""
        try:
            yield
        except sqlite3.OperationalError as error:
            raise self._outage.failed(str(error)) from None
        self._outage.succeeded()

    @contextmanager
    def _write(self, request: WriteRequest | None = None) -> Iterator[IdempotentWrite]:
        """One write transaction, taken up front so concurrent writers queue instead of failing. A
        retried request (same idempotency key) finds its first answer in `replay` and changes nothing."""
        with self._reachable(), closing(sqlite_connect(self.directory / DATABASE_NAME)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _WRITE_TABLES.split(";")[:-1]:
                    db.execute(statement)
                stored = (
                    None
                    if request is None
                    else db.execute(
                        "SELECT fingerprint, answer FROM idempotency_keys WHERE key = ?", (request.key,)
                    ).fetchone()
                )
                write = IdempotentWrite(db, replayed_answer(request, stored))
                yield write
                if write.replay is not None:
                    db.execute("ROLLBACK")
                    return
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
                db.execute("DELETE FROM idempotency_keys WHERE created < ?", (time.time() - IDEMPOTENCY_TTL_S,))
                if request is not None:
                    db.execute(
                        "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?)",
                        (request.key, request.fingerprint, json.dumps(write.answer), time.time()),
                    )
                pause_point("gallery-commit")  # test hook (storage/faults.py): crash tests kill a writer here
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def counters(self) -> tuple[int, int]:
        """(version, removals): version counts every change, removals every identity removal."""
        with self._read() as db:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return int(rows["version"]), int(rows["removals"])

    def add(
        self,
        identity: str,
        vectors: np.ndarray,
        thumbnail: bytes | None = None,
        sources: list[str] | None = None,
        request: WriteRequest | None = None,
    ) -> EnrolResult:
        """Add embeddings (N, D) to an identity, creating it (with its thumbnail) if new."""
        identity, vectors, sources = checked_rows(self.info, identity, vectors, sources)
        with self._write(request) as write:
            if write.replay is not None:
                return EnrolResult(identity=identity, **write.replay)
            db = write.db
            db.execute("INSERT OR IGNORE INTO identities(name, thumbnail) VALUES (?, ?)", (identity, thumbnail))
            if thumbnail is not None:
                db.execute(
                    "UPDATE identities SET thumbnail = ? WHERE name = ? AND thumbnail IS NULL",
                    (thumbnail, identity),
                )
            db.executemany(
                "INSERT INTO embeddings(identity, vector, source) VALUES (?, ?, ?)",
                [(identity, row.tobytes(), src) for row, src in zip(vectors, sources)],
            )
            count = db.execute("SELECT COUNT(*) FROM embeddings WHERE identity = ?", (identity,)).fetchone()[0]
            write.answer = {"added": len(vectors), "count": count, "version": _meta(db, "version") + 1}
        return EnrolResult(identity=identity, **write.answer)

    def remove(self, identity: str, request: WriteRequest | None = None) -> int:
        """Remove an identity and all its embeddings; returns how many embeddings went. Freed pages
        are zeroed (secure_delete) and the journal checkpointed: no copy stays in the files."""
        with self._write(request) as write:
            if write.replay is not None:
                return int(write.replay["removed"])
            db = write.db
            removed = db.execute("DELETE FROM embeddings WHERE identity = ?", (identity,)).rowcount
            if db.execute("DELETE FROM identities WHERE name = ?", (identity,)).rowcount == 0:
                raise UnknownIdentity(f"no identity {identity!r} in the gallery")
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'removals'")
            db.execute(_REMOVAL_LOG)  # galleries made before the log existed get it now
            digest = erasure_digest(_erasure_key(db), identity)
            db.execute("INSERT INTO removal_log VALUES (?, ?)", (_meta(db, "version") + 1, digest))
            write.answer = {"removed": removed}
        with self._reachable(), closing(sqlite_connect(self.directory / DATABASE_NAME)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a WAL (if one is used) keeps no copy either
        return removed

    def purge(self) -> float:
        """Rewrite the database file without free pages (VACUUM; removed rows are zeroed already by
        secure_delete); returns the seconds it took."""
        started = time.perf_counter()
        with self._reachable(), closing(sqlite_connect(self.directory / DATABASE_NAME)) as db:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return time.perf_counter() - started

    def erasure_digest(self, identity: str) -> str:
        if not self._erasure_key:  # (a gallery never written since the key arrived has none yet)
            with self._read() as db:
                self._erasure_key = _erasure_key(db)
        return erasure_digest(self._erasure_key, identity)

    def identities(self) -> list[tuple[str, int]]:
        with self._read() as db:
            return db.execute(
                "SELECT i.name, COUNT(e.id) FROM identities i LEFT JOIN embeddings e ON e.identity = i.name "
                "GROUP BY i.name ORDER BY i.name"
            ).fetchall()

    def thumbnail(self, identity: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT thumbnail FROM identities WHERE name = ?", (identity,)).fetchone()
        if row is None:
            raise UnknownIdentity(f"no identity {identity!r} in the gallery")
        return row[0]

    def rows(self, after_id: int = 0) -> GalleryRows:
        """Embedding rows with id > after_id (all by default), read in one consistent snapshot."""
        with self._read() as db:
            db.execute("BEGIN")  # one read transaction: counters and rows agree
            rows = self._rows(db, after_id)
            db.execute("COMMIT")
        return rows

    def changes(self, since: IndexState) -> GalleryChanges:
        return changes_since(since, self._removed_and_rows, self.rows)

    def _removed_and_rows(self, since: IndexState) -> tuple[list[str], GalleryRows]:
        with self._read() as db:
            db.execute("BEGIN")  # one read transaction: the log, the counters and the rows agree
            removed = (
                [
                    name
                    for (name,) in db.execute(
                        "SELECT identity FROM removal_log WHERE version > ? ORDER BY version", (since.version,)
                    )
                ]
                if _has_table(db, "removal_log")
                else []
            )
            rows = self._rows(db, since.last_id)
            db.execute("COMMIT")
        return removed, rows

    def listen(self) -> ChangeListener | None:
        return None  # writers announce nothing: readers compare the counters (one row) per search

    def snapshot(self) -> GallerySnapshot:
        with self._read() as db:
            db.execute("BEGIN")  # one read transaction
            snapshot = GallerySnapshot(
                self.info,
                _meta(db, "version"),
                _meta(db, "removals"),
                db.execute("SELECT name, thumbnail FROM identities ORDER BY name").fetchall(),
                db.execute("SELECT id, identity, vector, source FROM embeddings ORDER BY id").fetchall(),
            )
            db.execute("COMMIT")
        return snapshot

    def _rows(self, db: sqlite3.Connection, after_id: int) -> GalleryRows:
        version, removals = _meta(db, "version"), _meta(db, "removals")
        count = db.execute("SELECT COUNT(*) FROM embeddings WHERE id > ?", (after_id,)).fetchone()[0]
        cursor = db.execute("SELECT id, identity, vector FROM embeddings WHERE id > ? ORDER BY id", (after_id,))
        return read_rows(cursor, count, self.info.embedding_dim, version, removals)


def changes_since(
    since: IndexState,
    removed_and_rows: Callable[[IndexState], tuple[list[str], GalleryRows]],
    all_rows: Callable[[], GalleryRows],
) -> GalleryChanges:
    """What was committed after `since`, from one snapshot of the removal log and the newer rows; every
    row when the index has read nothing yet or the log does not reach back to its state."""
    if since.removals < 0:
        return GalleryChanges(removed=None, rows=all_rows())
    removed, rows = removed_and_rows(since)
    if not log_covers(removed, rows.removals, since.removals):
        return GalleryChanges(removed=None, rows=all_rows())
    return GalleryChanges(removed=removed, rows=rows)


def read_rows(cursor: Iterator[tuple], count: int, dim: int, version: int, removals: int) -> GalleryRows:
    """(id, identity, vector bytes) rows into arrays, filled row by row from the cursor: a
    million-row gallery never exists twice in memory."""
    ids, vectors, identities = np.empty(count, np.int64), np.empty((count, dim), np.float32), []
    for i, (row_id, identity, vector) in enumerate(cursor):
        ids[i], vectors[i] = row_id, np.frombuffer(vector, np.float32)
        identities.append(identity)
    return GalleryRows(version=version, removals=removals, ids=ids, identities=identities, vectors=vectors)


def sqlite_connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE / COMMIT above).
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    # Deleted rows are overwritten with zeros, whatever the library's compile-time default.
    db.execute("PRAGMA secure_delete = ON")
    return db


def _erasure_key(db: sqlite3.Connection) -> bytes:
    row = db.execute("SELECT key FROM erasure_key WHERE id = 1").fetchone() if _has_table(db, "erasure_key") else None
    if row is None:  # a gallery made before the key existed, never written since: nothing is logged under it
        return b""
    return bytes(row[0])


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _meta(db: sqlite3.Connection, key: str) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def _write_manifest(directory: Path, info: GalleryInfo) -> None:
    tmp = directory / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    tmp.replace(directory / MANIFEST_NAME)

"""The gallery in PostgreSQL: one database that every predictor replica shares (`postgresql://...`).

The same rows and guarantees as the SQLite gallery (gallery.py): every change is one transaction
(a replica killed mid-enrolment loses nothing it acknowledged), a version counter orders the
changes, names are only ever values. Search stays in each replica's FAISS index (Debian's
PostgreSQL has no pgvector): the database is the durable shared store.

Writers serialise on the gallery's one meta row (SELECT ... FOR UPDATE), so versions and row ids
are handed out in commit order: a replica that has read every row up to id N at version V never
misses a row committed later with a smaller id. Each commit sends `NOTIFY facesim_gallery, '<version>'`;
replicas LISTEN to wake up at once and poll as the fallback (gallery_follow.py).
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np
import psycopg

from facesim.inference.gallery import (
    EnrolResult,
    GalleryChanges,
    GalleryError,
    GalleryInfo,
    GalleryRows,
    UnknownIdentity,
    checked_rows,
    log_covers,
    read_rows,
    redacted,
)
from facesim.storage.faults import pause_point

if TYPE_CHECKING:
    from facesim.inference.search import IndexState

CHANNEL = "facesim_gallery"
CONNECT_TIMEOUT_S = 10
IDLE_CONNECTIONS = 4
ROWS_PER_FETCH = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facesim_gallery (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    info jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    removals bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS facesim_identities (name text PRIMARY KEY, thumbnail bytea);
CREATE TABLE IF NOT EXISTS facesim_embeddings (
    id bigserial PRIMARY KEY,
    identity text NOT NULL REFERENCES facesim_identities(name) ON DELETE CASCADE,
    vector bytea NOT NULL,
    source text
);
CREATE INDEX IF NOT EXISTS facesim_embeddings_identity ON facesim_embeddings(identity);
CREATE TABLE IF NOT EXISTS facesim_removal_log (version bigint PRIMARY KEY, identity text NOT NULL);
"""


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as error:
        raise GalleryError(f"cannot reach the gallery database {redacted(dsn)}: {str(error).strip()}") from None


class PostgresGallery:
    """A gallery in a PostgreSQL database. Safe to use from several threads, processes and replicas."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.location = redacted(dsn)
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue(IDLE_CONNECTIONS)
        with self._transaction() as db:
            exists = db.execute("SELECT to_regclass('facesim_gallery') IS NOT NULL").fetchone()[0]
            row = db.execute("SELECT info FROM facesim_gallery").fetchone() if exists else None
        if row is None:
            raise GalleryError(
                f"{self.location} holds no gallery: create one with `facesim gallery init --out DSN` "
                "(or `facesim gallery build ... --out DSN`)"
            )
        self.info = GalleryInfo(**row[0])

    @classmethod
    def create(cls, dsn: str, info: GalleryInfo) -> PostgresGallery:
        with connect(dsn) as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('facesim_gallery'))")  # one creator at a time
            db.execute(_SCHEMA)
            if db.execute("SELECT 1 FROM facesim_gallery").fetchone():
                raise GalleryError(f"{redacted(dsn)} already holds a gallery; use another database")
            db.execute("INSERT INTO facesim_gallery(info) VALUES (%s)", (json.dumps(asdict(info)),))
        return cls(dsn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection (REPEATABLE READ for reads: one snapshot)."""
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = connect(self.dsn, autocommit=True)  # transactions are explicit: BEGIN ... COMMIT below
        try:
            with db.transaction():  # rolled back on any exception
                if read_only:
                    db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield db
        except psycopg.OperationalError as error:
            db.close()  # a broken connection is not pooled again
            raise GalleryError(f"gallery database {self.location}: {str(error).strip()}") from None
        finally:
            self._release(db)

    def _release(self, db: psycopg.Connection) -> None:
        if db.closed or db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            db.close()
            return
        try:
            self._idle.put_nowait(db)
        except queue.Full:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[tuple[psycopg.Connection, int]]:
        """A write transaction holding the meta row: yields (connection, the version it will commit)."""
        with self._transaction() as db:
            version = db.execute("SELECT version FROM facesim_gallery FOR UPDATE").fetchone()[0] + 1
            yield db, version
            db.execute("UPDATE facesim_gallery SET version = %s", (version,))
            db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))  # delivered on commit

    def counters(self) -> tuple[int, int]:
        with self._transaction() as db:
            version, removals = db.execute("SELECT version, removals FROM facesim_gallery").fetchone()
        return int(version), int(removals)

    def add(
        self,
        identity: str,
        vectors: np.ndarray,
        thumbnail: bytes | None = None,
        sources: list[str] | None = None,
    ) -> EnrolResult:
        identity, vectors, sources = checked_rows(self.info, identity, vectors, sources)
        with self._write() as (db, version):
            db.execute(
                "INSERT INTO facesim_identities(name, thumbnail) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                "SET thumbnail = COALESCE(facesim_identities.thumbnail, EXCLUDED.thumbnail)",
                (identity, thumbnail),
            )
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO facesim_embeddings(identity, vector, source) VALUES (%s, %s, %s)",
                    [(identity, row.tobytes(), src) for row, src in zip(vectors, sources)],
                )
            count = db.execute("SELECT COUNT(*) FROM facesim_embeddings WHERE identity = %s", (identity,)).fetchone()[0]
            pause_point("gallery-postgres-commit")  # test hook (storage/faults.py): crash tests kill a writer here
        return EnrolResult(identity=identity, added=len(vectors), count=int(count), version=version)

    def remove(self, identity: str) -> int:
        with self._write() as (db, version):
            removed = db.execute("DELETE FROM facesim_embeddings WHERE identity = %s", (identity,)).rowcount
            if db.execute("DELETE FROM facesim_identities WHERE name = %s", (identity,)).rowcount == 0:
                raise UnknownIdentity(f"no identity {identity!r} in the gallery")
            db.execute("UPDATE facesim_gallery SET removals = removals + 1")
            db.execute("INSERT INTO facesim_removal_log VALUES (%s, %s)", (version, identity))
        return removed

    def identities(self) -> list[tuple[str, int]]:
        with self._transaction(read_only=True) as db:
            return db.execute(
                "SELECT i.name, COUNT(e.id) FROM facesim_identities i "
                "LEFT JOIN facesim_embeddings e ON e.identity = i.name GROUP BY i.name ORDER BY i.name"
            ).fetchall()

    def thumbnail(self, identity: str) -> bytes | None:
        with self._transaction(read_only=True) as db:
            row = db.execute("SELECT thumbnail FROM facesim_identities WHERE name = %s", (identity,)).fetchone()
        if row is None:
            raise UnknownIdentity(f"no identity {identity!r} in the gallery")
        return None if row[0] is None else bytes(row[0])

    def rows(self, after_id: int = 0) -> GalleryRows:
        with self._transaction(read_only=True) as db:
            return self._rows(db, after_id)

    def changes(self, since: IndexState) -> GalleryChanges:
        if since.removals < 0:
            return GalleryChanges(removed=None, rows=self.rows())
        with self._transaction(read_only=True) as db:
            removed = [
                name
                for (name,) in db.execute(
                    "SELECT identity FROM facesim_removal_log WHERE version > %s ORDER BY version", (since.version,)
                )
            ]
            rows = self._rows(db, since.last_id)
        if not log_covers(removed, rows.removals, since.removals):
            return GalleryChanges(removed=None, rows=self.rows())
        return GalleryChanges(removed=removed, rows=rows)

    def _rows(self, db: psycopg.Connection, after_id: int) -> GalleryRows:
        version, removals = db.execute("SELECT version, removals FROM facesim_gallery").fetchone()
        count = db.execute("SELECT COUNT(*) FROM facesim_embeddings WHERE id > %s", (after_id,)).fetchone()[0]
        with db.cursor(name="gallery_rows", binary=True) as cursor:  # server-side: streamed, not all at once
            cursor.itersize = ROWS_PER_FETCH
            cursor.execute("SELECT id, identity, vector FROM facesim_embeddings WHERE id > %s ORDER BY id", (after_id,))
            return read_rows(cursor, int(count), self.info.embedding_dim, int(version), int(removals))

    def listen(self) -> ChangeListener:
        return ChangeListener(self.dsn)


class ChangeListener:
    """A connection LISTENing on the gallery's channel: `wait(timeout)` returns on a commit or timeout."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._db: psycopg.Connection | None = None

    def wait(self, timeout: float) -> bool:
        """True when a change was announced; False on timeout. A lost connection is reopened next time."""
        if self._db is None or self._db.closed:
            self._db = connect(self.dsn, autocommit=True)
            self._db.execute(f"LISTEN {CHANNEL}")
        try:
            return any(True for _ in self._db.notifies(timeout=timeout, stop_after=1))
        except psycopg.OperationalError:
            self.close()
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

"""The gallery in PostgreSQL: one database that every predictor replica shares (`postgresql://...`).

The same rows and guarantees as the SQLite gallery (store.py): every change is one transaction
(a replica killed mid-enrolment loses nothing it acknowledged), a version counter orders the
changes, names are only ever values. Search stays in each replica's FAISS index (Debian's
PostgreSQL has no pgvector): the database is the durable shared store.

Writers serialise on the gallery's one meta row (SELECT ... FOR UPDATE), so versions and row ids
are handed out in commit order: a replica that has read every row up to id N at version V never
misses a row committed later with a smaller id. Each commit sends `NOTIFY facesim_gallery, '<version>'`;
replicas LISTEN to wake up at once and poll as the fallback (GalleryFollower in index.py).

A database that cannot be reached raises GalleryUnavailable (logged once per outage, OutageLog);
idle pooled connections are dropped then, so the first call after the outage opens fresh ones.
"""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import psycopg

from facesim.gallery.api import (
    EnrolResult,
    GalleryChanges,
    GalleryError,
    GalleryInfo,
    GalleryRows,
    GallerySnapshot,
    GalleryUnavailable,
    IndexState,
    UnknownIdentity,
    WriteRequest,
    redacted,
)
from facesim.gallery.store import (
    IDEMPOTENCY_TTL_S,
    IdempotentWrite,
    OutageLog,
    changes_since,
    checked_rows,
    erasure_digest,
    read_rows,
    replayed_answer,
)
from facesim.storage.faults import pause_point

CHANNEL = "facesim_gallery"
CONNECT_TIMEOUT_S = 10
IDLE_CONNECTIONS = 4
ROWS_PER_FETCH = 10_000

_SCHEMA = (
    """
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
    + """
CREATE TABLE IF NOT EXISTS facesim_idempotency_keys (
    key text PRIMARY KEY, fingerprint text NOT NULL, answer text NOT NULL, created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS facesim_idempotency_keys_created ON facesim_idempotency_keys(created);
CREATE TABLE IF NOT EXISTS facesim_erasure_key (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), key bytea NOT NULL);
"""
)
# The tables the gallery's rows live in: `facesim gallery purge` rewrites them, a backup copies them.
TABLES = (
    "facesim_gallery",
    "facesim_identities",
    "facesim_embeddings",
    "facesim_removal_log",
    "facesim_idempotency_keys",
    "facesim_erasure_key",
)


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as error:
        raise GalleryUnavailable(f"cannot reach the gallery database {redacted(dsn)}: {str(error).strip()}") from None


def _upgrade(db: psycopg.Connection) -> None:
    """The schema, created or completed (tables added since a gallery was made), one creator at a time."""
    db.execute("SELECT pg_advisory_xact_lock(hashtext('facesim_gallery'))")
    db.execute(_SCHEMA)
    db.execute("INSERT INTO facesim_erasure_key(key) VALUES (%s) ON CONFLICT DO NOTHING", (os.urandom(32),))


class PostgresGallery:
    """A gallery in a PostgreSQL database. Safe to use from several threads, processes and replicas."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.location = redacted(dsn)
        self._outage = OutageLog(self.location)
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue(IDLE_CONNECTIONS)
        # Its own connection, not the pool's: a start waiting for the database (wait_for_gallery)
        # reports that itself, rather than an outage per attempt.
        with connect(dsn) as db, db.transaction():
            exists = db.execute("SELECT to_regclass('facesim_gallery') IS NOT NULL").fetchone()[0]
            row = db.execute("SELECT info FROM facesim_gallery").fetchone() if exists else None
            if row is not None and db.execute("SELECT to_regclass('facesim_erasure_key') IS NULL").fetchone()[0]:
                _upgrade(db)
        if row is None:
            raise GalleryError(
                f"{self.location} holds no gallery: create one with `facesim gallery init --out DSN` "
                "(or `facesim gallery build ... --out DSN`)"
            )
        self.info = GalleryInfo(**row[0])
        self._erasure_key: bytes | None = None

    @property
    def writable(self) -> bool:
        return self._outage.writable

    @classmethod
    def create(cls, dsn: str, info: GalleryInfo) -> PostgresGallery:
        with connect(dsn) as db, db.transaction():
            _upgrade(db)
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
            try:
                db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            except psycopg.OperationalError as error:  # transactions are explicit: BEGIN ... COMMIT below
                raise self._outage.failed(str(error).strip()) from None
        try:
            with db.transaction():  # rolled back on any exception
                if read_only:
                    db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield db
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:  # (InterfaceError: a lost connection)
            db.close()  # a broken connection is not pooled again, nor are the idle ones (as broken)
            self.close()
            raise self._outage.failed(str(error).strip()) from None
        finally:
            self._release(db)
        self._outage.succeeded()

    def _release(self, db: psycopg.Connection) -> None:
        if db.closed or db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            db.close()
            return
        try:
            self._idle.put_nowait(db)
        except queue.Full:
            db.close()

    @contextmanager
    def _write(self, request: WriteRequest | None = None) -> Iterator[tuple[IdempotentWrite, int]]:
        """A write transaction holding the meta row: yields (the write, the version it will commit). A
        retried request (same idempotency key) finds its first answer in `replay` and changes nothing."""
        with self._transaction() as db:
            version = db.execute("SELECT version FROM facesim_gallery FOR UPDATE").fetchone()[0] + 1
            stored = None
            if request is not None:
                stored = db.execute(
                    "SELECT fingerprint, answer FROM facesim_idempotency_keys WHERE key = %s", (request.key,)
                ).fetchone()
            write = IdempotentWrite(db, replayed_answer(request, stored))
            yield write, version
            if write.replay is not None:
                return  # nothing written: the transaction ends without a change
            db.execute("UPDATE facesim_gallery SET version = %s", (version,))
            db.execute(
                "DELETE FROM facesim_idempotency_keys WHERE created < now() - make_interval(secs => %s)",
                (IDEMPOTENCY_TTL_S,),
            )
            if request is not None:
                db.execute(
                    "INSERT INTO facesim_idempotency_keys(key, fingerprint, answer) VALUES (%s, %s, %s)",
                    (request.key, request.fingerprint, json.dumps(write.answer)),
                )
            db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))  # delivered on commit
            pause_point("gallery-postgres-commit")  # test hook (storage/faults.py): the writes done, no COMMIT yet

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
        request: WriteRequest | None = None,
    ) -> EnrolResult:
        identity, vectors, sources = checked_rows(self.info, identity, vectors, sources)
        with self._write(request) as (write, version):
            if write.replay is not None:
                return EnrolResult(identity=identity, **write.replay)
            db = write.db
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
            write.answer = {"added": len(vectors), "count": int(count), "version": version}
        return EnrolResult(identity=identity, **write.answer)

    def remove(self, identity: str, request: WriteRequest | None = None) -> int:
        """Remove an identity; its old row versions stay in the table files until `purge()`."""
        with self._write(request) as (write, version):
            if write.replay is not None:
                return int(write.replay["removed"])
            db = write.db
            removed = db.execute("DELETE FROM facesim_embeddings WHERE identity = %s", (identity,)).rowcount
            if db.execute("DELETE FROM facesim_identities WHERE name = %s", (identity,)).rowcount == 0:
                raise UnknownIdentity(f"no identity {identity!r} in the gallery")
            db.execute("UPDATE facesim_gallery SET removals = removals + 1")
            digest = erasure_digest(self._key(db), identity)
            db.execute("INSERT INTO facesim_removal_log VALUES (%s, %s)", (version, digest))
            write.answer = {"removed": removed}
        return removed

    def erasure_digest(self, identity: str) -> str:
        if self._erasure_key is None:
            with self._transaction(read_only=True) as db:
                self._erasure_key = self._key(db)
        return erasure_digest(self._erasure_key, identity)

    def _key(self, db: psycopg.Connection) -> bytes:
        return bytes(db.execute("SELECT key FROM facesim_erasure_key").fetchone()[0])

    def purge(self) -> float:
        """Rewrite the gallery's tables (VACUUM FULL, with their indexes and TOAST tables) so that no
        removed row's old version stays in their files, refresh the planner statistics (their
        samples are rewritten too), and checkpoint. Takes an exclusive lock while it runs: writes
        and reads wait. Returns the seconds it took."""
        started = time.perf_counter()
        with connect(self.dsn, autocommit=True) as db:  # VACUUM runs outside a transaction
            db.execute(f"VACUUM (FULL, ANALYZE) {', '.join(TABLES)}")
            # Superusers only: the old statistics' samples (values of the tables' columns), and the
            # checkpoint that lets the server delete the old files (docs/gallery.md "Erasure").
            if db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
                db.execute("VACUUM FULL pg_catalog.pg_statistic")
                db.execute("CHECKPOINT")
        return time.perf_counter() - started

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
        return changes_since(since, self._removed_and_rows, self.rows)

    def _removed_and_rows(self, since: IndexState) -> tuple[list[str], GalleryRows]:
        with self._transaction(read_only=True) as db:  # one snapshot: the log, the counters and the rows agree
            removed = [
                name
                for (name,) in db.execute(
                    "SELECT identity FROM facesim_removal_log WHERE version > %s ORDER BY version", (since.version,)
                )
            ]
            return removed, self._rows(db, since.last_id)

    def snapshot(self) -> GallerySnapshot:
        with self._transaction(read_only=True) as db:
            version, removals = db.execute("SELECT version, removals FROM facesim_gallery").fetchone()
            identities = db.execute("SELECT name, thumbnail FROM facesim_identities ORDER BY name").fetchall()
            embeddings = db.execute(
                "SELECT id, identity, vector, source FROM facesim_embeddings ORDER BY id", binary=True
            ).fetchall()
        return GallerySnapshot(
            self.info,
            int(version),
            int(removals),
            [(name, None if thumbnail is None else bytes(thumbnail)) for name, thumbnail in identities],
            [(int(i), name, bytes(vector), source) for i, name, vector, source in embeddings],
        )

    def _rows(self, db: psycopg.Connection, after_id: int) -> GalleryRows:
        version, removals = db.execute("SELECT version, removals FROM facesim_gallery").fetchone()
        count = db.execute("SELECT COUNT(*) FROM facesim_embeddings WHERE id > %s", (after_id,)).fetchone()[0]
        with db.cursor(name="gallery_rows", binary=True) as cursor:  # server-side: streamed, not all at once
            cursor.itersize = ROWS_PER_FETCH
            cursor.execute("SELECT id, identity, vector FROM facesim_embeddings WHERE id > %s ORDER BY id", (after_id,))
            return read_rows(cursor, int(count), self.info.embedding_dim, int(version), int(removals))

    def listen(self) -> ChangeListener:
        return ChangeListener(self.dsn)


def restore_into(dsn: str, snapshot: GallerySnapshot, other_model: Callable[[str], str]) -> None:
    """Fill a database with a snapshot's rows: a new gallery, or one of the same model whose rows are
    replaced in one transaction (its replicas then read it again: the counters move past theirs, with
    no removal log reaching back). `other_model(theirs)` words the refusal of another model's gallery."""
    with connect(dsn) as db, db.transaction():
        _upgrade(db)
        row = db.execute("SELECT info, version, removals FROM facesim_gallery FOR UPDATE").fetchone()
        if row is None:
            version, removals = snapshot.version, snapshot.removals
            db.execute("INSERT INTO facesim_gallery(info) VALUES (%s)", (json.dumps(asdict(snapshot.info)),))
        elif row[0]["model_version"] != snapshot.info.model_version:
            raise GalleryError(other_model(f"the gallery at {redacted(dsn)} ({row[0]['model_version']})"))
        else:
            version, removals = max(row[1], snapshot.version) + 1, max(row[2], snapshot.removals) + 1
            db.execute("DELETE FROM facesim_identities")  # the embeddings go with them (ON DELETE CASCADE)
            db.execute("DELETE FROM facesim_removal_log")
            db.execute("UPDATE facesim_gallery SET info = %s", (json.dumps(asdict(snapshot.info)),))
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO facesim_identities(name, thumbnail) VALUES (%s, %s)", snapshot.identities)
            cursor.executemany(
                "INSERT INTO facesim_embeddings(id, identity, vector, source) VALUES (%s, %s, %s, %s)",
                snapshot.embeddings,
            )
        db.execute(
            "SELECT setval(pg_get_serial_sequence('facesim_embeddings', 'id'), GREATEST(MAX(id), 1)) "
            "FROM facesim_embeddings"
        )
        db.execute("UPDATE facesim_gallery SET version = %s, removals = %s", (version, removals))
        db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))


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
        except psycopg.OperationalError as error:
            self.close()
            raise GalleryUnavailable(f"gallery notifications: {str(error).strip()}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

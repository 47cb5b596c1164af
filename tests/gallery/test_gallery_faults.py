"""Faults outside the process, on both gallery backends, without a model or a server: idempotent
writes, a removal log without names, an unreachable database (GalleryUnavailable, the start's wait)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from facesim.contract.api import GALLERY_UNAVAILABLE
from facesim.gallery.api import (
    Gallery,
    GalleryError,
    GalleryInfo,
    GalleryUnavailable,
    IdempotencyConflict,
    IndexState,
    UnknownIdentity,
    WriteRequest,
)
from facesim.gallery.backends import create_gallery, open_gallery, wait_for_gallery
from facesim.gallery.index import LiveGalleryIndex
from facesim.gallery.store import DATABASE_NAME, IDEMPOTENCY_TTL_S, sqlite_connect

DIM = 16
UNREACHABLE = "postgresql://someone:secret@127.0.0.1:1/none"


def unit_rows(seed: int, n: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery(request: pytest.FixtureRequest, tmp_path: Path) -> Gallery:
    location = tmp_path / "gallery" if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")
    return create_gallery(location, GalleryInfo(model_version="test", embedding_dim=DIM))


def test_a_retried_write_returns_its_first_answer_and_changes_nothing(gallery: Gallery) -> None:
    enrol = WriteRequest("key-1", "fingerprint of the enrolment")
    first = gallery.add("ada", unit_rows(0, 2), thumbnail=b"jpeg", request=enrol)
    counters = gallery.counters()
    again = gallery.add("ada", unit_rows(0, 2), thumbnail=b"jpeg", request=enrol)
    assert again == first and gallery.counters() == counters and dict(gallery.identities()) == {"ada": 2}
    with pytest.raises(IdempotencyConflict, match="different request"):
        gallery.add("bob", unit_rows(1, 1), request=WriteRequest("key-1", "another body"))
    assert gallery.counters() == counters
    # A write without a key, or with a new one, is a new write.
    assert gallery.add("ada", unit_rows(2, 1)).count == 3
    removal = WriteRequest("key-2", "fingerprint of the removal")
    assert gallery.remove("ada", removal) == 3
    counters = gallery.counters()
    assert gallery.remove("ada", removal) == 3 and gallery.counters() == counters
    with pytest.raises(UnknownIdentity):  # without the key, the person is simply gone
        gallery.remove("ada")
    # A refused write stores no key: its retry is refused again, not answered from a store.
    with pytest.raises(UnknownIdentity):
        gallery.remove("nobody", WriteRequest("key-3", "x"))
    with pytest.raises(UnknownIdentity):
        gallery.remove("nobody", WriteRequest("key-3", "x"))


def test_removal_log_keeps_no_name_and_an_index_still_catches_up(gallery: Gallery) -> None:
    gallery.add("Canary Person", unit_rows(3, 2))
    gallery.add("Other Person", unit_rows(4, 1))
    index = LiveGalleryIndex(gallery, approximate_threshold=1)  # IVF: removal by ids in FAISS too
    index.refresh()
    gallery.remove("Canary Person")
    index.refresh()  # catches up through the removal log
    matches, _ = index.search(unit_rows(3, 1), 5)
    assert [m.identity for m in matches[0]] == ["Other Person"]
    logged = gallery.changes(IndexState(version=0, removals=0)).removed
    assert logged == [gallery.erasure_digest("Canary Person")] and "Canary" not in logged[0]


def test_sqlite_keys_live_at_least_a_day_and_erasure_is_set_by_facesim(tmp_path: Path) -> None:
    gallery = create_gallery(tmp_path / "g", GalleryInfo(model_version="test", embedding_dim=DIM))
    gallery.add("a", unit_rows(0, 1), request=WriteRequest("old", "f"))
    gallery.add("b", unit_rows(1, 1), request=WriteRequest("recent", "f"))
    database = tmp_path / "g" / DATABASE_NAME
    with sqlite3.connect(database) as db:
        db.execute("UPDATE idempotency_keys SET created = ? WHERE key = 'old'", (time.time() - IDEMPOTENCY_TTL_S - 60,))
        db.execute(
            "UPDATE idempotency_keys SET created = ? WHERE key = 'recent'", (time.time() - IDEMPOTENCY_TTL_S + 600,)
        )
    gallery.add("c", unit_rows(2, 1))  # every write prunes expired keys
    with sqlite3.connect(database) as db:
        assert [key for (key,) in db.execute("SELECT key FROM idempotency_keys")] == ["recent"]
    assert sqlite_connect(database).execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_an_unreachable_database_is_unavailable_naming_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(GalleryError, match="gave up after waiting 0.6 s") as gave_up:
        wait_for_gallery(UNREACHABLE, 0.6)
    assert 0.6 <= time.monotonic() - started < 5
    assert "Connection refused" in str(gave_up.value) and "secret" not in str(gave_up.value)
    with pytest.raises(GalleryUnavailable) as unavailable:
        open_gallery(UNREACHABLE)
    assert str(unavailable.value) == GALLERY_UNAVAILABLE

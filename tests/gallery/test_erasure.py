"""Erasure that holds: a canary identity is enrolled, removed (and, on PostgreSQL, purged), the
server stopped, and then every byte of the gallery's files is searched for its name, its
thumbnail and its vector. Each test first shows that the search finds the canary while it is
there, so a search that cannot see is not mistaken for an erasure."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import psycopg

from facesim.benchmarks.postgres_local import local_postgres
from facesim.gallery.api import GalleryInfo
from facesim.gallery.backends import create_gallery
from facesim.gallery.cli import main as gallery_main
from facesim.gallery.index import LiveGalleryIndex

DIM = 64
NAME = "Canary Zqxj Wolfram"


def canary(seed: int = 7) -> dict[str, bytes | np.ndarray]:
    """Random bytes cannot be compressed: the thumbnail is stored as it is (out of line, in TOAST on PostgreSQL)."""
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=(1, DIM)).astype(np.float32)
    return {"vector": vector / np.linalg.norm(vector), "thumbnail": rng.bytes(4096)}


def found(files: Iterable[Path], needles: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Which needles occur (any of their pieces) in which files."""
    hits: dict[str, list[str]] = {}
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            for what, pieces in needles.items():
                if any(piece in data for piece in pieces):
                    hits.setdefault(what, []).append(path.name)
    return hits


def needles_of(vector: np.ndarray, thumbnail: bytes) -> dict[str, list[bytes]]:
    """The thumbnail in 64-byte pieces: a database splits a large value across pages."""
    pieces = [thumbnail[i : i + 64] for i in range(0, len(thumbnail), 64)]
    return {"name": [NAME.encode()], "thumbnail": pieces, "vector": [vector.tobytes()]}


def others(count: int) -> np.ndarray:
    rows = np.random.default_rng(1).normal(size=(count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_sqlite_canary_leaves_no_byte_in_the_gallery_files(tmp_path: Path) -> None:
    directory = tmp_path / "gallery"
    gallery = create_gallery(directory, GalleryInfo(model_version="test", embedding_dim=DIM))
    for i, row in enumerate(others(40)):
        gallery.add(f"person {i}", row[None], thumbnail=b"jpeg")
    bird = canary()
    gallery.add(NAME, bird["vector"], thumbnail=bird["thumbnail"])
    # What the predictor keeps beside a directory gallery: the saved FAISS index (approximate search).
    index = LiveGalleryIndex(gallery, approximate_threshold=1, index_dir=directory / "index")
    index.refresh()
    index.save()
    needles = needles_of(bird["vector"], bird["thumbnail"])
    assert set(found(directory.rglob("*"), needles)) == {"name", "thumbnail", "vector"}

    # What the predictor's removal does (FaceNetPredictor.remove), then the process ends.
    gallery.remove(NAME)
    index.refresh()
    index.save()
    del index, gallery
    assert found(directory.rglob("*"), needles) == {}
    assert sorted(p.name for p in directory.iterdir()) == ["gallery.json", "gallery.sqlite", "index"]


def test_postgres_canary_leaves_no_byte_outside_pg_wal_after_purge() -> None:
    with local_postgres() as server:
        dsn = server.create_database("erasure")
        gallery = create_gallery(dsn, GalleryInfo(model_version="test", embedding_dim=DIM))
        for i, row in enumerate(others(40)):
            gallery.add(f"person {i}", row[None], thumbnail=b"jpeg")
        bird = canary()
        gallery.add(NAME, bird["vector"], thumbnail=bird["thumbnail"])
        gallery.remove(NAME)
        gallery.close()
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CHECKPOINT")  # the pages on disk, as any later checkpoint would put them
        needles = needles_of(bird["vector"], bird["thumbnail"])

        def data_files() -> list[Path]:
            return [p for p in server.data_dir.rglob("*") if "pg_wal" not in p.relative_to(server.data_dir).parts]

        # DELETE alone leaves every copy in the table, TOAST and index files: why purge exists.
        assert set(found(data_files(), needles)) == {"name", "thumbnail", "vector"}
        assert gallery_main(["purge", dsn]) == 0
        server.stop("fast")
        assert found(data_files(), needles) == {}

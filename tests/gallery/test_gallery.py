"""The gallery store (SQLite) and identity search (exact and FAISS), without a model or a server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facesim.benchmarks.gallery import face_like_gallery
from facesim.gallery.api import GalleryError, GalleryInfo, UnknownIdentity, validate_identity
from facesim.gallery.index import EmbeddingIndex, LiveGalleryIndex
from facesim.gallery.store import DATABASE_NAME, GalleryStore
from tests.helpers.crash import (
    integrity_check,
    kill_9_while_paused,
    orphan_embeddings,
    pause_env,
    write_transaction_open,
)

DIM = 16
HOSTILE_NAMES = ("<script>alert(1)</script>", "a/../b", "../../etc/passwd", "Zoë O'Brien", "名前", "x" * 128)


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path) -> GalleryStore:
    return GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="test", embedding_dim=DIM))


def test_enrol_list_thumbnail_remove_round_trip(store: GalleryStore) -> None:
    rng = np.random.default_rng(0)
    first = store.add("alice", unit_rows(rng, 2), thumbnail=b"jpeg-alice")
    second = store.add("alice", unit_rows(rng, 1))
    assert (first.count, second.count, second.added) == (2, 3, 1)
    assert second.version > first.version
    store.add("bob", unit_rows(rng, 1))
    assert store.identities() == [("alice", 3), ("bob", 1)]
    assert store.thumbnail("alice") == b"jpeg-alice"
    assert store.thumbnail("bob") is None
    assert store.remove("alice") == 3
    assert store.identities() == [("bob", 1)]
    with pytest.raises(UnknownIdentity):
        store.remove("alice")
    with pytest.raises(UnknownIdentity):
        store.thumbnail("alice")


def test_identity_names_are_data_never_paths(store: GalleryStore) -> None:
    before = sorted(os.listdir(store.directory))
    rng = np.random.default_rng(1)
    for name in HOSTILE_NAMES:
        store.add(name, unit_rows(rng, 1), thumbnail=name.encode())
    assert sorted(os.listdir(store.directory)) == before  # no file was created for any name
    assert {name for name, _ in store.identities()} == set(HOSTILE_NAMES)
    assert all(store.thumbnail(name) == name.encode() for name in HOSTILE_NAMES)
    assert not (store.directory.parent / "b").exists()


@pytest.mark.parametrize("bad", ["", "   ", "tab\there", "new\nline", "nul\x00", "x" * 129, 42, None])
def test_bad_identity_names_are_refused(bad: object, store: GalleryStore) -> None:
    with pytest.raises(GalleryError):
        validate_identity(bad)
    with pytest.raises(GalleryError):
        store.add(bad, np.zeros((1, DIM), np.float32))  # type: ignore[arg-type]


def test_wrong_embedding_shape_is_refused(store: GalleryStore) -> None:
    with pytest.raises(GalleryError, match="shape"):
        store.add("carol", np.zeros((1, DIM + 1), np.float32))


def test_opening_a_non_gallery_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="facesim gallery build"):
        GalleryStore(tmp_path)


def brute_force(queries: np.ndarray, rows: np.ndarray, owners: list[str], k: int) -> list[list[str]]:
    """Identity ranking by each identity's closest row, computed the slow obvious way."""
    answers = []
    for query in queries:
        best: dict[str, float] = {}
        for row, owner in zip(rows, owners):
            best[owner] = min(best.get(owner, np.inf), float(np.sum((query - row) ** 2)))
        answers.append(sorted(best, key=best.get)[:k])
    return answers


def test_exact_search_ranks_identities_by_their_closest_embedding() -> None:
    rng = np.random.default_rng(2)
    rows = unit_rows(rng, 300)
    owners = [f"id{int(i)}" for i in rng.integers(0, 60, size=300)]  # 1..many rows per identity
    index = EmbeddingIndex(DIM)
    index.add(rows, owners)
    queries = unit_rows(rng, 20)
    found = index.search(queries, 5)
    assert [[m.identity for m in matches] for matches in found] == brute_force(queries, rows, owners, 5)
    distances = [m.distance for m in found[0]]
    assert distances == sorted(distances)
    best = rows[[i for i, o in enumerate(owners) if o == found[0][0].identity]]
    assert distances[0] == pytest.approx(float(np.min(np.sum((best - queries[0]) ** 2, axis=1))), abs=1e-5)


def test_approximate_search_recall_against_exact() -> None:
    """Face-like data (identities are clusters; queries are other samples of an identity, as in
    `facesim bench gallery`): the IVF index finds exact search's identities."""
    gallery = face_like_gallery(20_000, 200, dim=64, seed=3)
    exact, approximate = (
        EmbeddingIndex(64, approximate_threshold=10**9),
        EmbeddingIndex(64, approximate_threshold=1000),
    )
    exact.add(gallery.rows, gallery.owners)
    approximate.add(gallery.rows, gallery.owners)
    assert approximate.approximate and not exact.approximate
    k = 5
    exact_top = [[m.identity for m in ms] for ms in exact.search(gallery.probes, k)]
    approx_top = [[m.identity for m in ms] for ms in approximate.search(gallery.probes, k)]
    recall_at_1 = np.mean([a[0] == e[0] for a, e in zip(approx_top, exact_top)])
    recall_at_k = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx_top, exact_top)])
    assert recall_at_1 >= 0.99 and recall_at_k >= 0.9, f"IVF recall@1 {recall_at_1:.3f}, @{k} {recall_at_k:.3f}"


@pytest.mark.parametrize("approximate_threshold", [10**6, 1], ids=["exact", "ivf"])
def test_live_index_follows_enrolments_and_removals(store: GalleryStore, approximate_threshold: int) -> None:
    rng = np.random.default_rng(4)
    live = LiveGalleryIndex(store, approximate_threshold)
    alice = unit_rows(rng, 1)
    store.add("alice", alice)
    matches, version = live.search(alice, 1)
    assert matches[0][0].identity == "alice" and matches[0][0].distance == pytest.approx(0, abs=1e-5)
    store.add("bob", alice * -1)
    matches, newer = live.search(-alice, 2)
    assert newer > version and [m.identity for m in matches[0]] == ["bob", "alice"]
    store.remove("bob")
    matches, _ = live.search(-alice, 2)
    assert [m.identity for m in matches[0]] == ["alice"]


ENROL = textwrap.dedent(
    """
    import sys, numpy as np
    from facesim.gallery.store import GalleryStore
    store = GalleryStore(sys.argv[1])
    for i in range(int(sys.argv[3])):
        store.add(f"person {i}", np.ones((50, int(sys.argv[2])), np.float32))
        print(i, flush=True)  # printed only after the commit
    """
)


def test_kill_9_between_insert_and_commit_loses_nothing_committed(store: GalleryStore, tmp_path: Path) -> None:
    """The writer stops in its 6th transaction, rows inserted but not committed, and is SIGKILLed there."""
    marker, database = tmp_path / "paused", store.directory / DATABASE_NAME
    writer = subprocess.Popen(
        [sys.executable, "-c", ENROL, str(store.directory), str(DIM), "10"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **pause_env("gallery-commit", 6, marker)},
    )

    def while_paused() -> None:
        assert write_transaction_open(database), "the kill must land inside a write transaction"
        assert "person 5" not in dict(store.identities())  # its rows are written, but not visible

    assert kill_9_while_paused(writer, marker, while_paused) == ["0", "1", "2", "3", "4"]  # the acknowledged
    assert integrity_check(database) == "ok"
    assert store.identities() == [(f"person {i}", 50) for i in range(5)]  # each once, complete; nothing else
    assert orphan_embeddings(database) == 0 and store.counters() == (5, 0)
    store.add("after the crash", np.ones((1, DIM), np.float32))  # still writable


def _enrol_many(directory: str, worker: int, count: int) -> None:
    store = GalleryStore(directory)
    for i in range(count):
        store.add(f"worker {worker} person {i}", np.full((2, DIM), worker, np.float32))


def test_concurrent_enrolments_from_processes_lose_nothing(store: GalleryStore) -> None:
    workers, each = 4, 15
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_enrol_many, [str(store.directory)] * workers, range(workers), [each] * workers))
    identities = store.identities()
    assert len(identities) == workers * each
    assert all(count == 2 for _, count in identities)
    assert store.counters()[0] == workers * each

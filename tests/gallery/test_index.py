"""The persisted FAISS index: saved beside the gallery with its version, loaded (not rebuilt) at start,
catching up on enrolments and removals committed since; removals never rebuild it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesim.benchmarks.gallery import face_like_gallery
from facesim.gallery import index as search
from facesim.gallery.api import GalleryInfo
from facesim.gallery.index import INDEX_POINTER, EmbeddingIndex, LiveGalleryIndex
from facesim.gallery.store import GalleryStore

DIM = 32
THRESHOLD = 200  # small galleries still go through the IVF path


def fill(store: GalleryStore, rows: np.ndarray, owners: list[str]) -> None:
    for name in dict.fromkeys(owners):
        store.add(name, rows[[i for i, owner in enumerate(owners) if owner == name]])


@pytest.fixture
def gallery(tmp_path: Path) -> tuple[GalleryStore, np.ndarray, list[str], np.ndarray]:
    data = face_like_gallery(400, 30, dim=DIM, seed=5)
    store = GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="m1", embedding_dim=DIM))
    fill(store, data.rows, data.owners)
    return store, data.rows, data.owners, data.probes


def no_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the IVF index was rebuilt")

    monkeypatch.setattr(search, "build_ivf", refuse)


def exact_answers(store: GalleryStore, probes: np.ndarray, k: int = 3) -> list[list[str]]:
    exact = LiveGalleryIndex(store, approximate_threshold=10**9)
    return [[m.identity for m in ms] for ms in exact.search(probes, k)[0]]


def test_saved_index_is_loaded_then_catches_up_without_a_rebuild(gallery, tmp_path, monkeypatch) -> None:
    store, rows, owners, probes = gallery
    index_dir = tmp_path / "index"
    first = LiveGalleryIndex(store, THRESHOLD, index_dir)
    first.refresh()
    assert first.loaded_from == "gallery rows" and first.describe()["kind"] == "ivf"
    assert first.save() is not None
    saved = json.loads((index_dir / INDEX_POINTER).read_text())
    assert saved["state"]["version"] == store.counters()[0] and saved["size"] == len(rows)

    # Committed after the save: an enrolment, a removal, and a re-enrolment under a removed name.
    store.add("newcomer", probes[:1])
    store.remove(owners[0])
    store.remove(owners[-1])
    store.add(owners[-1], probes[1:2])
    no_rebuilds(monkeypatch)
    second = LiveGalleryIndex(store, THRESHOLD, index_dir)
    matches, version = second.search(probes, 3)
    assert second.loaded_from == f"saved index v{saved['state']['version']}"
    assert version == store.counters()[0]
    found = [[m.identity for m in ms] for ms in matches]
    assert found[0][0] == "newcomer" and found[1][0] == owners[-1]
    assert all(owners[0] not in names for names in found)
    assert second.describe()["size"] == sum(count for _, count in store.identities())
    assert [names[0] for names in found] == [names[0] for names in exact_answers(store, probes)]


def test_removal_deletes_ids_in_place(gallery, monkeypatch) -> None:
    store, rows, owners, _ = gallery
    index = EmbeddingIndex(DIM, THRESHOLD)
    index.add(rows, owners)
    no_rebuilds(monkeypatch)
    victim = owners[10]
    held = owners.count(victim)
    assert index.remove_identity(victim) == held and index.size == len(rows) - held
    own_row = rows[owners.index(victim)]
    assert victim not in [m.identity for m in index.search(own_row, 5)[0]]
    assert index.remove_identity(victim) == 0


def test_another_gallerys_index_is_not_loaded(gallery, tmp_path) -> None:
    store, *_ = gallery
    index_dir = tmp_path / "index"
    first = LiveGalleryIndex(store, THRESHOLD, index_dir)
    first.refresh()
    assert first.save() is not None
    other = GalleryStore.create(tmp_path / "other", GalleryInfo(model_version="m2", embedding_dim=DIM))
    other.add("someone", np.eye(1, DIM, dtype=np.float32))
    live = LiveGalleryIndex(other, THRESHOLD, index_dir)
    assert live.search(np.eye(1, DIM, dtype=np.float32), 1)[0][0][0].identity == "someone"
    assert live.loaded_from == "gallery rows"


def test_a_damaged_index_falls_back_to_the_gallery(gallery, tmp_path) -> None:
    store, rows, *_ = gallery
    index_dir = tmp_path / "index"
    first = LiveGalleryIndex(store, THRESHOLD, index_dir)
    first.refresh()
    first.save()
    saved = json.loads((index_dir / INDEX_POINTER).read_text())
    (index_dir / saved["faiss_file"]).write_bytes(b"not a faiss index")
    second = LiveGalleryIndex(store, THRESHOLD, index_dir)
    second.refresh()
    assert second.loaded_from == "gallery rows" and second.describe()["size"] == len(rows)


def test_growth_far_past_the_trained_size_reclusters() -> None:
    data = face_like_gallery(3000, 20, dim=DIM, seed=6)
    index = EmbeddingIndex(DIM, approximate_threshold=100)
    index.add(data.rows[:100], data.owners[:100])
    lists_when_small = index.lists
    index.add(data.rows[100:], data.owners[100:])
    assert index.trained_size == 3000 and index.lists > lists_when_small
    exact = EmbeddingIndex(DIM, approximate_threshold=10**9)
    exact.add(data.rows, data.owners)
    assert [ms[0].identity for ms in index.search(data.probes, 1)] == [
        ms[0].identity for ms in exact.search(data.probes, 1)
    ]

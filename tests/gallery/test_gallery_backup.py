"""`facesim gallery backup` / `restore`: a copy taken while a predictor serves the gallery answers
exactly as the original; a removed identity is in no later backup; another model's gallery is
refused; a PostgreSQL gallery goes to a directory and back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesim.benchmarks.postgres_local import LocalPostgres
from facesim.contract.client import PredictorClient
from facesim.gallery.api import GalleryError, GalleryInfo
from facesim.gallery.backends import create_gallery, open_gallery
from facesim.gallery.backup import backup_gallery, restore_gallery
from facesim.gallery.cli import main as gallery_main
from facesim.gallery.index import LiveGalleryIndex
from facesim.inference.local_server import local_predictor
from tests.conftest import GALLERY_LFW_PEOPLE

DIM = 16


def probe_photos(lfw_dir: Path, count: int = 20) -> list[Path]:
    """Photos of the gallery's LFW people it was not built from (it took each one's first 3)."""
    images = lfw_dir / "lfw-deepfunneled"
    per_person = -(-count // len(GALLERY_LFW_PEOPLE))
    photos = [p for name in GALLERY_LFW_PEOPLE for p in sorted((images / name).glob("*.jpg"))[3 : 3 + per_person]]
    return photos[:count]


def top3(url: str, photos: list[Path]) -> list[list[list[tuple[str, float]]]]:
    client = PredictorClient(url)
    answers = [client.predict(photo.read_bytes(), top_k=3)["predictions"][0]["faces"] for photo in photos]
    return [[[(m["identity"], m["distance"]) for m in face["matches"]] for face in faces] for faces in answers]


def test_backup_while_serving_then_restore_answers_identically(
    predictor_url: str,
    tiny_model_dir: Path,
    lfw_dir: Path,
    yunet_path: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    served = tmp_path_factory.getbasetemp() / "predictor0" / "gallery"  # predictor_url's copy (tests/conftest.py)
    assert gallery_main(["backup", str(served), str(tmp_path / "backup")]) == 0
    assert gallery_main(["restore", str(tmp_path / "backup"), "--out", str(tmp_path / "restored")]) == 0
    photos = probe_photos(lfw_dir)
    assert len(photos) == 20
    expected = top3(predictor_url, photos)
    assert sum(len(faces) for faces in expected) >= 20 and all(faces and faces[0] for faces in expected)
    env = {"FACESIM_YUNET_MODEL": str(yunet_path), "FACESIM_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with local_predictor(tiny_model_dir, tmp_path / "restored", env=env, log_path=tmp_path / "restored.log") as url:
        assert top3(url, photos) == expected


def unit_rows(seed: int, n: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_postgres_backup_restore_keeps_removed_people_out_and_refuses_another_model(
    postgres: LocalPostgres, postgres_dsn: str, tmp_path: Path
) -> None:
    gallery = create_gallery(postgres_dsn, GalleryInfo(model_version="model-a", embedding_dim=DIM))
    for i in range(5):
        gallery.add(f"person {i}", unit_rows(i, 2), thumbnail=f"jpeg {i}".encode())
    gallery.add("Removed Canary", unit_rows(99, 2), thumbnail=b"canary")
    gallery.remove("Removed Canary")
    backup = tmp_path / "backup"
    assert gallery_main(["backup", postgres_dsn, str(backup)]) == 0
    for path in backup.rglob("*"):
        assert b"Removed Canary" not in path.read_bytes()

    restored_dsn = postgres.create_database("restored_a")
    assert gallery_main(["restore", str(backup), "--out", restored_dsn]) == 0
    original, restored = gallery.snapshot(), open_gallery(restored_dsn).snapshot()
    assert (restored.identities, restored.embeddings) == (original.identities, original.embeddings)

    # Into a served gallery of the same model: its rows replaced, and a following index reads them again.
    other = postgres.create_database("other_a")
    target = create_gallery(other, GalleryInfo(model_version="model-a", embedding_dim=DIM))
    target.add("stranger", unit_rows(50, 1))
    index = LiveGalleryIndex(target, approximate_threshold=10)
    index.refresh()
    assert gallery_main(["restore", str(backup), "--out", other]) == 0
    index.refresh()
    assert index.search(unit_rows(0, 1), 1)[0][0][0].identity == "person 0"
    assert "stranger" not in dict(open_gallery(other).identities())

    foreign = postgres.create_database("model_b")
    create_gallery(foreign, GalleryInfo(model_version="model-b", embedding_dim=DIM))
    with pytest.raises(GalleryError, match=r"model model-a, not of the gallery at .*model-b"):
        restore_gallery(backup, foreign)
    assert gallery_main(["restore", str(backup), "--out", foreign]) == 2
    directory = tmp_path / "as-directory"
    assert gallery_main(["restore", str(backup), "--out", str(directory)]) == 0
    assert open_gallery(directory).snapshot().embeddings == original.embeddings


def test_sqlite_backup_after_a_removal_holds_no_copy_and_is_refused_for_another_model(tmp_path: Path) -> None:
    gallery = create_gallery(tmp_path / "gallery", GalleryInfo(model_version="model-a", embedding_dim=DIM))
    gallery.add("person", unit_rows(1, 2))
    gallery.add("Removed Canary", unit_rows(99, 2), thumbnail=b"canary thumbnail bytes")
    gallery.remove("Removed Canary")
    summary = backup_gallery(tmp_path / "gallery", tmp_path / "backup")
    assert (summary.identities, summary.embeddings, summary.model_version) == (1, 2, "model-a")
    for path in (tmp_path / "backup").rglob("*"):
        data = path.read_bytes()
        assert (
            b"Removed Canary" not in data and b"canary thumbnail" not in data and unit_rows(99, 2).tobytes() not in data
        )
    create_gallery(tmp_path / "other", GalleryInfo(model_version="model-b", embedding_dim=DIM))
    with pytest.raises(GalleryError, match=r"model model-a, not of the gallery at .*model-b"):
        restore_gallery(tmp_path / "backup", tmp_path / "other")
    with pytest.raises(GalleryError, match="not of the model given"):
        restore_gallery(tmp_path / "backup", tmp_path / "new", model_versions=("model-b",))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_a_backup_taken_during_writes_is_one_snapshot(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    location = tmp_path / "gallery" if backend == "sqlite" else request.getfixturevalue("postgres_dsn")
    gallery = create_gallery(location, GalleryInfo(model_version="model-a", embedding_dim=DIM))
    stop = threading.Event()

    def write() -> None:  # every change adds one row: a consistent copy has as many rows as changes
        for i in range(100_000):
            if stop.is_set():
                return
            gallery.add(f"writer {i}", unit_rows(i, 1))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while gallery.counters()[0] < 20:
            time.sleep(0.01)
        summaries = [backup_gallery(location, tmp_path / f"backup{i}") for i in range(3)]
    finally:
        stop.set()
        writer.join()
    assert all(summary.version == summary.embeddings >= 20 for summary in summaries)
    assert gallery.counters()[0] > summaries[0].version  # the writer went on while the backups ran

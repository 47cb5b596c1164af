from __future__ import annotations

from pathlib import Path

import pytest

from facesim.storage.paths import (
    facesim_home,
    latest_gallery,
    latest_model,
    register_gallery,
    register_model,
    registered_version,
    versions,
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESIM_REGISTRY", raising=False)
    return tmp_path / "home"


def _artifact(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(text)
    return folder


def test_register_versions_and_latest(tmp_path: Path, home: Path) -> None:
    assert facesim_home() == home and latest_model() is None
    assert register_model(_artifact(tmp_path / "a", "first")) == "v1"
    assert register_model(_artifact(tmp_path / "b", "second")) == "v2"
    assert latest_model() == home / "registry" / "models" / "facenet" / "v2"
    assert (latest_model() / "model.json").read_text() == "second"
    assert versions("models", "facenet") == ["v1", "v2"]


def test_galleries_are_separate(tmp_path: Path) -> None:
    register_model(_artifact(tmp_path / "m", "model"))
    assert latest_gallery() is None
    assert register_gallery(_artifact(tmp_path / "g", "gallery"), name="staff") == "v1"
    assert (latest_gallery("staff") / "model.json").read_text() == "gallery"


def test_register_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        register_model(tmp_path / "missing")


def test_a_registered_gallery_knows_its_version(tmp_path: Path) -> None:
    source = _artifact(tmp_path / "g", "gallery")
    register_gallery(source)
    register_gallery(source)
    assert registered_version(latest_gallery()) == "v2"
    assert registered_version(source) is None  # built here, never registered
    assert registered_version(latest_gallery() / "model.json") is None

"""`facesim gallery build|list` options and errors, and `facesim serve` refusing what it can't serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesim.gallery.api import GalleryInfo
from facesim.gallery.cli import main as gallery_main
from facesim.gallery.store import GalleryStore
from facesim.inference.cli import _resolve_artifacts, serve_main


@pytest.fixture(scope="module")
def knn_train(detection_dir: Path) -> Path:
    return detection_dir / "face_recognition" / "examples" / "knn_examples" / "train"


def build(model: Path, data: Path, out: Path, yunet: Path, *options: str) -> int:
    return gallery_main(
        ["build", "--model", str(model), "--data", str(data), "--out", str(out), "--yunet", str(yunet), *options]
    )


def test_gallery_build_options(
    tiny_model_dir: Path, knn_train: Path, yunet_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        build(
            tiny_model_dir,
            knn_train,
            tmp_path / "limited",
            yunet_path,
            "--limit-identities",
            "3",
            "--max-images-per-identity",
            "1",
        )
        == 0
    )
    limited = GalleryStore(tmp_path / "limited")
    # The three with the most photos (alex_lacamoire has one, the others two: ties by name).
    assert limited.identities() == [("biden", 1), ("kit_harington", 1), ("obama", 1)]
    assert limited.info.source["featured"] == ["biden", "kit_harington", "obama"]
    assert all(limited.thumbnail(name)[:2] == b"\xff\xd8" for name, _ in limited.identities())
    # alex_lacamoire has one photo: with --min-images 2 he is left out, everyone else has 2.
    assert build(tiny_model_dir, knn_train, tmp_path / "two", yunet_path, "--min-images", "2") == 0
    two = dict(GalleryStore(tmp_path / "two").identities())
    assert "alex_lacamoire" not in two and set(two.values()) == {2} and len(two) == 4
    assert "1 identities with fewer than 2 faces" in capsys.readouterr().out
    assert gallery_main(["list", "--gallery", str(tmp_path / "two")]) == 0
    assert "4 identities, 8 embeddings" in capsys.readouterr().out
    assert gallery_main(["init", "--model", str(tiny_model_dir), "--out", str(tmp_path / "empty")]) == 0
    empty = GalleryStore(tmp_path / "empty")
    assert empty.identities() == [] and empty.info.model_version == limited.info.model_version


def test_gallery_build_errors_are_explained(
    tiny_model_dir: Path, knn_train: Path, yunet_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert build(tiny_model_dir, tmp_path / "nowhere", tmp_path / "g1", yunet_path) == 2
    assert "does not exist" in capsys.readouterr().err
    assert build(tmp_path, knn_train, tmp_path / "g2", yunet_path) == 2
    assert "not a model artifact" in capsys.readouterr().err
    assert build(tiny_model_dir, knn_train, tmp_path / "g3", yunet_path, "--identity", "nobody") == 2
    assert "nobody" in capsys.readouterr().err
    assert build(tiny_model_dir, knn_train, tmp_path / "g4", yunet_path, "--min-images", "0") == 2
    assert not any(path.name.startswith(".g") for path in tmp_path.iterdir())  # no staging left behind


def test_serve_refuses_a_gallery_of_another_model(
    tiny_model_dir: Path, yunet_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    GalleryStore.create(tmp_path / "foreign", GalleryInfo(model_version="someone-else", embedding_dim=64))
    foreign = ["--gallery", str(tmp_path / "foreign"), "--port", "1", "--yunet", str(yunet_path)]
    code = serve_main(["--model", str(tiny_model_dir), *foreign])
    assert code == 2 and "facesim gallery build" in capsys.readouterr().err
    assert serve_main(["--model", str(tmp_path), "--gallery", str(tmp_path / "foreign")]) == 2
    assert "not a model artifact" in capsys.readouterr().err


def test_serve_defaults_to_the_latest_registered_model_and_gallery(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from facesim.storage.paths import register_gallery, register_model

    monkeypatch.setenv("FACESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACESIM_REGISTRY", raising=False)
    assert serve_main([]) == 2 and "no model registered" in capsys.readouterr().err
    register_model(tiny_model_dir)
    GalleryStore.create(tmp_path / "gallery", GalleryInfo(model_version="v", embedding_dim=64))
    register_gallery(tmp_path / "gallery")
    model, gallery = _resolve_artifacts(None, None)
    assert (model / "model.json").read_text() == (tiny_model_dir / "model.json").read_text()
    assert GalleryStore(gallery).info.model_version == "v"
    assert _resolve_artifacts(tiny_model_dir, None) == (tiny_model_dir, gallery)


@pytest.mark.parametrize(
    "option, value, wanted",
    [
        ("--threads", "-3", ">= 0"),
        ("--gallery-wait-s", "nan", ">= 0"),
        ("--gallery-wait-s", "-1", ">= 0"),
        ("--gallery-poll-s", "0", "> 0"),
        ("--gallery-poll-s", "inf", "> 0"),
        ("--max-image-bytes", "-1", ">= 1"),
        ("--approximate-threshold", "abc", "not a number"),
    ],
)
def test_serve_refuses_numbers_it_cannot_use_before_loading_anything(
    option: str, value: str, wanted: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit:  # the model and gallery do not exist: parsing stops first
        serve_main(["--model", str(tmp_path / "m"), "--gallery", str(tmp_path / "g"), option, value])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}" in error and wanted in error and "Traceback" not in error

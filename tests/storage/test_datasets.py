from __future__ import annotations

from pathlib import Path

import pytest

from facesim.storage.datasets import IdentityDataset


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    for name, files in {
        "alice": ["1.jpg", "2.PNG", "notes.txt", ".hidden.jpg"],
        "bob": ["a.jpeg"],
        "empty": [],
        ".git": ["x.jpg"],
    }.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_bytes(b"")
    (tmp_path / "stray.jpg").write_bytes(b"")
    return tmp_path


def test_scan_keeps_identity_folders_with_images(folders: Path) -> None:
    dataset = IdentityDataset.scan(folders)
    assert list(dataset.identities) == ["alice", "bob"]
    assert [p.name for p in dataset.identities["alice"]] == ["1.jpg", "2.PNG"]
    assert dataset.num_images == 3 and dataset.images()[-1] == ("bob", folders / "bob" / "a.jpeg")


def test_only_and_limit(folders: Path) -> None:
    assert list(IdentityDataset.scan(folders, only=["bob"]).identities) == ["bob"]
    assert list(IdentityDataset.scan(folders, limit=1).identities) == ["alice"]
    with pytest.raises(ValueError, match="1 identities are not in"):
        IdentityDataset.scan(folders, only=["bob", "carol"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        IdentityDataset.scan(folders / "nope")

"""`facesim data fetch lfw` against a local HTTP mirror serving a small tarball built from ../shared."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facesim.faces.download import DownloadError
from facesim.storage.cli import main
from facesim.storage.datasets import IdentityDataset
from facesim.storage.fetch import LFW_ARCHIVE, LFW_PROTOCOL, fetch_lfw


@pytest.fixture(scope="module")
def mirror_dir(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory, few_identities) -> Path:
    """A mirror holding a subset archive, the real protocol files and a SHA256SUMS for the archive."""
    mirror = tmp_path_factory.mktemp("mirror")
    with tarfile.open(mirror / LFW_ARCHIVE.name, "w:gz") as tar:
        for name in few_identities:
            tar.add(lfw_dir / "lfw-deepfunneled" / name, arcname=f"lfw-deepfunneled/{name}")
    for remote in LFW_PROTOCOL:
        shutil.copy(lfw_dir / remote.name, mirror / remote.name)
    digest = hashlib.sha256((mirror / LFW_ARCHIVE.name).read_bytes()).hexdigest()
    (mirror / "SHA256SUMS").write_text(f"{digest}  {LFW_ARCHIVE.name}\n")
    return mirror


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves a directory, honouring "Range: bytes=N-" like real web servers; logs each request."""

    root: Path
    requests: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/")
        self.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror_url(mirror_dir: Path) -> Iterator[tuple[str, list]]:
    log: list[tuple[str, str | None]] = []
    handler = type("Handler", (MirrorHandler,), {"root": mirror_dir, "requests": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", log
    server.shutdown()
    server.server_close()


def test_fetch_from_http_mirror_then_rerun_does_nothing(mirror_url, tmp_path: Path, few_identities, capsys) -> None:
    url, log = mirror_url
    layout = fetch_lfw(tmp_path / "lfw", url, progress=False)
    assert sorted(IdentityDataset.scan(layout.images).identities) == sorted(few_identities)
    assert all((layout.root / remote.name).is_file() for remote in LFW_PROTOCOL)
    assert "checked against the mirror's SHA256SUMS" in capsys.readouterr().out
    assert not (tmp_path / "lfw" / ".downloads").exists()
    log.clear()
    fetch_lfw(tmp_path / "lfw", url, progress=False)
    assert [path for path, _ in log] == ["/SHA256SUMS"]  # everything else was already there and verified


def test_interrupted_download_resumes_with_a_range_request(mirror_url, mirror_dir: Path, tmp_path: Path) -> None:
    url, log = mirror_url
    archive = (mirror_dir / LFW_ARCHIVE.name).read_bytes()
    partial = tmp_path / "lfw" / ".downloads" / f"{LFW_ARCHIVE.name}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(archive[: len(archive) // 2])
    layout = fetch_lfw(tmp_path / "lfw", url, progress=False)
    assert (f"/{LFW_ARCHIVE.name}", f"bytes={len(archive) // 2}-") in log
    assert IdentityDataset.scan(layout.images).num_images == 10


def test_checksum_mismatch_is_refused_and_cleaned_up(mirror_dir: Path, tmp_path: Path) -> None:
    bad_mirror = tmp_path / "bad-mirror"
    shutil.copytree(mirror_dir, bad_mirror)
    (bad_mirror / "SHA256SUMS").write_text(f"{'0' * 64}  {LFW_ARCHIVE.name}\n")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_lfw(tmp_path / "lfw", str(bad_mirror), progress=False)
    assert (
        not list((tmp_path / "lfw" / ".downloads").glob("*.part"))
        and not (tmp_path / "lfw" / "lfw-deepfunneled").exists()
    )


def test_cli_with_mirror_directory(mirror_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["fetch", "lfw", "--out", str(tmp_path / "lfw"), "--mirror", str(mirror_dir), "--no-progress"]) == 0
    assert "4 identities, 10 images" in capsys.readouterr().out


def test_cli_explains_an_archive_that_is_not_the_official_one(mirror_dir: Path, tmp_path: Path, capsys) -> None:
    unvouched = tmp_path / "unvouched"
    shutil.copytree(mirror_dir, unvouched)
    (unvouched / "SHA256SUMS").unlink()  # the subset archive then fails the official md5
    assert main(["fetch", "lfw", "--out", str(tmp_path / "lfw"), "--mirror", str(unvouched), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "checksum mismatch" in error and LFW_ARCHIVE.checksum in error


def test_cli_reports_a_missing_mirror(tmp_path: Path, capsys) -> None:
    assert main(["fetch", "lfw", "--out", str(tmp_path / "lfw"), "--mirror", str(tmp_path / "nowhere")]) == 1
    assert "give a mirror directory that holds this file" in capsys.readouterr().err

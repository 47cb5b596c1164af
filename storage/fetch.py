"""`facesim data fetch lfw`: the official LFW deep-funneled archive and protocol files.

Every file is checked against its published checksum (md5 from the LFW site for the archive,
sha256 of the official protocol files). Downloads resume. A mirror (a URL or a local directory
holding the same file names) serves offline machines; a mirror may publish a `SHA256SUMS` file to
vouch for files that differ from the official ones (e.g. a small subset archive for tests).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from facesim.faces.download import DownloadError, download
from facesim.storage.lfw import LfwLayout

LFW_BASE_URL = "https://vis-www.cs.umass.edu/lfw/"
MIRROR_CHECKSUMS = "SHA256SUMS"


@dataclass(frozen=True)
class RemoteFile:
    name: str
    checksum: str  # "md5:HEX" or "sha256:HEX"


LFW_ARCHIVE = RemoteFile("lfw-deepfunneled.tgz", "md5:68331da3eb755a505a502b5aacb3c201")
LFW_PROTOCOL = (
    RemoteFile("pairs.txt", "sha256:ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
    RemoteFile("people.txt", "sha256:bc8fa2b7f25c895cf7efb6de4f4fc27ca8b8d1cfa63350ad8b96eae2b198d365"),
    RemoteFile("pairsDevTrain.txt", "sha256:1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    RemoteFile("pairsDevTest.txt", "sha256:7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
    RemoteFile("peopleDevTrain.txt", "sha256:2e58df13ba4cc143189336e001cc2c195f1dfa5b29a6475c02857be353c2a2fa"),
    RemoteFile("peopleDevTest.txt", "sha256:c3ed1f90499473401542101a56c14c1d82396bb8218c67a356d7460601047555"),
    RemoteFile("lfw-names.txt", "sha256:403cd39411ee297f99f69241959bd8f0496b44377711913a76ccdd8562874164"),
)


def source_of(name: str, mirror: str | None) -> str:
    """Where to get `name`: the LFW site, a mirror URL, or a mirror directory."""
    if mirror is None:
        return LFW_BASE_URL + name
    if "://" in mirror and not mirror.startswith("file://"):
        return mirror.rstrip("/") + "/" + name
    return str(Path(mirror.removeprefix("file://")) / name)


def mirror_checksums(mirror: str, scratch: Path) -> dict[str, str]:
    """The mirror's own `SHA256SUMS` ("HEX  NAME" lines), or {} when it has none."""
    try:
        path = download(source_of(MIRROR_CHECKSUMS, mirror), scratch / MIRROR_CHECKSUMS)
    except DownloadError:
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        if digest and name:
            sums[name.strip().lstrip("*")] = f"sha256:{digest.lower()}"
    path.unlink()
    return sums


def fetch_lfw(out_dir: str | Path, mirror: str | None = None, progress: bool = True) -> LfwLayout:
    """Download (or copy from a mirror) and unpack LFW into `out_dir`; reruns skip finished work."""
    out_dir = Path(out_dir)
    downloads = out_dir / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    overrides = mirror_checksums(mirror, downloads) if mirror else {}
    for remote in (*LFW_PROTOCOL, LFW_ARCHIVE):
        if remote.name in overrides and overrides[remote.name] != remote.checksum:
            print(f"{remote.name}: checked against the mirror's {MIRROR_CHECKSUMS} (not the official checksum)")
    for remote in LFW_PROTOCOL:
        download(source_of(remote.name, mirror), out_dir / remote.name, overrides.get(remote.name, remote.checksum))
    images = out_dir / "lfw-deepfunneled"
    if not images.is_dir():
        archive = download(
            source_of(LFW_ARCHIVE.name, mirror),
            downloads / LFW_ARCHIVE.name,
            overrides.get(LFW_ARCHIVE.name, LFW_ARCHIVE.checksum),
        )
        _unpack(archive, out_dir, images.name, progress)
        archive.unlink()
    shutil.rmtree(downloads, ignore_errors=True)
    return LfwLayout.find(out_dir)


def _unpack(archive: Path, out_dir: Path, folder: str, progress: bool) -> None:
    """Extract into a scratch folder, then move the image folder in place in one rename."""
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".unpacking-") as scratch:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in tqdm(members, unit="file", desc="unpacking", disable=not progress):
                    tar.extract(member, scratch, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            archive.unlink(missing_ok=True)
            raise DownloadError(
                f"{archive.name} could not be unpacked ({error}); it was removed, rerun to fetch it again"
            ) from None
        unpacked = Path(scratch) / folder
        if not unpacked.is_dir():
            raise DownloadError(f"{archive.name} holds no {folder}/ folder: is the mirror serving the right archive?")
        unpacked.rename(out_dir / folder)

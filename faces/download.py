"""Resumable HTTP(S) download with a checksum check and a progress bar (standard library + tqdm).

Used for the YuNet weights here and for the LFW archive by `storage.fetch`.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match; the message says what to do."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def matches(path: Path, checksum: str) -> bool:
    """`checksum` is "ALGORITHM:HEX", e.g. "sha256:ab12..." or "md5:..." (what publishers give)."""
    algorithm, _, expected = checksum.partition(":")
    return file_digest(path, algorithm) == expected.lower()


def download(url: str, dest: Path, checksum: str | None = None, timeout_s: float = 30.0) -> Path:
    """Download `url` to `dest`, resuming a `dest.part` left by an earlier run.

    A `file://` URL or plain path is copied. When `checksum` ("sha256:HEX" or "md5:HEX") is given
    the result is checked and a mismatching file is removed so the next run starts clean.
    """
    dest = Path(dest)
    if dest.exists() and (checksum is None or matches(dest, checksum)):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    if "://" not in url or url.startswith("file://"):
        _copy_local(Path(url.removeprefix("file://")), partial)
    else:
        _fetch_http(url, partial, timeout_s)
    if checksum is not None and not matches(partial, checksum):
        partial.unlink()
        raise DownloadError(
            f"checksum mismatch for {url} (expected {checksum}): the file was removed; check the URL or mirror and retry"
        )
    partial.replace(dest)
    return dest


def _copy_local(source: Path, partial: Path) -> None:
    if not source.is_file():
        raise DownloadError(f"{source} does not exist: give a mirror directory that holds this file")
    shutil.copyfile(source, partial)


def _fetch_http(url: str, partial: Path, timeout_s: float) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if offset and response.status != 206:  # the server ignored Range: start over
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with (
                partial.open("ab" if offset else "wb") as stream,
                tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=partial.name.removesuffix(".part")
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    stream.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # Range past the end: the partial file is complete
            return
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"cannot download {url}: {reason}; rerun to resume, or use a mirror (URL or directory) on offline machines"
        ) from None

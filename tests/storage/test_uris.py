from __future__ import annotations

from pathlib import Path

import pytest

from facesim.storage.uris import parse_uri


@pytest.mark.parametrize(
    ("uri", "scheme", "claim", "path"),
    [
        ("pvc://facesim-models/facenet/v3", "pvc", "facesim-models", "facenet/v3"),
        ("pvc://facesim-data", "pvc", "facesim-data", ""),
        ("file:///mnt/models", "file", None, "/mnt/models"),
        ("/data/lfw", "file", None, "/data/lfw"),
        ("runs/a b", "file", None, "runs/a b"),
    ],
)
def test_parse(uri: str, scheme: str, claim: str | None, path: str) -> None:
    parsed = parse_uri(uri)
    assert (parsed.scheme, parsed.claim, parsed.path) == (scheme, claim, path)
    assert parse_uri(str(parsed)) == parsed  # str() gives back an equivalent URI


def test_local_path() -> None:
    assert parse_uri("file:///x/y").local_path() == Path("/x/y")
    assert parse_uri("pvc://models/facenet/v1").local_path("/mnt/pvc") == Path("/mnt/pvc/facenet/v1")
    with pytest.raises(ValueError, match="where claim 'models' is mounted"):
        parse_uri("pvc://models/facenet").local_path()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/x", "unsupported scheme 's3'"),
        ("pvc:///x", "needs a claim"),
        ("pvc://c/../etc", "'..'"),
        ("", "empty"),
    ],
)
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_uri(uri)

"""`facesim bench gallery`: one line of figures; `--cache` pays the build once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from facesim.benchmarks.gallery import face_like_gallery

LINE = re.compile(
    r"^exact_ms=(?P<exact>[\d.]+) index_ms=(?P<index>[\d.]+) recall_at_1=(?P<recall>[\d.]+) "
    r"build_s=(?P<build>[\d.]+) load_s=(?P<load>[\d.]+) index_mb=\d+ rss_mb=\d+$"
)


def bench(*args: str) -> re.Match:
    result = subprocess.run(
        [sys.executable, "-m", "facesim", "bench", "gallery", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    match = LINE.match(lines[0])
    assert match, result.stdout
    return match


def test_bench_gallery_prints_one_line_and_reuses_its_cache(tmp_path: Path) -> None:
    first = bench("--size", "4000", "--queries", "40", "--dim", "32", "--cache", str(tmp_path))
    assert float(first["build"]) > 0 and float(first["recall"]) >= 0.95
    second = bench("--size", "4000", "--queries", "40", "--dim", "32", "--cache", str(tmp_path))
    assert float(second["build"]) == 0 and second["recall"] == first["recall"]
    refused = subprocess.run(
        [sys.executable, "-m", "facesim", "bench", "gallery", "--size", "0"], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--size must be at least 1" in refused.stderr


def test_face_like_gallery_is_clustered_by_identity() -> None:
    gallery = face_like_gallery(2000, 50, dim=64, seed=1)
    counts = np.unique(gallery.owners, return_counts=True)[1]
    assert len(gallery.rows) == 2000 and counts.min() >= 1 and counts.max() <= 8 and np.median(counts) >= 2
    assert np.allclose(np.linalg.norm(gallery.rows, axis=1), 1, atol=1e-5)
    owners = np.array(gallery.owners)
    same, other = [], []
    for probe, owner in zip(gallery.probes, gallery.probe_owners, strict=True):
        distances = np.sum((gallery.rows - probe) ** 2, axis=1)
        same.append(distances[owners == owner].min())
        other.append(distances[owners != owner].min())
    # A probe is another sample of its identity, not a copy of a row: close, but not at distance 0.
    assert 0.1 < np.median(same) < 0.9 < np.median(other)

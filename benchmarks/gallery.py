"""`facesim bench gallery`: exact search against the persisted FAISS index on a face-like gallery.

Prints one line, `exact_ms= index_ms= recall_at_1= build_s= load_s=` plus memory (`index_mb=`, the
saved index's size; `rss_mb=`, this process's peak). The gallery is synthetic but shaped like
face embeddings: identities are clusters (2-8 rows each, around centres drawn with a decaying
spectrum, as a trained embedding uses some directions more than others), and each query is another
sample of an identity's cluster, not a copy of a row. Both searches run in the same process, one
query at a time (as a request with one face searches), top-3 identities; recall@1 is how often the
index's first identity is exact search's. `--cache DIR` keeps the built index: later runs load it
(`build_s=0`) and pay only `load_s`.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesim.gallery.api import IndexState
from facesim.gallery.index import EmbeddingIndex, load_index, save_index

TOP_K = 3
ROWS_PER_IDENTITY = (2, 8)
# Same-identity noise: two samples of one identity sit at squared distance ~0.5 (different people ~2),
# like a face model's same/different split around its threshold.
NOISE = 0.6


@dataclass(frozen=True)
class FaceLikeGallery:
    rows: np.ndarray  # (N, D) unit vectors
    owners: list[str]  # identity of each row
    probes: np.ndarray  # (Q, D): new samples of gallery identities
    probe_owners: list[str]


@dataclass(frozen=True)
class GalleryBenchResult:
    size: int
    queries: int
    exact_ms: float
    index_ms: float
    recall_at_1: float
    build_s: float
    load_s: float
    index_mb: float
    rss_mb: float

    def line(self) -> str:
        return (
            f"exact_ms={self.exact_ms:.3f} index_ms={self.index_ms:.3f} recall_at_1={self.recall_at_1:.4f} "
            f"build_s={self.build_s:.3f} load_s={self.load_s:.2f} index_mb={self.index_mb:.0f} "
            f"rss_mb={self.rss_mb:.0f}"
        )


def face_like_gallery(size: int, queries: int, dim: int = 128, seed: int = 0) -> FaceLikeGallery:
    rng = np.random.default_rng(seed)
    low, high = ROWS_PER_IDENTITY
    counts = rng.integers(low, high + 1, size // low + 1)
    counts = counts[: int(np.searchsorted(np.cumsum(counts), size)) + 1]
    counts[-1] -= int(counts.sum()) - size
    spectrum = ((np.arange(dim) + 1.0) ** -0.5).astype(np.float32)
    centres = _unit(rng.standard_normal((len(counts), dim), dtype=np.float32) * spectrum)
    owners = np.repeat(np.arange(len(counts)), counts)
    rows = np.empty((size, dim), np.float32)
    for start in range(0, size, 100_000):  # in slices: the noise for a million rows never exists at once
        part = owners[start : start + 100_000]
        rows[start : start + len(part)] = _sample(rng, centres, part)
    probe_owners = rng.integers(0, len(counts), queries)
    names = [f"person {i}" for i in range(len(counts))]
    return FaceLikeGallery(
        rows, [names[i] for i in owners], _sample(rng, centres, probe_owners), [names[i] for i in probe_owners]
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _sample(rng: np.random.Generator, centres: np.ndarray, owners: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal((len(owners), centres.shape[1]), dtype=np.float32)
    return _unit(centres[owners] + NOISE / np.sqrt(centres.shape[1]) * noise)


def time_queries(index: EmbeddingIndex, probes: np.ndarray) -> tuple[float, list[str]]:
    """ms per query, one query at a time, and each query's first identity."""
    top, start = [], time.perf_counter()
    for probe in probes:
        top.append(index.search(probe[None], TOP_K)[0][0].identity)
    return (time.perf_counter() - start) * 1000 / len(probes), top


def measure(size: int, queries: int, cache: Path | None, dim: int = 128, seed: int = 0) -> GalleryBenchResult:
    gallery = face_like_gallery(size, queries, dim, seed)
    exact = EmbeddingIndex(dim, approximate_threshold=size + 1)
    exact.add(gallery.rows, gallery.owners)
    exact_ms, exact_top = time_queries(exact, gallery.probes)
    del exact
    directory = cache / f"face-like-{size}-{dim}-{seed}" if cache else Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    key = f"face-like bench {size} {dim} {seed}"
    try:
        build_s = 0.0
        if load_index(directory, key, approximate_threshold=1) is None:
            start = time.perf_counter()
            built = EmbeddingIndex(dim, approximate_threshold=1)
            built.add(gallery.rows, gallery.owners)
            build_s = time.perf_counter() - start
            save_index(built, IndexState(version=0, removals=0, last_id=built.last_id), directory, key)
            del built
        start = time.perf_counter()
        loaded = load_index(directory, key, approximate_threshold=1)
        load_s = time.perf_counter() - start
        assert loaded is not None, f"the index just saved in {directory} did not load"
        index_ms, index_top = time_queries(loaded[0], gallery.probes)
        index_mb = sum(path.stat().st_size for path in directory.glob("v*")) / 2**20
    finally:
        if cache is None:
            shutil.rmtree(directory, ignore_errors=True)
    recall = float(np.mean([a == e for a, e in zip(index_top, exact_top)]))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return GalleryBenchResult(size, queries, exact_ms, index_ms, recall, build_s, load_s, index_mb, rss_mb)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim bench gallery", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, required=True, help="gallery embeddings (e.g. 1000000)")
    parser.add_argument("--queries", type=int, default=200, help="queries timed on each search (default 200)")
    parser.add_argument("--cache", type=Path, help="keep the built index here and load it on later runs")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic gallery (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("size", "queries", "dim"):
        if getattr(args, name) < 1:
            print(f"facesim bench gallery: --{name} must be at least 1", file=sys.stderr)
            return 2
    print(measure(args.size, args.queries, args.cache, args.dim, args.seed).line())
    return 0


if __name__ == "__main__":
    sys.exit(main())

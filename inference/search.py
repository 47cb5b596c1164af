"""Top-k identity search over gallery embeddings: exact (matrix product) or approximate (FAISS HNSW).

Embeddings are unit-norm, so squared L2 distance = 2 - 2 * cosine and ranking by inner product is
ranking by distance. An identity's distance is that of its closest embedding. Among the
`k * max_rows_per_identity` nearest rows there is always the best row of each of the k nearest
identities (every identity owns at most max_rows_per_identity rows), so searching that many rows
and grouping by identity gives exact identity rankings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import faiss
import numpy as np

from facesim.inference.gallery import GalleryStore

# Below this many embeddings a matrix product is as fast as an index and exact.
DEFAULT_APPROXIMATE_THRESHOLD = 50_000
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@dataclass(frozen=True)
class Match:
    identity: str
    distance: float


class EmbeddingIndex:
    """Rows (vectors + owner identity) searchable for the k nearest identities."""

    def __init__(self, dim: int, approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD):
        self.dim = dim
        self.approximate_threshold = approximate_threshold
        self.size = 0
        # Row storage with spare capacity (doubling): an enrolment appends without copying the gallery.
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._labels = np.zeros(0, dtype=np.int64)  # index into self.names
        self.names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self._rows_per_label = np.zeros(0, dtype=np.int64)
        self._hnsw: faiss.IndexHNSWFlat | None = None

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.size]

    @property
    def labels(self) -> np.ndarray:
        return self._labels[: self.size]

    @property
    def approximate(self) -> bool:
        return self._hnsw is not None

    def add(self, vectors: np.ndarray, identities: list[str]) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        labels = np.array([self._label(name) for name in identities], dtype=np.int64)
        end = self.size + len(vectors)
        if end > len(self._vectors):
            capacity = max(end, 2 * len(self._vectors))
            self._vectors = np.concatenate([self.vectors, np.zeros((capacity - self.size, self.dim), np.float32)])
            self._labels = np.concatenate([self.labels, np.zeros(capacity - self.size, np.int64)])
        self._vectors[self.size : end], self._labels[self.size : end] = vectors, labels
        self.size = end
        counts = np.bincount(labels, minlength=len(self.names))
        self._rows_per_label = np.pad(self._rows_per_label, (0, len(self.names) - len(self._rows_per_label))) + counts
        if self._hnsw is not None:
            self._hnsw.add(vectors)
        elif self.size >= self.approximate_threshold:
            self._hnsw = _build_hnsw(self.vectors)

    def _label(self, name: str) -> int:
        if name not in self._name_ids:
            self._name_ids[name] = len(self.names)
            self.names.append(name)
        return self._name_ids[name]

    def search(self, queries: np.ndarray, k: int) -> list[list[Match]]:
        """The k nearest identities of each query (Q, D), nearest first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.size == 0 or k <= 0 or len(queries) == 0:
            return [[] for _ in queries]
        rows_needed = min(self.size, k * int(self._rows_per_label.max()))
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = max(HNSW_EF_SEARCH, rows_needed)
            similarities, rows = self._hnsw.search(queries, rows_needed)
        else:
            rows, similarities = _exact_nearest(queries, self.vectors, rows_needed)
        return [self._group(row_ids, sims, k) for row_ids, sims in zip(rows, similarities)]

    def _group(self, row_ids: np.ndarray, similarities: np.ndarray, k: int) -> list[Match]:
        matches: list[Match] = []
        seen: set[int] = set()
        for row, similarity in zip(row_ids, similarities):
            if row < 0:  # FAISS pads with -1 when it finds fewer rows
                break
            label = int(self.labels[row])
            if label in seen:
                continue
            seen.add(label)
            distance = max(0.0, 2.0 - 2.0 * float(similarity))
            matches.append(Match(identity=self.names[label], distance=distance))
            if len(matches) == k:
                break
        return matches


def _exact_nearest(queries: np.ndarray, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    similarities = queries @ vectors.T
    if n < vectors.shape[0]:
        top = np.argpartition(-similarities, n - 1, axis=1)[:, :n]
    else:
        top = np.broadcast_to(np.arange(vectors.shape[0]), similarities.shape)
    top_sims = np.take_along_axis(similarities, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)


def _build_hnsw(vectors: np.ndarray) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    return index


class LiveGalleryIndex:
    """An EmbeddingIndex that follows a GalleryStore: each search sees every committed change.

    Additions are read incrementally (rows with a larger id); a removal rebuilds from scratch.
    Refresh and search share one lock: FAISS indexes must not be searched while rows are added.
    """

    def __init__(self, store: GalleryStore, approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD):
        self.store = store
        self.approximate_threshold = approximate_threshold
        self._lock = threading.Lock()
        self._index = EmbeddingIndex(store.info.embedding_dim, approximate_threshold)
        self._version = -1
        self._removals = -1
        self._last_id = 0

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[Match]], int]:
        """The k nearest identities of each query, and the gallery version searched."""
        version, removals = self.store.counters()
        with self._lock:
            if version != self._version:
                self._refresh(incremental=removals == self._removals)
            return self._index.search(queries, k), self._version

    def _refresh(self, incremental: bool) -> None:
        rows = self.store.rows(after_id=self._last_id if incremental else 0)
        if incremental and rows.removals != self._removals:  # a removal landed meanwhile
            rows = self.store.rows()
            incremental = False
        if not incremental:
            self._index = EmbeddingIndex(self.store.info.embedding_dim, self.approximate_threshold)
            self._last_id = 0
        self._index.add(rows.vectors, rows.identities)
        self._last_id = int(rows.ids[-1]) if len(rows.ids) else self._last_id
        self._version, self._removals = rows.version, rows.removals

"""Top-k identity search over gallery embeddings: exact (matrix product) or approximate (FAISS IVF).

Embeddings are unit-norm, so squared L2 distance = 2 - 2 * cosine and ranking by inner product is
ranking by distance. An identity's distance is that of its closest embedding. Among the
`k * max_rows_per_identity` nearest rows there is always the best row of each of the k nearest
identities (every identity owns at most max_rows_per_identity rows), so searching that many rows
and grouping by identity gives exact identity rankings.

Below `approximate_threshold` embeddings the rows live in one float32 matrix searched exactly.
From it on they live in a FAISS IVF-Flat index (chosen by measurement: docs/results.md "Galleries at
scale"), keyed by the gallery's row ids: an enrolment is added in place and a removal deletes its
ids (`remove_ids`), so neither rebuilds. The index is saved beside the gallery with the gallery
version it reflects (`save_index` / `load_index`); `LiveGalleryIndex` loads it at start and catches
up on the changes committed since.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from facesim.contract.metrics import squared_l2_of_similarity
from facesim.gallery.api import Gallery, GalleryUnavailable, IndexState

log = logging.getLogger(__name__)

# Measured (docs/results.md): below ~50k rows a matrix product answers in a few ms and is exact.
DEFAULT_APPROXIMATE_THRESHOLD = 50_000
# IVF: about 2 * sqrt(N) lists (1M rows: 2048; k-means over 4096 lists took 6.5 min of the 10 min
# budget on the loaded 2-core box, 1024 lists 1 min), each query scans IVF_NPROBE of them.
IVF_NPROBE = 32
IVF_MIN_POINTS_PER_LIST = 39  # FAISS's own floor for k-means training
IVF_TRAINING_POINTS_PER_LIST = 64
# A gallery grown this many times past the size its lists were trained on is re-clustered.
IVF_RETRAIN_GROWTH = 8
INDEX_POINTER = "index.json"
INDEX_FORMAT = 1


@dataclass(frozen=True)
class Match:
    identity: str
    distance: float


class _Rows:
    """An append-only numpy buffer with spare capacity: an enrolment appends without copying all rows."""

    def __init__(self, dtype: type, width: int | None = None):
        self._shape = (width,) if width else ()
        self._data = np.zeros((0, *self._shape), dtype)
        self.size = 0

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def append(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self._data):
            grown = np.zeros((max(end, 2 * len(self._data)), *self._shape), self._data.dtype)
            grown[: self.size] = self.view
            self._data = grown
        self._data[self.size : end] = values
        self.size = end

    def keep(self, mask: np.ndarray) -> None:
        kept = self.view[mask]
        self.size = 0
        self.append(kept)


class EmbeddingIndex:
    """Gallery rows (row id, owner identity, vector) searchable for the k nearest identities."""

    def __init__(self, dim: int, approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD):
        self.dim = dim
        self.approximate_threshold = approximate_threshold
        self.names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self._ids = _Rows(np.int64)  # gallery row ids, ascending; FAISS's ids in IVF mode
        self._labels = _Rows(np.int64)  # index into self.names; -1 once removed (IVF mode)
        self._vectors = _Rows(np.float32, dim)  # exact mode only: IVF-Flat keeps its own copy
        self._rows_per_label = np.zeros(0, dtype=np.int64)
        self._ivf: faiss.IndexIVF | None = None
        self.trained_size = 0

    @property
    def size(self) -> int:
        return int(self._rows_per_label.sum())

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    @property
    def lists(self) -> int:
        """IVF lists (0 in exact mode)."""
        return 0 if self._ivf is None else int(self._ivf.nlist)

    @property
    def last_id(self) -> int:
        return int(self._ids.view[-1]) if self._ids.size else 0

    def add(self, vectors: np.ndarray, identities: list[str], ids: np.ndarray | None = None) -> None:
        """Append rows; `ids` (ascending, larger than any held) default to the next integers."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if ids is None:
            ids = np.arange(self.last_id + 1, self.last_id + 1 + len(vectors), dtype=np.int64)
        labels = np.array([self._label(name) for name in identities], dtype=np.int64)
        self._ids.append(ids)
        self._labels.append(labels)
        self._rows_per_label = np.pad(self._rows_per_label, (0, len(self.names) - len(self._rows_per_label)))
        self._rows_per_label += np.bincount(labels, minlength=len(self.names))
        if self._ivf is not None and self.size <= IVF_RETRAIN_GROWTH * self.trained_size:
            self._ivf.add_with_ids(vectors, ids)
        elif self._ivf is not None:
            held_ids, held = ivf_contents(self._ivf)
            self._rebuild_ivf(np.vstack([held[np.argsort(held_ids)], vectors]))
        else:
            self._vectors.append(vectors)
            if self.size >= self.approximate_threshold:
                self._rebuild_ivf(self._vectors.view)

    def remove_identity(self, name: str) -> int:
        """Drop every row of an identity (no rebuild); returns how many went."""
        label = self._name_ids.get(name)
        if label is None or self._rows_per_label[label] == 0:
            return 0
        mine = self._labels.view == label
        if self._ivf is not None:
            self._ivf.remove_ids(faiss.IDSelectorBatch(self._ids.view[mine]))
            self._labels.view[mine] = -1
        else:
            for rows in (self._ids, self._labels, self._vectors):
                rows.keep(~mine)
        removed, self._rows_per_label[label] = int(self._rows_per_label[label]), 0
        # The name goes too: a saved index must not keep a removed person's name (the label stays unused).
        self.names[label] = ""
        del self._name_ids[name]
        return removed

    def live_names(self) -> list[str]:
        return [name for name, rows in zip(self.names, self._rows_per_label, strict=True) if rows > 0]

    def _label(self, name: str) -> int:
        if name not in self._name_ids:
            self._name_ids[name] = len(self.names)
            self.names.append(name)
        return self._name_ids[name]

    def _rebuild_ivf(self, vectors: np.ndarray) -> None:
        """Cluster the live rows into new IVF lists (first crossing of the threshold, or much growth)."""
        live = self._labels.view >= 0
        self._ids.keep(live)
        self._labels.keep(live)
        self._ivf = build_ivf(vectors, self._ids.view)
        self.trained_size = len(vectors)
        self._vectors = _Rows(np.float32, self.dim)

    def copy(self) -> EmbeddingIndex:
        """An independent copy (an IVF index is cloned): saved while the original keeps serving."""
        copy = EmbeddingIndex(self.dim, self.approximate_threshold)
        copy.names, copy._name_ids, copy.trained_size = list(self.names), dict(self._name_ids), self.trained_size
        for mine, theirs in ((self._ids, copy._ids), (self._labels, copy._labels), (self._vectors, copy._vectors)):
            theirs.append(mine.view)
        copy._rows_per_label = self._rows_per_label.copy()
        copy._ivf = None if self._ivf is None else ivf_index(faiss.clone_index(self._ivf))
        return copy

    def write(self, faiss_path: Path, rows_path: Path) -> None:
        """The IVF index (FAISS's format) and the live rows' ids and owners (npz)."""
        if self._ivf is None:
            raise ValueError("an exact index is not saved: it is rebuilt from the gallery in moments")
        live = self._labels.view >= 0
        names = "\n".join(self.names).encode()  # names never hold control characters
        faiss.write_index(self._ivf, str(faiss_path))
        with open(rows_path, "wb") as out:
            np.savez(
                out,
                ids=self._ids.view[live],
                labels=self._labels.view[live],
                names=np.frombuffer(names, np.uint8),
                trained_size=np.array(self.trained_size),
            )

    @classmethod
    def read(cls, faiss_path: Path, rows_path: Path, approximate_threshold: int) -> EmbeddingIndex:
        ivf = ivf_index(faiss.read_index(str(faiss_path)))
        with np.load(rows_path) as rows:
            ids, labels, names = rows["ids"], rows["labels"], rows["names"].tobytes().decode()
            trained_size = int(rows["trained_size"])
        if ivf.ntotal != len(ids) or len(ids) != len(labels):
            raise ValueError(f"{faiss_path.name} holds {ivf.ntotal} rows, {rows_path.name} {len(ids)}")
        index = cls(ivf.d, approximate_threshold)
        index.names = names.split("\n") if names else []
        index._name_ids = {name: i for i, name in enumerate(index.names)}
        index._ids.append(ids)
        index._labels.append(labels)
        index._rows_per_label = np.bincount(labels, minlength=len(index.names)).astype(np.int64)
        index._ivf, index.trained_size = ivf, trained_size
        return index

    def search(self, queries: np.ndarray, k: int) -> list[list[Match]]:
        """The k nearest identities of each query (Q, D), nearest first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        size = self.size
        if size == 0 or k <= 0 or len(queries) == 0:
            return [[] for _ in queries]
        rows_needed = min(size, k * int(self._rows_per_label.max()))
        if self._ivf is not None:
            similarities, ids = self._ivf.search(
                queries,
                rows_needed,
                # faiss's stub omits the keyword constructor its Python wrapper gives every SearchParameters.
                params=faiss.SearchParametersIVF(nprobe=IVF_NPROBE),  # type: ignore[call-arg]
            )
            positions = np.searchsorted(self._ids.view, ids)
            labels = np.where(ids >= 0, self._labels.view[np.minimum(positions, self._ids.size - 1)], -1)
        else:
            rows, similarities = _exact_nearest(queries, self._vectors.view, rows_needed)
            labels = self._labels.view[rows]
        return [self._group(row_labels, sims, k) for row_labels, sims in zip(labels, similarities, strict=True)]

    def _group(self, labels: np.ndarray, similarities: np.ndarray, k: int) -> list[Match]:
        matches: list[Match] = []
        seen: set[int] = set()
        for label, similarity in zip(labels, similarities, strict=True):
            label = int(label)
            if label < 0:  # FAISS pads with -1 when it finds fewer rows
                break
            if label in seen:
                continue
            seen.add(label)
            matches.append(Match(identity=self.names[label], distance=squared_l2_of_similarity(similarity)))
            if len(matches) == k:
                break
        return matches


def ivf_lists(size: int) -> int:
    """About 2 * sqrt(size) lists (a power of two), never fewer rows per list than k-means needs."""
    wanted = 1 << int(np.round(np.log2(max(1.0, 2 * np.sqrt(size)))))
    return max(1, min(wanted, size // IVF_MIN_POINTS_PER_LIST))


def build_ivf(vectors: np.ndarray, ids: np.ndarray, seed: int = 0) -> faiss.IndexIVF:
    dim, lists = vectors.shape[1], ivf_lists(len(vectors))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 1  # small galleries: fewer points than FAISS's advice is fine
    index.cp.seed = seed
    sample_size = min(len(vectors), IVF_TRAINING_POINTS_PER_LIST * lists)
    sample = vectors[np.random.default_rng(seed).choice(len(vectors), sample_size, replace=False)]
    index.train(sample)
    index.add_with_ids(vectors, ids)
    return index


def ivf_index(index: faiss.Index) -> faiss.IndexIVF:
    """FAISS hands back its indexes as their own class; ours are IVF (a ValueError otherwise)."""
    if not isinstance(index, faiss.IndexIVF):
        raise ValueError(f"a {type(index).__name__}, not an IVF index")
    return index


def ivf_contents(index: faiss.IndexIVF) -> tuple[np.ndarray, np.ndarray]:
    """Every (id, vector) an IVF-Flat index holds, read straight from its inverted lists."""
    lists = index.invlists
    if lists is None:
        raise ValueError("an IVF index without inverted lists")
    ids, vectors = [], []
    for number in range(index.nlist):
        size = lists.list_size(number)
        if size:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
            codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size)
            vectors.append(np.frombuffer(codes, np.float32).reshape(size, index.d).copy())
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, index.d), np.float32)
    return np.concatenate(ids), np.vstack(vectors)


def _exact_nearest(queries: np.ndarray, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    similarities = queries @ vectors.T
    if n < vectors.shape[0]:
        top = np.argpartition(-similarities, n - 1, axis=1)[:, :n]
    else:
        top = np.broadcast_to(np.arange(vectors.shape[0]), similarities.shape)
    top_sims = np.take_along_axis(similarities, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)


# --- persistence: the index saved beside the gallery, with the gallery version it reflects --------


@dataclass(frozen=True)
class SavedIndex:
    """`index.json`, written last: a reader only ever sees complete files."""

    state: IndexState
    gallery: str  # the gallery's identity (model version + creation time): another gallery's index is refused
    faiss_file: str
    rows_file: str
    size: int
    format: int = INDEX_FORMAT


def gallery_key(store: Gallery) -> str:
    return f"{store.info.model_version}@{store.info.created}"


def save_index(index: EmbeddingIndex, state: IndexState, directory: Path, gallery: str) -> Path:
    """Write the files, then `index.json` naming them (atomically); older saves are deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"v{state.version}-{os.getpid()}-{threading.get_ident()}"
    saved = SavedIndex(state, gallery, f"{stem}.faiss", f"{stem}.npz", index.size)
    index.write(directory / saved.faiss_file, directory / saved.rows_file)
    current = read_saved_index(directory)
    if current is not None and current.state.version > state.version:  # a newer save landed meanwhile
        for name in (saved.faiss_file, saved.rows_file):
            (directory / name).unlink(missing_ok=True)
        return directory / INDEX_POINTER
    pointer = directory / f".{stem}.json"
    pointer.write_text(json.dumps(asdict(saved)))
    pointer.replace(directory / INDEX_POINTER)
    for stale in directory.glob("v*"):  # a concurrent newer save keeps its own files
        if stale.name not in (saved.faiss_file, saved.rows_file) and _version_of(stale.name) < state.version:
            stale.unlink(missing_ok=True)
    return directory / INDEX_POINTER


def _version_of(name: str) -> int:
    try:
        return int(name[1:].split("-", 1)[0])
    except ValueError:
        return -1


def read_saved_index(directory: Path) -> SavedIndex | None:
    try:
        raw = json.loads((directory / INDEX_POINTER).read_text())
        return SavedIndex(**{**raw, "state": IndexState(**raw["state"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_index(directory: Path, gallery: str, approximate_threshold: int) -> tuple[EmbeddingIndex, IndexState] | None:
    """This gallery's saved index, read into memory (where it takes adds and removals in place)."""
    saved = read_saved_index(directory)
    if saved is None or saved.format != INDEX_FORMAT or saved.gallery != gallery:
        return None
    try:
        index = EmbeddingIndex.read(directory / saved.faiss_file, directory / saved.rows_file, approximate_threshold)
    except (OSError, RuntimeError, ValueError, KeyError) as error:  # replaced by a newer save meanwhile, or damaged
        log.warning("saved gallery index in %s unusable (%s): reading the gallery instead", directory, error)
        return None
    return index, saved.state


# --- following a gallery ----------------------------------------------------------------------


# Save the index again once this many changes (enrolments or removals) accumulated since the last save.
SAVE_EVERY_CHANGES = 1000


class LiveGalleryIndex:
    """An EmbeddingIndex that follows a gallery: `refresh()` applies every committed change.

    At start it loads the index saved in `index_dir` (when it is this gallery's) and reads only the
    changes committed since its version: rows with a larger id, and the removal log. Without a saved
    index, or when the log does not reach back, it reads every row. Refresh and search share one
    lock: a FAISS index must not be searched while rows are added.
    """

    def __init__(
        self,
        store: Gallery,
        approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD,
        index_dir: Path | None = None,
        save_every: int = SAVE_EVERY_CHANGES,
    ):
        self.store = store
        self.approximate_threshold = approximate_threshold
        self.index_dir = index_dir
        self.save_every = save_every
        self._lock = threading.Lock()
        self._index = EmbeddingIndex(store.info.embedding_dim, approximate_threshold)
        self._state = IndexState()
        self._saved_version = -1
        self._saving = threading.Lock()
        self.loaded_from: str = "gallery rows"  # or "saved index vN": how the last start was served

    @property
    def version(self) -> int:
        return self._state.version

    def describe(self) -> dict[str, object]:
        """For the gallery listing: what is searched, and whether the start loaded a saved index."""
        with self._lock:
            kind = "ivf" if self._index.approximate else "exact"
            return {
                "gallery_edits": self._state.version,
                "size": self._index.size,
                "kind": kind,
                "loaded_from": self.loaded_from,
            }

    def search(self, queries: np.ndarray, k: int, refresh: bool = True) -> tuple[list[list[Match]], int]:
        """The k nearest identities of each query, and the gallery version searched."""
        if refresh:
            # Answered from the index as it is when the database is away (the gallery logged the outage).
            with contextlib.suppress(GalleryUnavailable):
                self.refresh()
        with self._lock:
            return self._index.search(queries, k), self._state.version

    def refresh(self) -> int:
        """Apply the changes committed since the last refresh; returns the version now reflected."""
        version, _ = self.store.counters()
        with self._lock:
            if self._state.version < 0:
                self._start()
            if self._state.version < version:  # (another thread may have caught up meanwhile)
                self._catch_up()
        self._maybe_save()
        return self._state.version

    def _start(self) -> None:
        loaded = None
        if self.index_dir is not None:
            started = time.perf_counter()
            loaded = load_index(self.index_dir, gallery_key(self.store), self.approximate_threshold)
            if loaded is not None:
                self._index, self._state = loaded
                self._saved_version = self._state.version
                self.loaded_from = f"saved index v{self._state.version}"
                log.info(
                    "gallery index v%d loaded from %s in %.2f s (%d rows)",
                    self._state.version,
                    self.index_dir,
                    time.perf_counter() - started,
                    self._index.size,
                )

    def _catch_up(self) -> None:
        changes = self.store.changes(self._state)
        if changes.removed is None:  # every row (first start, or the removal log does not reach back)
            self._index = EmbeddingIndex(self._index.dim, self.approximate_threshold)
            self._state = IndexState()
        if changes.removed:  # the log holds keyed hashes of the names (names in galleries' older entries)
            by_digest = {self.store.erasure_digest(name): name for name in self._index.live_names()}
            for entry in changes.removed:
                self._index.remove_identity(by_digest.get(entry, entry))
        rows = changes.rows
        self._index.add(rows.vectors, rows.identities, rows.ids)
        last_id = int(rows.ids[-1]) if len(rows.ids) else self._state.last_id
        self._state = IndexState(rows.version, rows.removals, max(last_id, self._state.last_id))

    def _maybe_save(self) -> None:
        if self.index_dir is None or not self._index.approximate:
            return
        if self._state.version - self._saved_version < self.save_every and self._saved_version >= 0:
            return
        # In the background: the request that happened to apply the 1000th change does not wait for it.
        threading.Thread(target=self.save, name="save-gallery-index", daemon=True).start()

    def save(self) -> Path | None:
        """Write the index as of now, unless that version is saved already (a copy is taken under the
        search lock; the write runs outside it, so searches go on meanwhile)."""
        if self.index_dir is None:
            return None
        with self._saving:  # one save at a time; a second one finds the first did its work
            with self._lock:
                if not self._index.approximate:
                    return None
                if self._saved_version == self._state.version:
                    return self.index_dir / INDEX_POINTER
                copy, state = self._index.copy(), self._state
            try:
                saved = save_index(copy, state, self.index_dir, gallery_key(self.store))
            except OSError as error:  # e.g. a read-only volume: serving goes on, the next start reads the gallery
                log.warning("could not save the gallery index to %s: %s", self.index_dir, error)
                return None
            self._saved_version = state.version
            return saved


# How often a replica reads the gallery's version when no notification came (the fallback).
DEFAULT_POLL_S = 1.0


class GalleryFollower:
    """Keeps a LiveGalleryIndex current in the background, for a gallery that replicas share.

    It wakes on the database's notification of a commit, or every `poll_s` when none comes (a lost
    LISTEN connection, a notification missed while reconnecting), and applies what changed. So a
    change committed by any replica is searchable here within poll_s plus the time to read it.
    """

    def __init__(self, index: LiveGalleryIndex, wait_for_change: Callable[[float], bool] | None, poll_s: float):
        self.index = index
        self.poll_s = poll_s
        self._wait_for_change = wait_for_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="follow-gallery", daemon=True)

    def start(self) -> GalleryFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.poll_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait()
            try:
                self.index.refresh()
            except GalleryUnavailable:
                pass  # the gallery logged the outage once; searches go on from the index
            except Exception as error:  # noqa: BLE001 - keep following whatever happens
                log.warning("could not refresh the gallery index: %s", error)

    def _wait(self) -> None:
        if self._wait_for_change is None:
            self._stop.wait(self.poll_s)
            return
        try:
            self._wait_for_change(self.poll_s)
        except GalleryUnavailable:  # the database is down: the refresh logs that once
            self._stop.wait(self.poll_s)
        except Exception as error:  # noqa: BLE001 - no notifications for now: polling carries on
            log.warning("gallery notifications unavailable (%s): polling every %.1f s", error, self.poll_s)
            self._stop.wait(self.poll_s)

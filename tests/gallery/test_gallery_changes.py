"""The gallery stores' change feed, both backends: counters, and what changed since an index's state
(the removals, then the rows added), which replicas follow. Survivors of the mutation run
(docs/results.md) showed these were tested only through the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesim.gallery.api import Gallery, GalleryInfo, IndexState
from facesim.gallery.backends import create_gallery
from facesim.gallery.store import GalleryStore, log_covers

DIM = 4


@pytest.fixture(params=["sqlite", "postgres"])
def gallery(request: pytest.FixtureRequest, tmp_path: Path) -> Gallery:
    info = GalleryInfo(model_version="test", embedding_dim=DIM)
    if request.param == "sqlite":
        return GalleryStore.create(tmp_path / "gallery", info)
    return create_gallery(request.getfixturevalue("postgres_dsn"), info)


def test_removal_log_covers_exactly_the_removals_since() -> None:
    assert log_covers([], 0, 0) and log_covers(["a"], 1, 0) and log_covers(["b"], 3, 2)
    assert not log_covers([], 1, 0)  # a removal the log does not hold
    assert not log_covers(["b"], 3, 1)
    assert not log_covers(["a"], 1, -1)  # an index that never read the counters


def test_changes_since_a_state_are_its_removals_then_its_new_rows(gallery: Gallery) -> None:
    rows = np.eye(DIM, dtype=np.float32)
    assert gallery.add("alice", rows[:2]).version == 1
    assert gallery.add("bob", rows[2:3]).version == 2
    assert gallery.counters() == (2, 0)
    read = gallery.rows()
    assert (read.version, read.removals, read.identities) == (2, 0, ["alice", "alice", "bob"])
    state = IndexState(version=2, removals=0, last_id=int(read.ids.max()))
    nothing = gallery.changes(state)
    assert nothing.removed == [] and len(nothing.rows.ids) == 0

    assert gallery.remove("alice") == 2
    assert gallery.add("carol", rows[3:]).version == 4
    assert gallery.counters() == (4, 1)
    changes = gallery.changes(state)
    assert changes.removed == [gallery.erasure_digest("alice")]  # a keyed hash: the log keeps no names
    assert (changes.rows.version, changes.rows.removals, changes.rows.identities) == (4, 1, ["carol"])
    np.testing.assert_array_equal(changes.rows.vectors, rows[3:])
    assert int(changes.rows.ids.min()) > state.last_id

    for unknown in (IndexState(), IndexState(version=2, removals=5, last_id=state.last_id)):
        everything = gallery.changes(unknown)  # no counters, or a log that does not reach back: read all
        assert everything.removed is None and everything.rows.identities == ["bob", "carol"]

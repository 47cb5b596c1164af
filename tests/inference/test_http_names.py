"""One word per concept in the HTTP contract: the new names, and the deprecated ones served beside them."""

from __future__ import annotations

import pytest

from facesim.contract.api import DEPRECATED_NAMES, with_new_names, with_old_names
from facesim.contract.client import check_gallery_listing, check_v1_answer


def test_a_server_answer_carries_both_names() -> None:
    listing = {"gallery_version": "v2", "gallery_edits": 7, "model_fingerprint": "abc", "size": 1}
    assert with_old_names(listing, "gallery") == listing | {"version": "v2", "edits": 7, "model_version": "abc"}
    assert with_old_names({"identity": "Ada", "gallery_edits": 3}, "enrol")["edits"] == 3
    assert with_old_names({"gallery_edits": 4, "size": 9}, "index") == {"gallery_edits": 4, "size": 9, "version": 4}


def test_a_client_reads_an_older_server_by_the_new_names() -> None:
    old_answer = {"predictions": [{"faces": []}], "threshold": 0.5, "model_version": "abc", "gallery_version": None}
    answer = with_new_names(old_answer | {"gallery_edits": 2}, "predict")
    check_v1_answer(answer)
    assert answer["model_fingerprint"] == "abc"
    old_listing = {"version": "v1", "edits": 5, "model_version": "abc", "identities": []}
    listing = with_new_names(old_listing, "gallery")
    check_gallery_listing(listing)
    assert (listing["gallery_version"], listing["gallery_edits"], listing["model_fingerprint"]) == ("v1", 5, "abc")


def test_the_new_name_wins_and_non_objects_pass_through() -> None:
    assert with_new_names({"edits": 1, "gallery_edits": 2}, "enrol")["gallery_edits"] == 2
    assert with_new_names([1, 2], "gallery") == [1, 2]


@pytest.mark.parametrize("kind", sorted(DEPRECATED_NAMES))
def test_no_name_means_two_things(kind: str) -> None:
    """An old name is never a new name of the same answer, and each new name replaces one concept."""
    renames = DEPRECATED_NAMES[kind]
    assert not set(renames) & set(renames.values())
    assert set(renames.values()) <= {"model_fingerprint", "gallery_version", "gallery_edits"}

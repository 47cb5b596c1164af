"""Every test is exactly one of `unit` or `integration` (tests/conftest.py assigns them by rule)."""

from __future__ import annotations

import pytest

from tests.conftest import INTEGRATION_FIXTURES, INTEGRATION_MARKS, TEST_KINDS


def _kinds(item: pytest.Item) -> list[str]:
    return [kind for kind in TEST_KINDS if item.get_closest_marker(kind)]


def test_every_collected_test_is_unit_or_integration_not_both(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    wrong = {item.nodeid: _kinds(item) for item in items if len(_kinds(item)) != 1}
    assert not wrong, f"tests marked other than exactly one of {TEST_KINDS}: {wrong}"
    assert request.node in items and _kinds(request.node) == ["unit"]


def test_tests_that_need_shared_data_a_database_or_a_browser_are_integration(request: pytest.FixtureRequest) -> None:
    for item in request.session.items:
        needs = INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        marked = INTEGRATION_MARKS.intersection(mark.name for mark in item.iter_markers())
        if needs or marked:
            assert _kinds(item) == ["integration"], (item.nodeid, needs, marked)

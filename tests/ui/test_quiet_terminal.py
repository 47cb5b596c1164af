"""A quiet terminal: an open UI page asks nothing while idle, and neither server logs health probes,
while every other request still gets its one access line (issue 23)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser

from tests.ui.conftest import LoggedServers

pytestmark = pytest.mark.browser

# Longer than any period the page could poll at (the old poll was 5 s); the 60 s check is manual.
IDLE_S = 6.0
# Records every timer the page's scripts start, before any of them runs.
RECORD_TIMERS = """
window.__timers = [];
for (const name of ["setInterval", "setTimeout"]) {
  const original = window[name].bind(window);
  window[name] = (handler, delay, ...rest) => { window.__timers.push(`${name}(${delay})`); return original(handler, delay, ...rest); };
}
"""
PROBES = ("/v2/health/ready", "/v2/health/live", "/v1/models/facenet")


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def _wait_for_lines(path: Path, count: int, timeout_s: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while len(lines := _lines(path)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return lines


def test_an_idle_page_adds_no_line_to_either_server(browser: Browser, logged_servers: LoggedServers) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(RECORD_TIMERS)
    page.goto(logged_servers.ui_url)
    page.wait_for_load_state("networkidle")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    before = (_lines(logged_servers.predictor_log), _lines(logged_servers.ui_log))
    page.wait_for_timeout(IDLE_S * 1000)
    assert asked == [] and page.evaluate("window.__timers") == []
    assert (_lines(logged_servers.predictor_log), _lines(logged_servers.ui_log)) == before
    context.close()
    # The page load checked readiness (unlogged) and listed the gallery for its samples (logged).
    predictor_log = "\n".join(before[0])
    assert 'GET /v1/models/facenet/gallery HTTP/1.1" 200' in predictor_log
    assert '/v2/health/ready HTTP/1.1" 200' not in predictor_log


def test_probes_are_not_logged_and_other_requests_get_one_line(logged_servers: LoggedServers) -> None:
    log = logged_servers.predictor_log
    before = _lines(log)
    for path in PROBES:
        assert requests.get(logged_servers.predictor_url + path, timeout=10).status_code == 200
    assert requests.get(logged_servers.ui_url + "/healthz", timeout=10).status_code == 200
    assert requests.get(logged_servers.predictor_url + "/v1/models/facenet/gallery", timeout=10).ok
    after = _wait_for_lines(log, len(before) + 1)
    new = after[len(before) :]
    assert len(new) == 1 and 'GET /v1/models/facenet/gallery HTTP/1.1" 200' in new[0], new
    assert len(_lines(logged_servers.ui_log)) == 1  # the start-up line only: waitress logs no requests

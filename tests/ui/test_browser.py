"""End to end in headless Chromium (Debian's, driven by Playwright): what a user clicks through."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from tests.helpers.card_predictor import card_predictor
from tests.helpers.ui_helpers import HOSTILE_NAME, DoomedPredictor, start_ui, stop

pytestmark = pytest.mark.browser

A_NUMBER = re.compile(r"^\d+\.\d+$")
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "search.png"


class Watched:
    """A page, the dialogs it opened and the errors its console reported (CSP violations among them)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


@pytest.fixture()
def watched(browser: Browser, artifacts_dir: Path, request: pytest.FixtureRequest) -> Iterator[Watched]:
    # Indirect parameters: {"javascript": False} browses with scripts off.
    javascript = getattr(request, "param", {}).get("javascript", True)
    context = browser.new_context(viewport={"width": 1200, "height": 900}, java_script_enabled=javascript)
    watched = Watched(context.new_page())
    watched.page.set_default_timeout(30_000)
    yield watched
    watched.page.screenshot(path=artifacts_dir / f"{request.node.name}.png", full_page=True)
    context.close()


def _search(page: Page, image: Path) -> None:
    page.set_input_files("#search-form input[type=file]", image)
    page.click("#search-form button[type=submit]")


def _enrol(page: Page, ui_url: str, name: str, image: Path) -> None:
    page.goto(f"{ui_url}/gallery")
    page.fill("input[name=identity]", name)
    page.set_input_files("#enrol-form input[type=file]", image)
    page.click("#enrol-form button[type=submit]")
    expect(page.locator(".notice-ok")).to_contain_text("Enrolled")


def _remove(page: Page, ui_url: str, name: str) -> None:
    page.goto(f"{ui_url}/gallery")
    page.get_by_role("button", name=f"remove {name}", exact=True).click()
    expect(page.locator(".notice-ok")).to_contain_text("Removed")


def test_upload_two_people_shows_two_faces_with_matches(watched: Watched, live_ui: str, two_people_jpg: Path) -> None:
    page = watched.page
    page.goto(live_ui)
    _search(page, two_people_jpg)
    faces = page.locator("#results .face")
    expect(faces).to_have_count(2)
    for index in range(2):
        expect(faces.nth(index).locator(".match")).to_have_count(3)
        expect(faces.nth(index).locator(".verdict").first).to_be_visible()
    assert page.locator("#results img.annotated").evaluate("img => img.naturalWidth") > 0
    assert watched.console_errors == []


@pytest.mark.parametrize("watched", [{"javascript": False}], indirect=True, ids=["no-javascript"])
def test_search_and_compare_work_without_javascript(watched: Watched, live_ui: str, examples_dir: Path) -> None:
    page = watched.page
    page.goto(live_ui)
    _search(page, examples_dir / "two_people.jpg")
    expect(page.locator("#results .face")).to_have_count(2)
    page.goto(f"{live_ui}/compare")
    page.set_input_files("input[name=first]", examples_dir / "obama.jpg")
    page.set_input_files("input[name=second]", examples_dir / "obama2.jpg")
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#comparison img.crop")).to_have_count(2)


def test_drop_a_photo_on_the_search_box(watched: Watched, live_ui: str, two_people_jpg: Path) -> None:
    page = watched.page
    page.goto(live_ui)
    # A drop as the browser delivers it: a DataTransfer holding the file.
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "two_people.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        base64.b64encode(two_people_jpg.read_bytes()).decode("ascii"),
    )
    page.dispatch_event("#search-form [data-dropzone]", "drop", {"dataTransfer": transfer})
    expect(page.locator("#search-form [data-previews] img")).to_have_count(1)
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results .face")).to_have_count(2)


def test_model_card_with_roc_curve(watched: Watched, live_ui: str) -> None:
    page = watched.page
    page.goto(f"{live_ui}/model")
    expect(page.locator("#summary")).to_contain_text("Threshold")
    expect(page.locator("#metrics")).to_be_visible()
    roc = page.locator(".roc img")
    expect(roc).to_be_visible()
    assert roc.evaluate("img => img.complete && img.naturalWidth") > 100
    assert watched.console_errors == []


def test_search_page_offers_samples_of_the_most_photographed(watched: Watched, live_ui: str) -> None:
    page = watched.page
    page.goto(live_ui)
    first_sample = page.locator("#samples button.sample").first
    expect(first_sample).to_have_attribute("title", "Colin Powell")  # the tiny gallery's most photographed
    first_sample.click()
    best = page.locator("#results .face").first.locator(".match").first
    expect(best.locator(".identity")).to_have_text("Colin Powell")
    expect(page.locator("#results h2")).to_contain_text("Colin Powell.jpg")


def test_demo_search_and_the_readme_screenshot(watched: Watched, demo_ui: str, two_people_jpg: Path) -> None:
    """The README's picture (docs/img/search.png) is this page, so it shows the UI as it is: the
    pretrained model finds Joe Biden in the gallery, and Barack Obama (not enrolled) nowhere."""
    page = watched.page
    page.goto(demo_ui)
    expect(page.locator("#samples button.sample").first).to_have_attribute("title", "George W Bush")
    _search(page, two_people_jpg)
    faces = page.locator("#results .face")
    expect(faces).to_have_count(2)
    best = [faces.nth(index).locator(".match").first for index in range(2)]
    found = sorted((match.locator(".verdict").inner_text(), match.locator(".identity").inner_text()) for match in best)
    assert found[0][0] == "not the same" and found[1] == ("same person", "Joseph Biden"), found
    main = page.locator("main").bounding_box()  # not the footer: it names the test's random port
    assert main is not None
    size = page.viewport_size or {"width": 1200}
    bottom = main["y"] + main["height"]
    page.screenshot(
        path=README_SCREENSHOT, full_page=True, clip={"x": 0, "y": 0, "width": size["width"], "height": bottom}
    )
    assert watched.console_errors == []


@pytest.fixture()
def card_ui(tiny_model_dir: Path) -> Iterator[str]:
    """The UI in front of a stand-in predictor serving the tiny model's card, with a learning rate of
    2e-5 and fold 10's 307,011 impostor image pairs written in."""
    card = json.loads((tiny_model_dir / "model.json").read_text())
    card["training"]["params"]["learning_rate"] = 2e-05
    card["metrics"]["test_impostor_pairs"] = 307011.0
    with card_predictor(card, (tiny_model_dir / "roc.png").read_bytes()) as predictor_url:
        ui_url, process = start_ui(predictor_url)
        yield ui_url
        stop(process)


def test_model_card_reads(watched: Watched, card_ui: str) -> None:
    page = watched.page
    page.goto(f"{card_ui}/model")
    expect(page.locator("#metrics")).to_contain_text("307,011")
    impostors = page.locator("#metrics tr", has_text="impostor_pairs")
    expect(impostors.locator("td")).to_have_count(2)  # validation and test side by side
    expect(impostors.locator("td").nth(1)).to_have_text("307,011")
    learning_rate = page.locator(".tree dt", has_text=re.compile(r"^learning_rate$")).locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(learning_rate).to_have_text(re.compile(r"^\s*2(\.0)?e-05\s*$"))
    points = page.locator(".tree dt", has_text=re.compile(r"^template_points$")).locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(points).to_have_text(re.compile(r"^\s*\(\d+\.\d, \d+\.\d\)(, \(\d+\.\d, \d+\.\d\)){4}\s*$"))
    assert page.locator(".roc img").evaluate("img => img.complete && img.naturalWidth") > 100
    assert watched.console_errors == []


def test_compare_two_photos(watched: Watched, live_ui: str, examples_dir: Path) -> None:
    page = watched.page
    page.goto(f"{live_ui}/compare")
    page.set_input_files("input[name=first]", examples_dir / "obama.jpg")
    page.set_input_files("input[name=second]", examples_dir / "obama2.jpg")
    expect(page.locator("[data-previews] img")).to_have_count(2)  # the JavaScript preview
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#distance")).to_have_text(A_NUMBER)
    expect(page.locator("#comparison img.crop")).to_have_count(2)
    assert watched.console_errors == []


def test_enrol_a_new_identity_then_find_it(watched: Watched, writable_ui: str, examples_dir: Path) -> None:
    page = watched.page
    name = f"Test Person {uuid.uuid4().hex[:6]}"
    _enrol(page, writable_ui, name, examples_dir / "lin-manuel-miranda.png")
    expect(page.locator("#identities .identity")).to_contain_text([name])
    page.goto(writable_ui)
    _search(page, examples_dir / "lin-manuel-miranda.png")
    best = page.locator("#results .face").first.locator(".match").first
    expect(best.locator(".identity")).to_have_text(name)
    expect(best.locator(".verdict")).to_have_text("same person")
    _remove(page, writable_ui, name)
    expect(page.locator("#identities .identity", has_text=name)).to_have_count(0)


def test_hostile_name_is_shown_as_text_and_never_runs(watched: Watched, writable_ui: str, examples_dir: Path) -> None:
    page = watched.page
    _enrol(page, writable_ui, HOSTILE_NAME, examples_dir / "lin-manuel-miranda.png")
    expect(page.locator(".notice-ok")).to_contain_text(HOSTILE_NAME)
    expect(page.locator("#identities .identity", has_text=HOSTILE_NAME)).to_have_count(1)
    page.goto(writable_ui)
    _search(page, examples_dir / "lin-manuel-miranda.png")
    expect(page.locator("#results .identity", has_text=HOSTILE_NAME).first).to_be_visible()
    _remove(page, writable_ui, HOSTILE_NAME)
    assert watched.dialogs == []
    assert page.evaluate("document.querySelectorAll('main script').length") == 0


def test_banner_after_the_predictor_is_stopped(watched: Watched, doomed_predictor: DoomedPredictor) -> None:
    page = watched.page
    page.goto(doomed_predictor.ui_url)
    expect(page.locator("#predictor-down")).to_have_count(0)
    doomed_predictor.stop()
    page.goto(doomed_predictor.ui_url)
    expect(page.locator("#predictor-down")).to_contain_text("unavailable")
    page.goto(f"{doomed_predictor.ui_url}/gallery")
    expect(page.locator("#predictor-down")).to_be_visible()

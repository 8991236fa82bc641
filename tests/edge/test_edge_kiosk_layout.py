"""The kiosk screen's result as a customer sees it, in a real browser (Debian chromium via
Playwright) on the screen server alone: a result handed to its state as the daemon hands it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import pytest
from playwright.sync_api import expect

from appliance.browser import page_in
from appliance.capture.quality import FrameQuality
from appliance.edge.reasons import not_graded_reason
from appliance.edge.screen import OVERLAY_FILE
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import ScreenState
from appliance.edge.screen_view import SHOWN_FEATURES, result_view
from appliance.edge.testing import FIXED_FEATURES
from appliance.synthetic.camera import textured_skin
from appliance.transport import payloads


def graded(label: str | None, probabilities: dict[str, float] | None = None) -> payloads.Result:
    """A committed result with the fixed features, graded ``label`` (None: no model) with
    ``probabilities`` (default: certain)."""
    classification = None if label is None else payloads.Classification(
        model="grader", version="1", label=label, probabilities=probabilities or {label: 1.0})
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(), device_id="kiosk-l", site="lab",
        captured_at=payloads.utc_now(), software_version="test",
        quality=payloads.Quality(verdict="ok"), features=FIXED_FEATURES,
        classification=classification)


def result_state(tmp_path: Path, result: payloads.Result,
                 references: dict[str, dict[str, dict[str, float]]] | None = None) -> ScreenState:
    """A kiosk screen's state with ``result`` on screen, as the daemon hands it (with its
    overlay where one is in ``tmp_path``, compared with ``references`` where given)."""
    state = ScreenState(burst_frames=5, idle_s=600, language="en")
    overlay = (tmp_path / OVERLAY_FILE).exists()
    state.show_result(result_view(result, references or {}, overlay=overlay))
    return state


class Screen:
    """The screen server showing ``state``, as the daemon serves it."""

    def __init__(self, tmp_path: Path, state: ScreenState) -> None:
        self.server = ScreenServer(0, state, PreviewFeed(320), tmp_path, 15.0)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.25,),
                                       daemon=True)
        self.thread.start()
        self.address = f"http://127.0.0.1:{self.server.server_port}/"

    def stop(self) -> None:
        """The daemon goes away: its streams end and nothing answers on its port."""
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def showing(tmp_path: Path, result: payloads.Result,
            references: dict[str, dict[str, dict[str, float]]] | None = None) -> Iterator[str]:
    """The screen server with ``result`` on screen; yields the page's address."""
    screen = Screen(tmp_path, result_state(tmp_path, result, references))
    try:
        yield screen.address
    finally:
        screen.stop()


def result_page(page: Any, address: str) -> None:
    page.goto(address, wait_until="domcontentloaded")  # the preview never loads: no camera
    expect(page.locator("body")).to_have_attribute("data-phase", "result")


def test_a_long_grade_label_stays_within_the_screen(tmp_path: Path, chromium_browser: Any) -> None:
    """A model's label may be 64 characters without a space (the result contract's bound):
    drawn whole on one line it made the page 2,550 px wide on a 600 px screen, the preview and
    the customer's choices off to the side."""
    label = "<b>" + "W" * 56 + "$&{x}"
    with showing(tmp_path, graded(label)) as address, page_in(chromium_browser, 600, 1024) as page:
        result_page(page, address)
        expect(page.locator("#grade")).to_have_text(label)  # as text, not markup
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1]


def test_a_portrait_screen_shows_the_result_below_the_preview(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    """A kiosk display turned portrait (1080x1920) kept the two columns side by side: each
    feature's explanation ran a word or two a line in a third of half the screen."""
    with showing(tmp_path, graded("fine")) as address, \
            page_in(chromium_browser, 1080, 1920) as page:
        result_page(page, address)
        live = page.locator("#live").bounding_box()
        panel = page.locator("#panel").bounding_box()
        assert panel["y"] >= live["y"] + live["height"]
        assert panel["width"] > 0.9 * 1080 - 50  # the screen's width, less the margins


def test_a_result_without_a_grade_does_not_show_an_empty_one(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    """A kiosk without a model (or whose model's label the result contract refused) showed the
    customer "Grade -", a heading for nothing; a grade withheld still says so, and why."""
    with showing(tmp_path, graded(None)) as address, page_in(chromium_browser, 1280, 800) as page:
        result_page(page, address)
        expect(page.locator("#kime")).to_have_text("61")
        expect(page.locator(".score .grade")).to_be_hidden()
        assert "Grade" not in page.inner_text("#result")


def test_a_screen_whose_kiosk_went_away_does_not_keep_the_last_customers_result(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    """The daemon gone (a crash systemd has not yet restarted, or a restart loop): the page
    kept the last customer's result on screen, past the idle time that clears it (the daemon
    clears it), for the next customer to read; now it says the kiosk is starting again."""
    screen = Screen(tmp_path, result_state(tmp_path, graded("fine")))
    try:
        with page_in(chromium_browser, 1280, 800) as page:
            result_page(page, screen.address)
            expect(page.locator("#result")).to_be_visible()
            screen.stop()
            expect(page.locator("#guidance")).to_have_text(
                "This kiosk is starting again. Please wait a moment.", timeout=15_000)
            expect(page.locator("#result")).to_be_hidden()
            page.set_viewport_size({"width": 800, "height": 480})  # 537 px high before
            assert page.evaluate("document.documentElement.scrollHeight") <= 480
    finally:
        screen.stop()


# each measured value shown, with the number of lines its text takes on screen
LINES_OF_EACH_VALUE = """[...document.querySelectorAll('#features td.value')].map((td) => {
  const range = document.createRange();
  range.selectNodeContents(td);
  return [td.textContent, new Set([...range.getClientRects()].map((box) => box.top)).size];
})"""


def test_a_number_and_its_unit_stay_on_one_line(tmp_path: Path, chromium_browser: Any) -> None:
    """On a 1024x600 panel in Japanese the furrows' "6.1 mm/mm²" broke after the number, the
    unit alone on the next line."""
    with showing(tmp_path, graded("fine")) as address, page_in(chromium_browser, 1024, 600) as page:
        result_page(page, address)
        page.click("#lang-ja")
        expect(page.locator("h1")).to_have_text("肌のキメチェック")
        lines = page.evaluate(LINES_OF_EACH_VALUE)
        assert len(lines) == 5
        assert all(count == 1 for _, count in lines), lines


def test_a_near_tie_says_the_result_lies_between_two_grades(
    tmp_path: Path, chromium_browser: Any,
) -> None:
    """The model's top two grades 0.46 and 0.44 apart read as a definite "Normal"."""
    near_tie = {"fine": 0.44, "normal": 0.46, "coarse": 0.10}
    with showing(tmp_path, graded("normal", near_tie)) as address, \
            page_in(chromium_browser, 1280, 800) as page:
        result_page(page, address)
        grade = page.locator("#grade")
        expect(grade).to_have_text("between Fine and Normal")
        page.click("#lang-ja")
        expect(grade).to_have_text("細かいとふつうの間")
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1]


def customer_result(withheld: bool) -> payloads.Result:
    """A consenting customer's result as a kiosk shows it most fully: every feature compared
    with their age band, and a grade that takes two lines (a near-tie) or one withheld with
    its sentence."""
    quality = payloads.Quality(verdict="ok", reasons=[not_graded_reason(("pore_count",))]
                               if withheld else [])
    classification = None if withheld else payloads.Classification(
        model="grader", version="1", label="normal",
        probabilities={"fine": 0.44, "normal": 0.46, "coarse": 0.10})
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(), device_id="kiosk-l", site="lab",
        captured_at=payloads.utc_now(), software_version="test", quality=quality,
        features=FIXED_FEATURES, classification=classification,
        subject=payloads.Subject(age_band="40-49", consent=True))


# every choice button's box and the page's height, against the viewport's
CHOICES_IN_VIEW = """[...document.querySelectorAll('#welcome button')].map((b) => {
  const box = b.getBoundingClientRect();
  return [b.textContent, box.top >= 0 && box.bottom <= innerHeight && box.right <= innerWidth];
})"""
# the smallest type of any text shown, in px: a kiosk is read from arm's length
SMALLEST_TEXT = """Math.min(...[...document.querySelectorAll('body *')].filter((el) =>
  el.getClientRects().length > 0
  && [...el.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim())
).map((el) => parseFloat(getComputedStyle(el).fontSize)))"""
READABLE_PX = 11.0


@pytest.mark.parametrize("screen", [(1280, 800), (1024, 600), (800, 480)],
                         ids=["1280x800", "1024x600", "800x480"])
@pytest.mark.parametrize(("withheld", "picture"), [(False, True), (True, True), (False, False)],
                         ids=["near-tie", "withheld", "no-picture"])
def test_the_result_and_the_choices_fit_a_1280x800_1024x600_or_800x480_screen(
    tmp_path: Path, withheld: bool, picture: bool, screen: tuple[int, int], chromium_browser: Any
) -> None:
    """At 1280x800 the result (its picture, every feature compared with the age band) ran to
    some 1,250 px: the age band and consent choices for the next customer lay below the
    screen's edge, and a kiosk screen has no one to scroll it. Without a picture (an analyser
    that draws none) the live preview keeps its place, as small. On a 1024x600 panel, with that
    layout, the choices still ended 12 px below the edge and the numbers ran to some 840 px;
    on an 800x480 panel (a 7-inch kiosk touchscreen) with the 1024x600 layout the choices
    ended at 516-526 px and the page was 593-649 px high. No text is under 11 px."""
    if picture:
        cv2.imwrite(str(tmp_path / OVERLAY_FILE), textured_skin(7, (1280, 960))(0))
    features = FIXED_FEATURES.model_dump()
    references = {"40-49": {key: {"mean": features[key] * 1.3, "sd": features[key] * 0.1,
                                  "n": 50.0} for key, _, _ in SHOWN_FEATURES}}
    with showing(tmp_path, customer_result(withheld), references) as address, \
            page_in(chromium_browser, *screen) as page:
        result_page(page, address)
        expect(page.locator("#overlay" if picture else "#preview")).to_be_visible()
        for language in ("en", "ja"):
            page.click(f"#lang-{language}")
            expect(page.locator("html")).to_have_attribute("lang", language, timeout=15_000)
            expect(page.locator("#features")).to_contain_text("40-49")
            choices = page.evaluate(CHOICES_IN_VIEW)
            assert len(choices) == 11  # nine age bands, yes and no
            assert all(inside for _, inside in choices), (language, choices)
            heights = page.evaluate("[document.documentElement.scrollHeight, innerHeight]")
            assert heights[0] <= heights[1], (language, heights)  # the result too, unscrolled
            assert page.evaluate(SMALLEST_TEXT) >= READABLE_PX


def measuring(state: ScreenState) -> None:
    state.on_gated(FrameQuality("ok", ()), 3, complete=False)


@pytest.mark.parametrize("show", [
    pytest.param(lambda state: None, id="consent"),
    pytest.param(measuring, id="measuring"),
    pytest.param(lambda state: state.measurement_failed(), id="measure-again"),
    pytest.param(lambda state: state.set_out_of_order("guide_paused_disk_full"), id="disk-full"),
    pytest.param(lambda state: state.set_out_of_order("guide_duplicate_device"),
                 id="duplicate-device"),
    pytest.param(lambda state: state.set_out_of_order("guide_camera_offline", staff_told=True),
                 id="camera-offline-staff-told"),
])
def test_every_other_screen_fits_a_1024x600_or_800x480_screen(
    tmp_path: Path, show: Callable[[ScreenState], None], chromium_browser: Any
) -> None:
    """The guidance (why the kiosk cannot measure, with who knows of it, or to measure again)
    sat under a preview as wide as half the screen: on a 1024x600 panel the page was 626-714 px
    high; on an 800x480 panel 573-661 px, and the consent choices (616-652 px) and the burst's
    progress in Japanese (509 px) ran past the edge too. No text is under 11 px."""
    state = ScreenState(burst_frames=5, idle_s=600, language="en")
    show(state)
    screen = Screen(tmp_path, state)
    try:
        with page_in(chromium_browser, 1024, 600) as page:
            page.goto(screen.address, wait_until="domcontentloaded")
            expect(page.locator("body")).to_have_attribute("data-phase", state.snapshot()["phase"])
            for language, (width, height) in itertools.product(("en", "ja"),
                                                               ((1024, 600), (800, 480))):
                page.set_viewport_size({"width": width, "height": height})
                page.click(f"#lang-{language}")
                expect(page.locator("html")).to_have_attribute("lang", language, timeout=15_000)
                size = page.evaluate("[document.documentElement.scrollWidth, "
                                     "document.documentElement.scrollHeight]")
                assert size[0] <= width, (language, width, size)
                assert size[1] <= height, (language, width, size)
                assert page.evaluate(SMALLEST_TEXT) >= READABLE_PX
    finally:
        screen.stop()

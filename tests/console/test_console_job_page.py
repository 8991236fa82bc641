"""A pathology job's page says what scored each slide in words, not as the stored JSON, and
shows an unsupported slide without the score its label withholds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import Console, browser_login, get_with, login_cookie, write_picture
from playwright.sync_api import expect

from appliance.browser import page_in
from appliance.console.jobs import backend_text
from appliance.pathology.jobs import JobRequest, SlideRequest
from appliance.pathology.jobstore import SLIDE_COLUMNS, open_pathology_store
from appliance.pathology.verdict import UNSUPPORTED, UNSUPPORTED_REASON

# what appliance/pathology/backends.py reports and the finisher stores with each slide
ONNX_INT8 = {"backend": "onnx-cpu", "model": "/opt/appliance/models/msi-vgg19-w16.int8.onnx",
             "providers": ["CPUExecutionProvider"], "threads": 0, "quantization": "int8"}
TORCH = {"backend": "torch-cuda", "model": "/opt/appliance/models/msi-vgg19.onnx",
         "dtype": "bfloat16", "channels_last": True, "compiled": False}


def _store_job(console: Console, job_id: str, backends: list[str]) -> None:
    store = open_pathology_store(console.store_url)
    try:
        slides = tuple(SlideRequest(f"/slides/s{index}.jpg", 1.0, f"s{index}")
                       for index in range(len(backends)))
        assert store.accept(JobRequest(job_id, slides, "2026-12-05T08:00:00.000000Z"), "srv", 60.0)
        for index, backend in enumerate(backends):
            row = dict.fromkeys(SLIDE_COLUMNS, "")
            row.update(job_id=job_id, slide_index=index, slide=f"s{index}", label="MSS",
                       score=0.2, mean_probability=0.2, msi_tile_share=0.1, tile_count=100,
                       in_distribution_share=0.99, backend=backend)
            assert store.store_slide(row)
        assert store.finish(job_id, "srv", "done")
    finally:
        store.close()


def test_a_slide_s_backend_reads_as_words_with_the_settings_in_its_tooltip(
        console: Console) -> None:
    """The backend column held each slide's stored settings as a JSON object, the server's
    model path included, that widened the table past the pictures (seen in chromium on a job
    of `appliance pathology job submit`). Its id names its submitter, as a submitted job's does
    (LOGIN/NAME): the page and the API take the slash."""
    _store_job(console, "lab-a/job-words", [json.dumps(ONNX_INT8), json.dumps(TORCH)])
    cookie, _ = login_cookie(console)
    status, _, listed = get_with(console, "/pathology", cookie)
    assert 'href="/pathology/lab-a/job-words"' in listed.decode()
    status, _, body = get_with(console, "/pathology/lab-a/job-words", cookie)
    assert status == 200
    cells = re.findall(r'<td class="backend" title="([^"]*)">([^<]*)</td>', body.decode())
    assert [text for _, text in cells] == ["onnx-cpu, int8, msi-vgg19-w16.int8.onnx",
                                           "torch-cuda, bfloat16, msi-vgg19.onnx"]
    assert all(title.startswith("{&#34;backend&#34;: ") for title, _ in cells)
    _, _, answer = console.get("/api/v1/pathology/jobs/lab-a/job-words", console.token)
    assert [json.loads(s["backend"]) for s in json.loads(answer)["slides"]] == [ONNX_INT8, TORCH]
    # a slide's picture of such a job is looked up as one (this one has none stored)
    status, _, body = get_with(console, "/pathology/lab-a/job-words/slides/0/heatmap", cookie)
    assert status == 404
    assert "heatmap of slide 0 of pathology job lab-a/job-words" in body.decode()


def test_a_backend_stored_as_other_text_is_shown_as_it_is() -> None:
    assert backend_text("onnx-cpu") == "onnx-cpu"
    assert backend_text("") == ""
    assert backend_text("[1, 2]") == "[1, 2]"
    assert backend_text('{"threads": 0}') == '{"threads": 0}'


# a slide the guard calls unsupported, stored as the finisher stores it: the computed score
# (what the model says of tiles unlike its training data), and its heatmap and CAM panel
UNSUPPORTED_ROW = {"slide": "tum", "label": UNSUPPORTED, "score": 0.998,
                   "mean_probability": 0.996, "msi_tile_share": 0.92, "tile_count": 12,
                   "in_distribution_share": 0.25, "reason": UNSUPPORTED_REASON}
MSS_ROW = {"slide": "mss", "label": "MSS", "score": 0.123, "mean_probability": 0.123,
           "msi_tile_share": 0.07, "tile_count": 40, "in_distribution_share": 0.95, "reason": ""}


@pytest.fixture(scope="module")
def job_page(console: Console, chromium_browser: Any) -> Iterator[Any]:
    """The page of job 'job-ood' (an MSS slide, then an unsupported one, each with its
    heatmap and CAM panel) in chromium, logged in as the viewer victor."""
    store = open_pathology_store(console.store_url)
    try:
        slides = (SlideRequest("/slides/mss.jpg", 0.5, "mss"),
                  SlideRequest("/slides/tum.jpg", 0.5, "tum"))
        assert store.accept(JobRequest("job-ood", slides, "2026-12-05T09:00:00.000000Z"),
                            "srv", 60.0)
        for index, stored in enumerate((MSS_ROW, UNSUPPORTED_ROW)):
            row = dict.fromkeys(SLIDE_COLUMNS, "")
            row.update(stored, job_id="job-ood", slide_index=index, backend="onnx-cpu")
            for picture, width_px in (("heatmap", 64), ("cam", 96)):
                path = console.pathology_results / f"job-ood/{picture}s/{index}.png"
                write_picture(path, width_px, 32)
                row[f"{picture}_path"] = str(path)
            assert store.store_slide(row)
        assert store.finish("job-ood", "srv", "done")
    finally:
        store.close()
    with page_in(chromium_browser, 1280, 900) as page:
        page.goto(console.url + "/pathology/job-ood")
        browser_login(page, "victor")
        expect(page).to_have_url(console.url + "/pathology/job-ood")
        yield page


def test_an_unsupported_slide_shows_its_reason_and_share_and_no_score(job_page: Any) -> None:
    """The page showed an unsupported slide's score (0.998) and MSI tile share in the main
    columns, where `pathology run` and `job submit --wait` show the reason and the share of
    tiles in distribution: a score beside "unsupported" reads as the answer the label
    withholds."""
    row = job_page.locator("#slides tr", has_text="tum")
    cells = row.locator("td")  # label, score, MSI tile share, tiles, in distribution, reason
    for column, shown in ((2, UNSUPPORTED), (3, "none"), (4, "none"), (5, "12"), (6, "25%")):
        expect(cells.nth(column)).to_have_text(shown)
    expect(cells.nth(7)).to_contain_text(UNSUPPORTED_REASON)
    for figure in ("0.998", "0.92", "0.996"):  # on the screen nowhere until audit is opened
        assert figure not in row.inner_text()
    audit = row.locator("details.audit")
    expect(audit.locator("p")).to_be_hidden()  # until asked for
    expect(row.locator("img.cam")).to_be_hidden()  # its tiles' p(MSI): under audit too
    expect(row.locator("img.heatmap")).to_be_visible()  # tiles unlike the data: striped grey
    mss = job_page.locator("#slides tr", has_text="mss").locator("td")
    expect(mss.nth(3)).to_have_text("0.123")
    expect(mss.nth(4)).to_have_text("0.07")
    expect(mss.locator("img.cam")).to_be_visible()
    expect(mss.locator("details")).to_have_count(0)


def test_an_unsupported_slide_s_computed_figures_open_as_labelled_audit_only(
        job_page: Any) -> None:
    row = job_page.locator("#slides tr", has_text="tum")
    audit = row.locator("details.audit")
    expect(audit.locator("summary")).to_have_text("For audit only: what the model computed")
    audit.locator("summary").click()
    expect(audit.locator("p")).to_contain_text(
        "Score 0.998, MSI tile share 0.92, mean p(MSI) 0.996")
    assert "0.998" in row.inner_text()  # on the screen now, and only now
    cam = audit.locator("img.cam")
    expect(cam).to_be_visible()
    job_page.wait_for_function("img => img.complete", arg=cam.element_handle())
    assert cam.evaluate("img => img.naturalWidth") == 96  # the slide's own CAM panel


def test_the_api_gives_an_unsupported_slide_s_figures_apart(console: Console,
                                                           job_page: Any) -> None:
    _, _, answer = console.get("/api/v1/pathology/jobs/job-ood", console.viewer_token)
    mss, tum = json.loads(answer)["slides"]
    assert (tum["score"], tum["mean_probability"], tum["msi_tile_share"]) == (None, None, None)
    assert tum["unsupported_raw"] == {"score": 0.998, "mean_probability": 0.996,
                                      "msi_tile_share": 0.92}
    assert (tum["in_distribution_share"], tum["reason"]) == (0.25, UNSUPPORTED_REASON)
    assert (mss["score"], mss["msi_tile_share"], mss["unsupported_raw"]) == (0.123, 0.07, {})

"""A running console (real uvicorn on a free port) over a store seeded with results."""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import cv2
import numpy as np

from appliance.backoffice.schema import device_row, iso_utc, result_row
from appliance.backoffice.store import Batch, Store, open_store
from appliance.config import ConsoleConfig
from appliance.console.auth import add_user, create_token
from appliance.console.db import StorePool
from appliance.console.server import ConsoleThread
from appliance.edge.reasons import not_graded_reason
from appliance.edge.testing import FIXED_FEATURES
from appliance.transport import payloads

PASSWORD = "correct horse battery"
BANDS = ("20-29", "30-39", "40-49", "50-59", "60-69")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# a seeded result reaches the back office this long after its capture, so it is placed at its
# capture (placed_capture.py): the lists and their date filters go by the placed capture
DELIVERY = timedelta(seconds=2)


@dataclass(frozen=True)
class Console:
    url: str
    token: str
    viewer_token: str
    store_url: str
    pathology_results: Path  # the pathology server's results_dir the console serves from

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """GET without following redirects: status, headers, body."""
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        return open_request(request)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def open_request(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    """Send a request without following redirects: status, headers, body."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """POST without following redirects."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    return open_request(request)


def post_login(console: Console, user: str = "alice", password: str = PASSWORD,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One login through the form (its CSRF cookie and token from GET /login), sent with
    ``headers`` too, going to /fleet: what the console answers."""
    status, answer, body = console.get("/login")
    form_csrf = re.search(rb'name="csrf" value="([^"]+)"', body)
    assert status == 200
    assert form_csrf
    fields = {"csrf": form_csrf.group(1).decode(), "user": user, "password": password,
              "next": "/fleet"}
    return post(console.url + "/login", urlencode(fields).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": answer["set-cookie"].split(";")[0], **(headers or {})})


def login_cookie(console: Console, user: str = "alice") -> tuple[str, str]:
    """Log in through the form; returns (session cookie header, the page's CSRF token)."""
    status, headers, _ = post_login(console, user)
    assert status == 303
    assert headers["location"] == "/fleet"
    cookie = headers["set-cookie"].split(";")[0]
    _, _, page = get_with(console, "/fleet", cookie)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert csrf
    return cookie, csrf.group(1).decode()


def logins_at_once(console: Console, user: str, password: str, count: int) -> list[int]:
    """Send ``count`` logins of ``user`` together (one thread each, one login form); the
    statuses they were answered with, in the order they came back."""
    _, headers, _ = console.get("/login")
    cookie = headers["set-cookie"].split(";")[0]
    form = urlencode({"csrf": cookie.split("=", 1)[1], "user": user,
                      "password": password}).encode()
    answers: list[int] = []

    def login() -> None:
        status, _, _ = post(console.url + "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        answers.append(status)

    threads = [threading.Thread(target=login) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def session_cookie(console: Console, value: str) -> str:
    """A Cookie header of the console's session cookie (its name carries its port)."""
    return f"appliance_session_{urlsplit(console.url).port}={value}"


def get_with(console: Console, path: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
    return open_request(urllib.request.Request(console.url + path, headers={"Cookie": cookie}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# index -> the features outside the validated range: pores too small; hills too large (the
# texture features, with a kime score far off the trend, so figures that kept it would show it)
NOT_VALIDATED_IN_SEED: dict[int, list[str]] = {
    5: ["pore_mean_diameter_um"],
    7: ["furrow_density_mm_per_mm2", "hill_density_per_mm2", "hill_mean_area_mm2",
        "furrow_mean_width_um", "furrow_anisotropy", "kime_score"],
}
UNMEASURED_KIME = 3.0
WITHHELD_IN_SEED = 7  # its grade withheld: the model reads the texture features it flags


def make_result(index: int, site: str, device: str, band: str | None,
                subject: str | None = None) -> payloads.Result:
    """A result whose texture coarsens with the age band (so the cohort shows a trend)."""
    age = BANDS.index(band) if band else 2
    features = FIXED_FEATURES.model_copy(update={
        "kime_score": 80.0 - 8.0 * age + (index % 7) - 3.0,
        "hill_density_per_mm2": 12.0 - 1.0 * age + (index % 5) * 0.2,
        "pore_count": 30 + 3 * age + index % 4,
    })
    if "kime_score" in NOT_VALIDATED_IN_SEED.get(index, []):
        features = features.model_copy(update={"kime_score": UNMEASURED_KIME})
    label = ("fine", "normal", "coarse")[min(age // 2, 2)]
    grade = payloads.Classification(model="skin-texture-grade", version="1", label=label,
                                    probabilities={label: 1.0})
    quality = payloads.Quality(verdict="ok")
    if index == WITHHELD_IN_SEED:
        grade = None
        quality = payloads.Quality(verdict="ok", reasons=[
            not_graded_reason(NOT_VALIDATED_IN_SEED[index])])
    return payloads.Result(
        measurement_id=payloads.new_measurement_id(int(START.timestamp() * 1000) + index * 60_000),
        device_id=device, site=site, captured_at=START + timedelta(minutes=index),
        software_version="0.1.0", quality=quality, features=features, classification=grade,
        subject=payloads.Subject(age_band=band, subject_id=subject, consent=True) if band else None,
        not_validated=NOT_VALIDATED_IN_SEED.get(index, []),
    )


def seed(store: Store, count: int = 60) -> list[payloads.Result]:
    """``count`` results over two sites and three kiosks, most with an age band, and statuses."""
    results = []
    for index in range(count):
        site, device = (("tokyo", f"kiosk-{index % 2 + 1}") if index % 3 else ("osaka", "kiosk-9"))
        band = BANDS[index % len(BANDS)] if index % 10 else None
        subject = f"subj-{index % 4}" if index < 16 else None
        results.append(make_result(index, site, device, band, subject))
    now = iso_utc(datetime.now(UTC))
    rows = [result_row(r, iso_utc(r.captured_at + DELIVERY), r.to_json().decode())
            for r in results]
    statuses = [device_row(payloads.Status(device_id="kiosk-1", site="tokyo", state="online",
                                           at=datetime.now(UTC), software_version="0.1.0",
                                           camera="online", outbox_depth=3,
                                           outbox_oldest_age_s=754.0), now),
                device_row(payloads.Status(device_id="kiosk-9", site="osaka", state="offline",
                                           at=datetime.now(UTC)), now)]
    store.write_batch(Batch(results=rows, statuses=statuses), 100)
    seed_rollout(store, now)
    return results


def write_picture(path: Path, width_px: int, height_px: int) -> bytes:
    """A small colour-ramp PNG at ``path`` (as the pathology server writes pictures); its bytes."""
    ramp = np.linspace(0, 255, width_px, dtype=np.uint8)
    bgr = np.dstack([np.tile(ramp, (height_px, 1))] * 3)
    bgr[:, :, 0] = 90
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), bgr)
    return path.read_bytes()


def seed_pathology(url: str, results: Path) -> None:
    """One finished pathology job of two slides, stored as the pathology server stores it:
    slide a with its heatmap and CAM panel written under ``results``, slide b unsupported
    (with the score the model computed for it) and without pictures."""
    from appliance.pathology.jobs import JobRequest, SlideRequest
    from appliance.pathology.jobstore import SLIDE_COLUMNS, open_pathology_store
    from appliance.pathology.verdict import UNSUPPORTED, UNSUPPORTED_REASON

    heatmap, cam = results / "job-1/heatmaps/0000-a.png", results / "job-1/cams/0000-a.png"
    write_picture(heatmap, 64, 48)
    write_picture(cam, 96, 32)
    store = open_pathology_store(url)
    try:
        request = JobRequest("job-1", (SlideRequest("/slides/a.jpg", 1.0, "a"),
                                       SlideRequest("/slides/b.jpg", 1.0, "b")),
                             "2026-11-30T08:00:00.000000Z")
        assert store.accept(request, "server-1", 60.0)
        for index, label in enumerate(("MSI", UNSUPPORTED)):
            row = dict.fromkeys(SLIDE_COLUMNS, "")
            supported = label != UNSUPPORTED  # an unsupported slide keeps what was computed
            score = 0.91 if supported else 0.97
            row.update(job_id="job-1", slide_index=index, slide="ab"[index], label=label,
                       score=score, mean_probability=score, msi_tile_share=0.4, tile_count=120,
                       in_distribution_share=0.97 if supported else 0.1,
                       reason="" if supported else UNSUPPORTED_REASON,
                       heatmap_path=str(heatmap) if supported else "",
                       cam_path=str(cam) if supported else "")
            assert store.store_slide(row)
        assert store.finish("job-1", "server-1", "done")
    finally:
        store.close()


def seed_rollout(store: Store, now: str) -> None:
    """One halted model rollout as appliance/updates/rollout.py records it."""
    store.write("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [("r0llout1", "skin-texture-grade", "1.1.0", "update", "site tokyo", 1,
                  "halted", "canary kiosk-1 refused: self-test failed", now, now, "0" * 64)])
    store.write("INSERT INTO rollout_devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [("r0llout1", "tokyo", "kiosk-1", "canary", "refused", "self-test failed",
                  "1.0.0", now),
                 ("r0llout1", "tokyo", "kiosk-2", "wave 1", "assigned", None, "1.0.0", now)])


@contextmanager
def running_console(folder: Path, pool_size: int = 4, *, topic_prefix: str = "appliance",
                    **settings: Any) -> Iterator[Console]:
    """The console on a seeded SQLite store, an operator 'alice' and a viewer 'victor';
    ``pool_size`` store connections (the console's default: 4), the fleet's ``topic_prefix``
    (mqtt.topic_prefix) and ``settings`` of its config section."""
    url = f"sqlite:///{folder / 'backoffice.sqlite3'}"
    results = folder / "pathology-results"
    store = open_store(url)
    seed(store)
    seed_pathology(url, results)
    add_user(store, "alice", "operator", PASSWORD)
    add_user(store, "victor", "viewer", PASSWORD)
    token, viewer_token = create_token(store, "alice").token, create_token(store, "victor").token
    store.close()
    config = ConsoleConfig(**{"port": free_port(), "cohort_cache_s": 0, **settings})
    pool = StorePool(url, size=pool_size)
    thread = ConsoleThread(config, pool, results, topic_prefix=topic_prefix)
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        yield Console(f"http://127.0.0.1:{config.port}", token, viewer_token, url, results)
    finally:
        thread.stop()
        pool.close()


def browser_login(page: Any, user: str = "alice", password: str = PASSWORD, *,
                  end_others: bool = False) -> None:
    """Fill in and send the login form the browser page shows."""
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    if end_others:
        page.check("input[name=end_others]")
    page.click("button[type=submit]")


@contextmanager
def operator_page(console: Console, browser: Any) -> Iterator[Any]:
    """A page (1280x900) of ``browser`` (chromium), in a context of its own, logged in as the
    operator alice, on the fleet page."""
    from playwright.sync_api import expect

    from appliance.browser import page_in

    with page_in(browser, 1280, 900) as opened:
        opened.goto(console.url + "/login")
        browser_login(opened)
        expect(opened).to_have_url(console.url + "/fleet")
        yield opened


def listed_page(console: Console, cookie: str, path: str,
                row: str) -> tuple[list[str], dict[str, str], str]:
    """What a paged console list shows at ``path``: the rows' keys (the one group of the regular
    expression ``row``), its First/Previous/Next links by id, and its text."""
    status, _, body = get_with(console, path, cookie)
    text = body.decode()
    assert status == 200, text
    keys = re.findall(row, text)
    links = {name: href.replace("&amp;", "&") for name, href in
             re.findall(r'<a id="(first|previous|next)" href="([^"]+)"', text)}
    return keys, links, text


def walk_pages(console: Console, cookie: str, start: str, way: str, *, row: str,
               per_page: int) -> list[list[str]]:
    """Every page of a paged console list from ``start``, following the ``way`` link (next or
    previous) to its end; each holds 1 to ``per_page`` rows."""
    pages, path = [], start
    while True:
        keys, links, _ = listed_page(console, cookie, path, row)
        assert 0 < len(keys) <= per_page
        pages.append(keys)
        if way not in links:
            return pages
        path = links[way]

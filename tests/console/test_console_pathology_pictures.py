"""The console serves each slide's heatmap and CAM panel: to logged-in users, and only files
inside the pathology results folder that a stored slide result names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from console_helpers import (
    PASSWORD,
    Console,
    free_port,
    get_with,
    login_cookie,
    open_request,
    seed_pathology,
    session_cookie,
    write_picture,
)

from appliance.backoffice.store import open_store
from appliance.console.auth import add_user, create_token
from appliance.pathology.jobs import JobRequest, SlideRequest
from appliance.pathology.jobstore import SLIDE_COLUMNS, open_pathology_store
from appliance.transport.broker import port_open

HEATMAP = "/pathology/job-1/slides/0/heatmap"
API_HEATMAP = "/api/v1/pathology/jobs/job-1/slides/0/heatmap"
SECRET = b"not for the console"


@pytest.fixture(scope="module")
def cookie(console: Console) -> str:
    return login_cookie(console, "victor")[0]  # a viewer: pictures are part of reading


@pytest.fixture(scope="module")
def hostile(console: Console) -> dict[str, str]:
    """Job 'job-2': slide results whose stored picture paths lead elsewhere (as a tampered or
    stale row would), each slide's heatmap and CAM; returns what each one is."""
    results = console.pathology_results
    outside = write_picture(results.parent / "secret.png", 8, 8)  # a real PNG, not to be served
    (results.parent / "secret.png").write_bytes(outside + SECRET)
    inside = results / "job-2" / "heatmaps"
    inside.mkdir(parents=True)
    (inside / "link-out.png").symlink_to(results.parent / "secret.png")
    (inside / "not-a-png.png").write_bytes(b"<script>alert(1)</script>")
    write_picture(inside / "relative.png", 20, 10)
    os.mkfifo(inside / "fifo.png")
    paths = {
        "dot-dot": f"{results}/job-2/../../secret.png",
        "absolute elsewhere": str(results.parent / "secret.png"),
        "symlink out": str(inside / "link-out.png"),
        "relative out": os.path.relpath(results.parent / "secret.png"),
        "system file": "/etc/passwd",
        "not a PNG": str(inside / "not-a-png.png"),
        "FIFO": str(inside / "fifo.png"),
        "missing": str(inside / "gone.png"),
        "relative inside": os.path.relpath(inside / "relative.png"),
        "NUL byte": f"{inside}/x\x00.png",
    }
    _store_job_2(console.store_url, list(paths.values()))
    return {f"/pathology/job-2/slides/{i // 2}/{('heatmap', 'cam')[i % 2]}": what
            for i, what in enumerate(paths)}


def _store_job_2(url: str, picture_paths: list[str]) -> None:
    store = open_pathology_store(url)
    try:
        pairs = [picture_paths[i:i + 2] for i in range(0, len(picture_paths), 2)]
        slides = tuple(SlideRequest(f"/slides/{i}.jpg", 1.0, str(i)) for i in range(len(pairs)))
        assert store.accept(JobRequest("job-2", slides, "2026-11-30T09:00:00.000000Z"),
                            "server-1", 60.0)
        for index, (heatmap, cam) in enumerate(pairs):
            row = dict.fromkeys(SLIDE_COLUMNS, "")
            row.update(job_id="job-2", slide_index=index, slide=str(index), label="MSS",
                       score=0.1, tile_count=10, heatmap_path=heatmap, cam_path=cam)
            assert store.store_slide(row)
    finally:
        store.close()


def test_a_logged_in_user_gets_the_heatmap_and_cam_as_png(console: Console, cookie: str) -> None:
    folder = console.pathology_results / "job-1"
    for picture, path in (("heatmap", "heatmaps/0000-a.png"), ("cam", "cams/0000-a.png")):
        status, headers, body = get_with(console, f"/pathology/job-1/slides/0/{picture}", cookie)
        assert status == 200, body[:200]
        assert headers["content-type"] == "image/png"
        assert headers["x-content-type-options"] == "nosniff"
        assert body == (folder / path).read_bytes()
        status, headers, body = console.get(
            f"/api/v1/pathology/jobs/job-1/slides/0/{picture}", console.viewer_token)
        assert (status, headers["content-type"]) == (200, "image/png")
        assert body == (folder / path).read_bytes()


def test_without_a_login_no_picture_is_served(console: Console) -> None:
    status, headers, body = console.get(HEATMAP)
    assert status == 303
    assert headers["location"] == f"/login?next={HEATMAP}"
    assert not body.startswith(b"\x89PNG")
    assert console.get(HEATMAP, console.token)[0] == 303  # an API token is not a page login
    for token in (None, "forged-token"):
        status, headers, body = console.get(API_HEATMAP, token)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert not body.startswith(b"\x89PNG")
    status, _, _ = get_with(console, HEATMAP, session_cookie(console, "forged-session"))
    assert status == 303


@pytest.mark.parametrize("what", ["dot-dot", "absolute elsewhere", "symlink out",
                                  "relative out", "system file", "not a PNG", "FIFO",
                                  "NUL byte"])
def test_a_stored_path_outside_the_results_folder_or_no_png_is_refused(
    console: Console, cookie: str, hostile: dict[str, str], what: str
) -> None:
    (url,) = [u for u, w in hostile.items() if w == what]
    status, headers, body = get_with(console, url, cookie)
    assert status == 403, (what, body[:300])
    assert headers["content-type"].startswith("text/html")
    assert b"not served" in body
    assert SECRET not in body
    assert b"root:" not in body
    assert b"<script>alert" not in body
    where = str(console.pathology_results.parent)  # no page tells where the host keeps files
    assert where.encode() not in body
    assert b"/etc/passwd" not in body
    status, _, body = console.get("/api/v1" + url.replace("/pathology/", "/pathology/jobs/"),
                                  console.token)
    assert status == 403
    assert "not served" in json.loads(body)["detail"]
    assert where not in json.loads(body)["detail"]
    assert "/etc" not in json.loads(body)["detail"]


def test_missing_pictures_are_404_and_a_relative_path_inside_is_served(
    console: Console, cookie: str, hostile: dict[str, str]
) -> None:
    (missing,) = [u for u, w in hostile.items() if w == "missing"]
    status, _, body = get_with(console, missing, cookie)
    assert status == 404
    assert b"No such file" in body
    assert str(console.pathology_results).encode() not in body
    for url in ("/pathology/job-1/slides/1/heatmap",  # the unsupported slide has no pictures
                "/pathology/job-1/slides/7/heatmap", "/pathology/nope/slides/0/cam"):
        status, _, body = get_with(console, url, cookie)
        assert status == 404, url
    (inside,) = [u for u, w in hostile.items() if w == "relative inside"]
    status, headers, body = get_with(console, inside, cookie)
    assert (status, headers["content-type"]) == (200, "image/png")


@pytest.mark.parametrize("what", ["dot-dot", "absolute elsewhere", "symlink out",
                                  "relative out", "system file", "not a PNG", "FIFO",
                                  "NUL byte", "missing", "relative inside"])
def test_a_head_of_a_picture_is_answered_as_its_get(
    console: Console, cookie: str, hostile: dict[str, str], what: str
) -> None:
    """A HEAD checks the file as the GET does (it reads its size and signature only)."""
    (url,) = [u for u, w in hostile.items() if w == what]
    request = urllib.request.Request(console.url + url, headers={"Cookie": cookie},
                                     method="HEAD")
    status, head, body = open_request(request)
    get_status, got, _ = get_with(console, url, cookie)
    assert (status, body) == (get_status, b"")
    assert head["content-type"] == got["content-type"]
    if status == 200:
        assert head["content-length"] == got["content-length"]


@pytest.mark.parametrize("url", [
    "/pathology/job-1/slides/0/..%2F..%2F..%2Fetc%2Fpasswd",
    "/pathology/job-1/slides/0/%2Fetc%2Fpasswd",
    "/pathology/job-1/slides/0/passwd",
    "/pathology/job-1/slides/..%2F0/heatmap",
    "/pathology/job-1/slides/-1/heatmap",
    "/pathology/..%2F..%2Fetc/slides/0/heatmap",
    "/pathology/job-1/slides/0/heatmap%00",
])
def test_a_path_in_the_url_never_reaches_the_file_system(
    console: Console, cookie: str, url: str
) -> None:
    status, _, body = get_with(console, url, cookie)
    assert status in (400, 404), url
    assert b"root:" not in body
    assert not body.startswith(b"\x89PNG")


def test_the_job_page_shows_each_slide_s_pictures(console: Console, cookie: str) -> None:
    status, _, page = get_with(console, "/pathology/job-1", cookie)
    assert status == 200
    assert b'<img class="picture heatmap" src="/pathology/job-1/slides/0/heatmap"' in page
    assert b'<img class="picture cam" src="/pathology/job-1/slides/0/cam"' in page
    assert b"no heatmap" in page  # slide b has none


def test_appliance_console_serves_from_the_configs_pathology_results_dir(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    store = open_store(url)
    seed_pathology(url, tmp_path / "pathology-results")
    add_user(store, "ops", "viewer", PASSWORD)
    token = create_token(store, "ops").token
    store.close()
    port = free_port()
    (tmp_path / "backoffice.yaml").write_text(
        f"console:\n  port: {port}\npathology:\n  results_dir: pathology-results\n")
    server = subprocess.Popen(  # relative results_dir: from the config file's folder
        [sys.executable, "-m", "appliance", "console", "--config", "backoffice.yaml", "--store",
         url], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()[0]
            time.sleep(0.1)
        status, headers, body = open_request(urllib.request.Request(
            f"http://127.0.0.1:{port}{API_HEATMAP}", headers={"Authorization": f"Bearer {token}"}))
        assert (status, headers["content-type"]) == (200, "image/png")
        assert body == (tmp_path / "pathology-results/job-1/heatmaps/0000-a.png").read_bytes()
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0]
    assert f"pathology pictures from {tmp_path / 'pathology-results'}" in output

"""HEAD on the console's pages and API calls: the GET's status and headers, without the store
reads that only fill the body (a count of up to 10,000 results, the cohort figures, a list)
or the page it would render."""

from __future__ import annotations

import functools
import inspect
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from console_helpers import (
    PASSWORD,
    Console,
    free_port,
    login_cookie,
    open_request,
    running_console,
)
from fastapi.routing import APIRoute

from appliance.backoffice.store import Store, open_store
from appliance.config import ConsoleConfig
from appliance.console.app import ROUTERS
from appliance.console.auth import add_user
from appliance.console.db import StorePool
from appliance.console.pictures import PNG_SIGNATURE
from appliance.console.server import ConsoleThread

# (route, a URL of it, who asks, what the route reads for its status after the login: a
# results filter's site is one the fleet knows, else 400)
BODY_READ_SKIPPED = [
    ("/fleet", "/fleet?site=tokyo", "page", ()),
    ("/results", "/results?site=osaka", "page", ("fleet_sites_of",)),
    ("/results.csv", "/results.csv?site=osaka", "page", ("fleet_sites_of",)),
    ("/cohort", "/cohort", "page", ()),
    ("/dead-letters", "/dead-letters", "page", ()),
    ("/rollouts", "/rollouts", "page", ()),
    ("/rollouts/{rollout_id}", "/rollouts/r0llout1", "page", ("rollout_rows",)),
    ("/pathology", "/pathology", "page", ()),
    ("/pathology/{job_id:path}", "/pathology/job-1", "page", ("pathology_job_rows",)),
    ("/fleet/{site}/{device}/models", "/fleet/tokyo/kiosk-1/models", "page", ()),
    ("/tokens", "/tokens", "page", ()),
    ("/docs", "/docs", "page", ()),
    ("/api/v1/fleet", "/api/v1/fleet", "api", ()),
    ("/api/v1/fleet", "/api/v1/fleet?limit=2", "api", ()),
    ("/api/v1/results", "/api/v1/results?site=osaka", "api", ("fleet_sites_of",)),
    ("/api/v1/cohort", "/api/v1/cohort", "api", ()),
    ("/api/v1/rollouts", "/api/v1/rollouts", "api", ()),
    ("/api/v1/rollouts/{rollout_id}", "/api/v1/rollouts/r0llout1", "api", ("rollout_rows",)),
    ("/api/v1/pathology/jobs", "/api/v1/pathology/jobs", "api", ()),
    ("/api/v1/pathology/jobs/{job_id:path}", "/api/v1/pathology/jobs/job-1", "api",
     ("pathology_job_rows",)),
    ("/api/v1/fleet/{site}/{device}/model-reports",
     "/api/v1/fleet/tokyo/kiosk-1/model-reports", "api", ()),
]
# routes whose HEAD reads what the GET reads: nothing past the login, or the one thing whose
# presence is the status (a result, a picture: 404 when there is none)
READ_AS_GET = {"/", "/account", "/openapi.json", "/validated-range", "/results/{measurement_id}",
               "/api/v1/results/{measurement_id}",
               "/pathology/{job_id:path}/slides/{slide_index}/{picture}",
               "/api/v1/pathology/jobs/{job_id:path}/slides/{slide_index}/{picture}"}
# routes whose HEAD reads nothing of its body, asked without a login (tested on their own)
HEAD_WITHOUT_LOGIN = {"/login"}
# a page or call that reads nothing past the login: what the login itself reads
LOGIN_ONLY = {"page": "/account", "api": "/openapi.json"}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console whose cohort figures, once computed, are kept for an hour: no background
    computation reads the store while a test counts its reads."""
    with running_console(tmp_path_factory.mktemp("console"), cohort_cache_s=3600) as running:
        cookie, _ = login_cookie(running)
        _ask(running, "GET", "/cohort", {"Cookie": cookie})  # waits for the first figures
        yield running


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the Store methods called, in order, from now on, and ``render NAME`` for
    each page template rendered."""
    called: list[str] = []

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def spy(*args: Any, **kwargs: Any) -> Any:
            if not threading.current_thread().name.startswith("Cohort"):
                called.append(name)  # not the cohort's own figures, warmed at the start
            return method(*args, **kwargs)
        return spy

    for name, member in inspect.getmembers(Store, inspect.isfunction):
        if not name.startswith("_"):
            monkeypatch.setattr(Store, name, counted(name, member))
    render = jinja2.Template.render

    def rendered(template: jinja2.Template, *args: Any, **kwargs: Any) -> str:
        called.append(f"render {template.name}")
        return render(template, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", rendered)
    return called


def _ask(console: Console, method: str, path: str, headers: dict[str, str]
         ) -> tuple[int, dict[str, str], bytes]:
    return open_request(urllib.request.Request(console.url + path, headers=headers,
                                               method=method))


def _credentials(console: Console, who: str) -> dict[str, str]:
    if who == "api":
        return {"Authorization": f"Bearer {console.token}"}
    return {"Cookie": login_cookie(console)[0]}


def _read_by(console: Console, reads: list[str], method: str, path: str,
             headers: dict[str, str]) -> tuple[int, dict[str, str], bytes, set[str]]:
    reads.clear()
    status, answer, body = _ask(console, method, path, headers)
    return status, answer, body, set(reads)


@pytest.mark.parametrize(("route", "path", "who", "for_status"), BODY_READ_SKIPPED,
                         ids=[case[1] for case in BODY_READ_SKIPPED])
def test_a_head_answers_the_get_s_headers_without_reading_its_body(
    console: Console, reads: list[str], *, route: str, path: str, who: str,
    for_status: tuple[str, ...],
) -> None:
    """A HEAD was routed as the GET and ran every query of its body (the results page's count
    of up to 10,000, the cohort figures, each list) for uvicorn to drop the body."""
    headers = _credentials(console, who)
    status, _, _, login = _read_by(console, reads, "HEAD", LOGIN_ONLY[who], headers)
    assert status == 200
    status, head, body, read = _read_by(console, reads, "HEAD", path, headers)
    assert (status, body) == (200, b"")
    assert read - login == set(for_status)  # on main: every read of the body too
    status, got, body, read = _read_by(console, reads, "GET", path, headers)
    assert status == 200, body
    assert read - login - set(for_status), "the GET reads its body: the spy sees it"
    assert head["content-type"] == got["content-type"]
    assert head["cache-control"] == got["cache-control"] == "no-store"
    assert "content-length" not in head  # known only once the body is made


@pytest.mark.parametrize(("path", "who", "status"), [
    ("/fleet?site=%3Cb%3E", "page", 400),
    ("/results?limit=0", "page", 400),
    ("/dead-letters?before=x", "page", 400),
    ("/rollouts?before=x", "page", 400),
    ("/rollouts/nothing", "page", 404),
    ("/pathology/nobody/nothing", "page", 404),
    ("/api/v1/fleet?limit=x", "api", 400),
    ("/api/v1/results?from=yesterday", "api", 400),
    ("/api/v1/results?grade=fien", "api", 400),
    ("/api/v1/fleet/tokyo/kiosk-1/model-reports?before=0", "api", 400),
    ("/api/v1/rollouts/nothing", "api", 404),
    ("/api/v1/results", "none", 401),
    ("/cohort", "none", 303),
])
def test_a_head_is_refused_as_its_get_is(console: Console, path: str, who: str,
                                         status: int) -> None:
    """A HEAD checks the login, the role and the input as the GET does."""
    headers = {} if who == "none" else _credentials(console, who)
    head_status, _, body = _ask(console, "HEAD", path, headers)
    get_status, _, _ = _ask(console, "GET", path, headers)
    assert (head_status, body) == (get_status, b"")
    assert head_status == status


def test_a_viewer_s_head_of_an_operator_page_is_refused(console: Console) -> None:
    cookie, _ = login_cookie(console, "victor")
    assert _ask(console, "HEAD", "/dead-letters", {"Cookie": cookie})[0] == 403


def test_every_get_route_is_either_answered_without_its_body_or_read_as_its_get() -> None:
    """A page or API call added later is decided here too: HEAD without its body's reads
    (guard.body_store) or read as the GET."""
    routes = {route.path for router in ROUTERS for route in router.routes
              if isinstance(route, APIRoute) and "GET" in route.methods}
    decided = {case[0] for case in BODY_READ_SKIPPED} | READ_AS_GET | HEAD_WITHOUT_LOGIN
    assert routes == decided


def test_a_head_of_the_login_page_reads_no_store_and_sets_no_cookie(
    tmp_path: Path, reads: list[str],
) -> None:
    """Until a user exists the login page asks the store whether anyone can log in, and a
    HEAD asked it too, rendered the page and set a login-form CSRF cookie (replacing that of a
    form open in another tab) for uvicorn to drop the body; now it answers the GET's status
    and type alone."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    open_store(url).close()  # no user yet
    config = ConsoleConfig(port=free_port(), cohort_cache_s=0)
    pool = StorePool(url, size=4)
    thread = ConsoleThread(config, pool, tmp_path / "pathology-results")
    thread.start()
    assert thread.wait_started(), "console did not start"
    try:
        console = Console(f"http://127.0.0.1:{config.port}", "", "", url, tmp_path)
        for path, status in (("/login", 200), ("/login?failed=1", 401)):
            got, head, body, read = _read_by(console, reads, "HEAD", path, {})
            assert (got, body, read) == (status, b"", set())  # on main: users, login.html
            assert "set-cookie" not in head
            got, page, _, read = _read_by(console, reads, "GET", path, {})
            assert got == status
            assert {"users", "render login.html"} <= read, "the GET asks: the spy sees it"
            assert head["content-type"] == page["content-type"]
            assert "appliance_login_csrf" in page["set-cookie"]
        store = open_store(url)
        try:
            add_user(store, "alice", "operator", PASSWORD)
        finally:
            store.close()
        assert {"users", "render login.html"} <= _read_by(console, reads, "GET", "/login", {})[3]
        assert _read_by(console, reads, "HEAD", "/login", {})[3] == set()
    finally:
        thread.stop()
        pool.close()


def _bytes_read() -> int:
    """What this process (the console's server thread included) has read from files so far
    (Linux: /proc/self/io, rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_head_of_a_picture_takes_its_length_from_the_file_without_reading_it(
    tmp_path: Path,
) -> None:
    """A slide's picture is looked up (its presence is the status) and its file opened and
    checked as for the GET, but a HEAD read the whole PNG (up to 64 MiB) for uvicorn to drop;
    now it reads the PNG signature and answers the file's size as Content-Length."""
    with running_console(tmp_path) as console:
        heatmap = console.pathology_results / "job-1/heatmaps/0000-a.png"
        with heatmap.open("wb") as file:  # 16 MiB, as far as anyone reading it can tell
            file.write(PNG_SIGNATURE)
            file.truncate(16 * 1024 * 1024)
        for path, headers in (
                ("/pathology/job-1/slides/0/heatmap", {"Cookie": login_cookie(console)[0]}),
                ("/api/v1/pathology/jobs/job-1/slides/0/heatmap",
                 {"Authorization": f"Bearer {console.token}"})):
            before = _bytes_read()
            status, head, body = _ask(console, "HEAD", path, headers)
            head_read = _bytes_read() - before
            assert (status, body) == (200, b"")
            assert head_read < 1024 * 1024, head_read  # on main: the 16 MiB and more
            before = _bytes_read()
            status, got, body = _ask(console, "GET", path, headers)
            assert _bytes_read() - before >= 16 * 1024 * 1024  # the GET reads the file
            assert (status, len(body)) == (200, 16 * 1024 * 1024)
            assert head["content-length"] == got["content-length"] == str(len(body))
            assert head["content-type"] == got["content-type"] == "image/png"

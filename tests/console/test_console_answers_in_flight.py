"""A logged-in user's answers being sent at once are bounded (console/inflight.py): a client
that reads its downloads slowly holds a server place for each, and one user holding every
place refused every other visitor 503. Driven through the app's ASGI interface, with clients
that read as a slow reader does: after an answer's first bytes fill the connection's buffer,
the server waits (uvicorn: before its next write) until the client has read them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import PASSWORD, free_port, seed
from fastapi import FastAPI
from starlette.types import Message

from appliance.backoffice.accounts import Login
from appliance.backoffice.store import Store, open_store
from appliance.config import ConsoleConfig
from appliance.console import views
from appliance.console.app import create_app
from appliance.console.auth import add_user, create_token, disable_user, open_session
from appliance.console.db import StorePool
from appliance.console.guard import password_login
from appliance.console.inflight import RETRY_AFTER_S

ANSWERS_PER_USER = 8  # console.answers_in_flight_per_user by default
Logins = dict[str, dict[str, str]]


class SlowReader:
    """One request's client: its answer's status and headers, and a buffer that, once an
    answer's bytes are in it, takes more only after ``read_all``."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.started = asyncio.Event()
        self._full = False
        self._read = asyncio.Event()

    async def send(self, message: Message) -> None:
        """uvicorn's send: it waits for a full buffer to drain before it writes again."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            self.started.set()
            return
        if self._full:
            await self._read.wait()
        self.body += message.get("body", b"")
        self._full = self._full or bool(message.get("body"))

    def read_all(self) -> None:
        """The client reads the rest of its answer at once."""
        self._full = False
        self._read.set()


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[Callable[..., tuple[FastAPI, Logins]]]:
    """The console's app on a seeded store, made with the given settings of its config
    section, and the headers that log in alice (an API token) and bob (a page session)."""
    url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    store = open_store(url)
    try:
        seed(store)
        add_user(store, "alice", "operator", PASSWORD)
        add_user(store, "bob", "viewer", PASSWORD)
        token = create_token(store, "alice").token
    finally:
        store.close()
    port = free_port()
    pool = StorePool(url)
    bob = password_login(pool, "bob", PASSWORD)
    assert bob is not None
    with pool.store() as opened:
        cookie = open_session(opened, bob, 1.0).cookie
    logins = {"alice": {"authorization": f"Bearer {token}"},
              "bob": {"cookie": f"appliance_session_{port}={cookie}"}}

    def console(**settings: Any) -> tuple[FastAPI, Logins]:
        config = ConsoleConfig(port=port, cohort_cache_s=3600, **settings)
        return create_app(pool, config, tmp_path), logins

    try:
        yield console
    finally:
        pool.close()


def _asked(app: FastAPI, path: str, headers: dict[str, str], client: SlowReader
           ) -> asyncio.Task[Any]:
    """The request, being answered to ``client``, as a task."""
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8080),
             "headers": [(b"host", b"127.0.0.1"),
                         *((k.encode(), v.encode()) for k, v in headers.items())]}
    asked = False

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("never")

    return asyncio.ensure_future(app(scope, receive, client.send))


async def _answered(app: FastAPI, path: str, headers: dict[str, str]) -> SlowReader:
    """A request whose client reads its whole answer at once."""
    client = SlowReader()
    client.read_all()
    await asyncio.wait_for(_asked(app, path, headers, client), 30)
    return client


@pytest.mark.parametrize(("user", "path"), [("alice", "/api/v1/results?limit=200"),
                                            ("bob", "/results.csv")])
def test_a_user_s_slowly_read_answers_hold_at_most_their_bound_of_places(
    consoles: Callable[..., tuple[FastAPI, Logins]], user: str, path: str,
) -> None:
    """A user whose clients read ANSWERS_PER_USER answers slowly is refused one more (429,
    Retry-After) until one is read; another user is answered meanwhile. Both a page handed
    over whole (the results API's) and a streamed download count until their end is sent.
    On main a user had no bound: one user's slow downloads held every place."""
    console, logins = consoles()
    other = logins["bob" if user == "alice" else "alice"]

    async def scenario() -> None:
        slow = [SlowReader() for _ in range(ANSWERS_PER_USER)]
        held = [_asked(console, path, logins[user], client) for client in slow]
        await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in slow)), 30)
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in held)  # each waits for its client to read
        refused = await _answered(console, "/api/v1/fleet" if user == "alice" else "/fleet",
                                  logins[user])
        assert refused.status == 429  # on main: 200, a place more held
        assert refused.headers["retry-after"] == str(RETRY_AFTER_S)
        assert (await _answered(console, "/api/v1/fleet" if user == "bob" else "/fleet",
                                other)).status == 200
        slow[0].read_all()
        await asyncio.wait_for(held[0], 30)
        assert (await _answered(console, path, logins[user])).status == 200
        for client in slow[1:]:
            client.read_all()
        await asyncio.wait_for(asyncio.gather(*held), 30)
        assert [client.status for client in slow] == [200] * ANSWERS_PER_USER

    asyncio.run(scenario())


def test_a_bound_of_2_in_the_config_refuses_the_third_answer(
    consoles: Callable[..., tuple[FastAPI, Logins]], caplog: pytest.LogCaptureFixture,
) -> None:
    """console.answers_in_flight_per_user sets the bound (on main a fixed 8, the key unknown):
    with 2, a user's third answer is refused while two are being read, and says the bound.
    The refusals are said in the log as the console's other floods are: the first at once,
    the rest counted (on main: not at all)."""
    console, logins = consoles(answers_in_flight_per_user=2)

    async def scenario() -> None:
        slow = [SlowReader(), SlowReader()]
        held = [_asked(console, "/results.csv", logins["bob"], client) for client in slow]
        await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in slow)), 30)
        third = await _answered(console, "/fleet", logins["bob"])
        assert third.status == 429
        assert "has 2 answers being sent at once" in third.body.decode()
        for _ in range(5):
            assert (await _answered(console, "/fleet", logins["bob"])).status == 429
        for client in slow:
            client.read_all()
        await asyncio.wait_for(asyncio.gather(*held), 30)
        assert (await _answered(console, "/fleet", logins["bob"])).status == 200

    asyncio.run(scenario())
    # one line, then a count: a client repeating its requests wrote nothing on main
    said = [r.getMessage() for r in caplog.records if "answers being sent" in r.getMessage()]
    assert said == ["console: requests refused, their user having "
                    "console.answers_in_flight_per_user answers being sent: 1 since the last "
                    "saying, the latest for bob; said at most once a minute"]
    assert console.state.busy_refusals.unsaid == 5  # said with their count a minute on


def test_a_user_s_refused_page_has_its_header_without_reading_the_session_again(
    consoles: Callable[..., tuple[FastAPI, Logins]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user at its bound that keeps asking costs the store one session read a request: its
    refusal page shows the header (name, account, logout) of the login just checked; on main
    the refusal looked the session up a second time for it."""
    console, logins = consoles(answers_in_flight_per_user=1)
    looked_up: list[str] = []
    session_login = Store.session_login

    def counted(store: Store, session_sha256: str) -> Login | None:
        looked_up.append(session_sha256)
        return session_login(store, session_sha256)

    monkeypatch.setattr(Store, "session_login", counted)

    async def scenario() -> None:
        slow = SlowReader()
        held = _asked(console, "/results.csv", logins["bob"], slow)
        await asyncio.wait_for(slow.started.wait(), 30)
        looked_up.clear()
        refused = await _answered(console, "/fleet", logins["bob"])
        assert refused.status == 429
        assert 'href="/account"' in refused.body.decode()  # bob's header
        assert len(looked_up) == 1  # on main: 2
        slow.read_all()
        await asyncio.wait_for(held, 30)

    asyncio.run(scenario())


def test_a_csv_export_being_read_stops_when_its_user_is_disabled(
    consoles: Callable[..., tuple[FastAPI, Logins]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """An export of many pages outlives the login check of its request: each page after the
    first asks the store again whether the session holds. bob is disabled while his client
    reads slowly; no page is read after that, and the download is cut short (an error, not
    an end that looks whole). On main every row went on to the disabled user."""
    monkeypatch.setattr(views, "CSV_PAGE_ROWS", 10)  # the 60 seeded results: 6 pages
    console, logins = consoles()

    async def scenario() -> SlowReader:
        slow = SlowReader()
        held = _asked(console, "/results.csv", logins["bob"], slow)
        await asyncio.wait_for(slow.started.wait(), 30)
        while len(slow.body) == 0:  # the header and the first page are in the buffer
            await asyncio.sleep(0.01)
        store = open_store(f"sqlite:///{tmp_path / 'backoffice.sqlite3'}")
        try:
            disable_user(store, "bob")
        finally:
            store.close()
        slow.read_all()
        with pytest.raises(views.ExportEndedError, match="session ended"):
            await asyncio.wait_for(held, 30)
        return slow

    slow = asyncio.run(scenario())
    rows = slow.body.decode().splitlines()[1:]
    assert slow.status == 200
    assert 10 <= len(rows) < 60  # the pages read before the disable (a client buffer ahead)
    assert any("the CSV export of bob stopped after" in r.getMessage() for r in caplog.records)


def test_a_csv_export_of_a_session_that_holds_sends_every_page(
    consoles: Callable[..., tuple[FastAPI, Logins]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-page check lets a valid session's export through whole: 60 rows in 6 pages."""
    monkeypatch.setattr(views, "CSV_PAGE_ROWS", 10)
    console, logins = consoles()
    answer = asyncio.run(_answered(console, "/results.csv", logins["bob"]))
    assert answer.status == 200
    assert len(answer.body.decode().splitlines()) == 61

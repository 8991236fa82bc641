"""Clients that send their request slowly, or never, do not keep the console from others: each
connection holds one of the server's places until its request has arrived whole."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from console_helpers import Console, get_with, login_cookie, make_result, running_console

from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc, result_row
from appliance.backoffice.store import Batch, open_store
from appliance.console import server
from appliance.console.app import SECURITY_HEADERS
from tests.slow_clients import answer_to, silent_connections

PLACES = 64  # the server's limit_concurrency (appliance/console/server.py)


def test_connections_that_never_finish_a_request_are_closed_and_others_get_answers(
    console: Console,
) -> None:
    address = urlsplit(console.url)
    held = [socket.create_connection((address.hostname, address.port), timeout=60)
            for _ in range(PLACES)]
    try:
        for index, sock in enumerate(held):  # a head, or a form, that never ends
            with contextlib.suppress(ConnectionResetError):  # the first closed for the last
                sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" if index % 2 else
                             b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n"
                             b"\r\nuser=")
        for sock in held:  # the console answers or closes each (on main: it waited forever)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):
                    pass
    finally:
        for sock in held:
            sock.close()
    status, _, body = console.get("/login")
    assert status == 200
    assert b'name="password"' in body


def test_silent_connections_holding_every_place_make_room_for_a_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn answers a request 503 while its places are taken, silent connections too: a
    client reopening its silent connections as the deadline closed them kept every visitor
    out for as long as it went on. A new connection now takes the place of the one that has
    waited longest for its request."""
    monkeypatch.setattr(server, "REQUEST_DEADLINE_S", 60.0)  # no deadline frees a place here
    with running_console(tmp_path) as console:
        address = (urlsplit(console.url).hostname, urlsplit(console.url).port)
        with silent_connections(address, PLACES) as held:
            for sock in held:  # a head that never ends
                sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            status, _, body = console.get("/login")
            assert status == 200, body[:200]  # on main: 503, every place taken
            assert answer_to(held[0]) == b""  # the oldest closed for it, unanswered
    said = [r.getMessage() for r in caplog.records if "closed for new ones" in r.getMessage()]
    assert len(said) == 1, said  # one line, later ones counted
    assert f"(all {PLACES} places taken): 1 since the last saying" in said[0]


LONG_VERSION = "v" * 4000  # so the CSV (13 MB) outgrows every socket buffer between the two


def _add_long_results(store_url: str, count: int) -> None:
    """``count`` more results, each with a 4000-character software version."""
    at = RESULT_COLUMNS.index("software_version")
    now = iso_utc(datetime.now(UTC))
    rows = []
    for index in range(1000, 1000 + count):
        result = make_result(index, "lab", "kiosk-csv", None)
        row = list(result_row(result, now, result.to_json().decode()))
        row[at] = LONG_VERSION
        rows.append(tuple(row))
    store = open_store(store_url)
    try:
        store.write_batch(Batch(results=rows, statuses=[]), 1000)
    finally:
        store.close()


def _stalled_download(console: Console, cookie: str) -> tuple[socket.socket, bytes]:
    """A CSV download whose client reads its first bytes, then nothing more; the socket and
    what it read."""
    address = urlsplit(console.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect((address.hostname, address.port))
    sock.sendall(f"GET /results.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
                 .encode())
    first = sock.recv(64)
    assert first.startswith(b"HTTP/1.1 200")
    return sock, first


@contextlib.contextmanager
def _downloads_stalled(console: Console, count: int) -> Iterator[list[socket.socket]]:
    """``count`` CSV downloads whose clients read nothing past their first bytes: connections
    the console is answering (none waits for a request), closed when the block ends."""
    _add_long_results(console.store_url, 3000)
    cookie, _ = login_cookie(console)
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(_stalled_download(console, cookie)[0]) for _ in range(count)]


def _rest_of(sock: socket.socket, received: bytes) -> bytes:
    """The whole answer: what was read, then the rest up to its chunked body's last chunk."""
    answer = bytearray(received)
    while not answer.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the console closed the download before its end"
        answer += chunk
    return bytes(answer)


def test_a_stalled_csv_download_holds_no_store_connection(tmp_path: Path) -> None:
    with running_console(tmp_path, pool_size=1) as console:  # one connection: one download
        _add_long_results(console.store_url, 3000)
        cookie, _ = login_cookie(console)
        sock, first = _stalled_download(console, cookie)
        try:
            status, _, body = get_with(console, "/fleet", cookie)  # on main: 503, store busy
            assert status == 200, body[:300]
            head, _, chunked = _rest_of(sock, first).partition(b"\r\n\r\n")
        finally:
            sock.close()
    assert b"transfer-encoding: chunked" in head.lower()
    rows = list(csv.DictReader(io.StringIO(_unchunked(chunked).decode())))
    assert len(rows) == 3060  # every result once, across the pages read apart
    assert len({row["measurement_id"] for row in rows}) == 3060
    assert [row["captured_at"] for row in rows] == sorted(
        (row["captured_at"] for row in rows), reverse=True)


def _unchunked(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body's content."""
    out, rest = bytearray(), body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2:]


def test_the_servers_own_503_for_a_request_beyond_its_places_keeps_the_security_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "PLACES", 3)
    with running_console(tmp_path) as console, _downloads_stalled(console, 2):
        address = urlsplit(console.url)  # every place but this one's being answered
        with socket.create_connection((address.hostname, address.port), timeout=30) as late:
            late.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = bytearray()
            while chunk := late.recv(4096):
                answer += chunk
    head = bytes(answer).partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0] == "HTTP/1.1 503 Service Unavailable"  # uvicorn's, not the console's
    fields = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in fields, f"{name} sent twice"
        fields[name.lower()] = value.strip()
    for name, value in SECURITY_HEADERS.items():
        assert fields.get(name.lower()) == value, (name, fields)  # on main: none of them


def test_a_client_that_reads_nothing_of_its_answer_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(server, "STALLED_SEND_S", 0.5)
    with running_console(tmp_path) as console:
        _add_long_results(console.store_url, 3000)
        cookie, _ = login_cookie(console)
        sock, first = _stalled_download(console, cookie)
        try:
            pause, polls = threading.Event(), 0
            while "having read nothing of its answer" not in caplog.text:
                assert polls < 600, "never cut off"  # on main: it waited for good
                pause.wait(0.05)
                polls += 1
            answer = bytearray(first)
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    answer += chunk
        finally:
            sock.close()
        assert console.get("/login")[0] == 200
    assert 64 < len(answer) < 13_000_000  # what the buffers held, then the end
    assert not answer.endswith(b"\r\n0\r\n\r\n")  # cut off, not complete


def test_connections_past_the_cap_are_refused_at_once_with_the_security_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Every connection was accepted and held its file descriptor until its deadline, so a
    flood of silent ones past the process's limit (1024 under systemd) made asyncio log a
    traceback for each accept it could not make while the console answered nobody. With the
    cap reached and every connection being answered (none to close for room), one more is
    refused."""
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 4)
    with running_console(tmp_path) as console:
        address = (urlsplit(console.url).hostname, urlsplit(console.url).port)
        with _downloads_stalled(console, 4):
            fds_before = len(os.listdir("/proc/self/fd"))
            with silent_connections(address, 100) as excess:
                for sock in excess[:3]:
                    answer = answer_to(sock)  # at once: the downloads wait for their client
                    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
                    assert head[0] == "HTTP/1.1 503 Service Unavailable", answer[:200]
                    assert answer.endswith(b"too many connections at once; try again later\n")
                    fields = {name.lower(): value for name, value in
                              (line.split(": ", 1) for line in head[1:])}
                    for name, value in SECURITY_HEADERS.items():
                        assert fields.get(name.lower()) == value, (name, fields)
                for sock in excess[3:]:
                    assert answer_to(sock).startswith(b"HTTP/1.1 503 ")
                # the clients' 100 sockets; the console holds none of theirs
                assert len(os.listdir("/proc/self/fd")) <= fds_before + 100
        assert console.get("/login")[0] == 200
    refusals = [r.getMessage() for r in caplog.records if " refused " in r.getMessage()]
    assert len(refusals) == 1, refusals  # the next ones within a minute are not said
    assert "4 open at once, the most it takes" in refusals[0]


def test_connections_cut_off_at_the_request_deadline_are_said_once_not_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each connection closed at its request deadline was a warning of its own: a flood of
    silent connections wrote some 13 lines a second to the journal. The first is said at
    once, the next ones within the minute later, with their count."""
    monkeypatch.setattr(server, "REQUEST_DEADLINE_S", 1.0)
    with running_console(tmp_path) as console:
        address = (urlsplit(console.url).hostname, urlsplit(console.url).port)
        with silent_connections(address, 6) as held:
            for sock in held:
                assert answer_to(sock) == b""  # cut off at the request deadline
        assert console.get("/login")[0] == 200
    said = [r.getMessage() for r in caplog.records if "no whole request" in r.getMessage()]
    assert said == ["console: connections closed with no whole request within 1 s: 1 since "
                    "the last saying, the latest from 127.0.0.1; said at most once a minute"]


class _Kept(logging.Handler):
    """The messages of the records a logger's handlers get."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_requests_uvicorn_warns_of_one_each_are_said_once_then_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn warned of each request it could not parse, and twice of each asking for a
    protocol upgrade (a WebSocket library hint besides), whoever sent it: a client sending
    such requests in a loop wrote as many lines as it liked."""
    kept, uvicorn_log = _Kept(), logging.getLogger("uvicorn.error")
    with running_console(tmp_path) as console:
        uvicorn_log.addHandler(kept)  # once uvicorn has set up its logging, which clears them
        try:
            address = (urlsplit(console.url).hostname, urlsplit(console.url).port)
            for _ in range(5):
                with socket.create_connection(address, timeout=10) as sock:
                    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                    assert answer_to(sock).startswith(b"HTTP/1.1 400 ")
            for _ in range(5):
                with socket.create_connection(address, timeout=10) as sock:
                    sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                                 b"Upgrade\r\nUpgrade: h2c\r\n\r\n")
                    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        finally:
            uvicorn_log.removeHandler(kept)
    assert kept.messages == []  # on main: 5 + 10 lines
    said = [r.getMessage() for r in caplog.records if r.name == "appliance.console.server"]
    assert said == [
        "console: requests it could not parse, answered 400: 1 since the last saying; said at "
        "most once a minute",
        "console: requests asking for a protocol upgrade it does not make (a WebSocket), "
        "answered as plain requests: 1 since the last saying; said at most once a minute",
    ]


def test_a_client_that_leaves_the_end_of_its_answer_unread_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer whose last bytes sat in the connection's buffer below its high-water mark
    when it ended (uvicorn waits for no drain then) was never cut off: the console closed the
    kept-alive connection, the close waited for a client that read nothing, and it held its
    place for good. A buffer without a high-water mark leaves the whole CSV so."""
    monkeypatch.setattr(server, "STALLED_SEND_S", 0.5)
    made = server.DeadlineProtocol.connection_made

    def no_high_water_mark(protocol: server.DeadlineProtocol, transport: Any) -> None:
        made(protocol, transport)
        transport.set_write_buffer_limits(high=1 << 30)  # never paused: the answer ends at once

    monkeypatch.setattr(server.DeadlineProtocol, "connection_made", no_high_water_mark)
    with running_console(tmp_path) as console:
        _add_long_results(console.store_url, 3000)
        cookie, _ = login_cookie(console)
        sock, first = _stalled_download(console, cookie)
        try:
            pause, polls = threading.Event(), 0
            while "having read nothing of its answer" not in caplog.text:
                assert polls < 300, "never cut off"  # on main: it waited for good
                pause.wait(0.05)
                polls += 1
            answer = bytearray(first)
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    answer += chunk
        finally:
            sock.close()
    assert not answer.endswith(b"\r\n0\r\n\r\n")  # cut off, not complete

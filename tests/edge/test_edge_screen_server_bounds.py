"""The kiosk screen's server against slow or hostile local clients (appliance/edge/
screen_server.py): a bounded number of connections, requests with a deadline, streams with a
bound of their own below it, and a stream whose client reads nothing cut off."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from appliance.capture.sources import Frame
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import Bounds, ScreenServer
from appliance.edge.screen_state import ScreenState
from appliance.edge.testing import wait_until
from tests.dripping import cut_off_while_dripping
from tests.slow_clients import ANSWER_WAIT_S, check_the_cap, status_of

BOUNDS = Bounds(max_connections=6, max_streams=2, request_deadline_s=3.0,
                stalled_write_s=1.0)


@contextmanager
def screen(tmp_path: Path, bounds: Bounds = BOUNDS, fps: float = 15.0) -> Iterator[ScreenServer]:
    server = ScreenServer(0, ScreenState(burst_frames=5, idle_s=60, language="en"),
                          PreviewFeed(320), tmp_path, fps, bounds=bounds)
    thread = threading.Thread(target=server.serve_forever, args=(0.25,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def url(server: ScreenServer, path: str = "/state") -> str:
    return f"http://127.0.0.1:{server.server_port}{path}"


def open_stream(server: ScreenServer, path: str = "/events",
                receive_buffer: int | None = None) -> socket.socket:
    """A stream's connection, its head read (it holds its place from then on)."""
    sock = socket.socket()
    if receive_buffer is not None:  # set before connecting: it sizes the window
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(ANSWER_WAIT_S)
    sock.connect(("127.0.0.1", server.server_port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.server_port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"closed before the head of {path}: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    return sock


def closed_within(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the server closes the stream within ``timeout_s`` (what it sent is dropped)."""
    deadline_s = time.monotonic() + timeout_s
    try:
        while (left_s := deadline_s - time.monotonic()) > 0:
            sock.settimeout(left_s)
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def receives(sock: socket.socket, text: bytes) -> bool:
    """Whether ``text`` comes on the stream within ANSWER_WAIT_S."""
    sock.settimeout(ANSWER_WAIT_S)
    received = b""
    while text not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        received += chunk
    return True


def test_connections_past_the_cap_are_refused_at_once_and_threads_stay_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    """The screen's server gave every connection a thread, as many as any local process
    opened, each held for 30 s of silence and for good by a byte now and then."""
    with screen(tmp_path) as server:
        check_the_cap(("127.0.0.1", server.server_port), url(server), 6, caplog)
    assert "Traceback" not in capsys.readouterr().err


def test_a_request_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """Each byte well within the idle timeout (30 s): only the request deadline ends it."""
    with screen(tmp_path) as server:
        assert cut_off_while_dripping(  # within the drip (some 40 s), not after it
            ("127.0.0.1", server.server_port),
            b"GET /state HTTP/1.1\r\nX-Padding: " + b"a" * 200, 0.2)
        assert status_of(url(server)) == 200


def test_a_new_stream_past_the_streams_cap_ends_the_oldest_and_the_page_is_still_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A stuck tab's or a local process's streams could hold every place (each a thread, for
    good while it reads): streams have a cap of their own, and the newest one (the screen's
    browser coming back) is served, the oldest ended."""
    threads_before = threading.active_count()
    with screen(tmp_path) as server, ExitStack() as stack:
        streams = [stack.enter_context(open_stream(server, path))
                   for path in ("/events", "/preview.mjpg", "/events", "/events", "/events")]
        for ended in streams[:3]:
            assert closed_within(ended, ANSWER_WAIT_S)
        server.state.set_language("ja")
        for open_one in streams[3:]:
            assert receives(open_one, b'"language": "ja"')  # still told each change
        assert status_of(url(server)) == 200
        assert status_of(url(server, "/")) == 200
        assert wait_until(lambda: threading.active_count() <= threads_before + 1 + 2, 5)
    said = [r.getMessage() for r in caplog.records if "kiosk screen: streams" in r.getMessage()]
    assert said == [  # the first at once, the next two once a minute has passed
        "kiosk screen: streams ended since the last saying: 1 for newer ones (at most 2 at "
        "once), 0 whose client read nothing; said at most once a minute"]


def said_cut_off(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the log said that a stream was cut off for reading nothing."""
    return any(", 1 whose client read nothing" in r.getMessage() for r in caplog.records)


def test_an_event_stream_whose_client_reads_nothing_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Its writes waited in a send buffer of megabytes, then 30 s each, and an event stream's
    few bytes a change took days to fill it: a browser tab stuck for good held its place for
    good."""
    with screen(tmp_path) as server:
        stuck = open_stream(server, "/events", receive_buffer=4096)

        def changed_until_cut() -> bool:
            for language in ("ja", "en"):  # each change an event on the stream
                server.state.set_language(language)
            return said_cut_off(caplog)

        assert wait_until(changed_until_cut, 20, poll_s=0.002)
        assert closed_within(stuck, ANSWER_WAIT_S)  # after what it had in its buffer
        assert status_of(url(server)) == 200


def test_a_preview_whose_client_reads_nothing_is_cut_off_and_a_new_one_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with screen(tmp_path, fps=50.0) as server:
        stuck = open_stream(server, "/preview.mjpg", receive_buffer=4096)
        noise = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        frames = threading.Event()

        def camera() -> None:
            while not frames.wait(0.01):
                server.preview.offer(Frame(rgb=noise, index=0))

        feeding = threading.Thread(target=camera, daemon=True)
        feeding.start()
        try:
            assert wait_until(lambda: said_cut_off(caplog), 15)
            assert closed_within(stuck, ANSWER_WAIT_S)
            watching = open_stream(server, "/preview.mjpg")
            assert receives(watching, b"Content-Type: image/jpeg")
            watching.close()
        finally:
            frames.set()
            feeding.join(5)
            stuck.close()


def test_the_screen_follows_the_kiosk_again_after_its_event_stream_and_preview_were_refused(
    tmp_path: Path, browser_page: Any,
) -> None:
    """While every place is taken the server answers 503, and a browser closes an event
    stream refused with an HTTP error for good (it opens a dropped one again by itself): the
    screen stopped following the kiosk, its preview broken, until someone reloaded it."""
    page = browser_page
    refused: list[str] = []

    def refuse(route: Any) -> None:
        refused.append(route.request.url)
        route.fulfill(status=503, body="too many connections at once; try again later\n")

    with screen(tmp_path, fps=20.0) as server, feeding_frames(server):
        page.goto(url(server, "/"))
        expect(page.locator("h1")).to_have_text("Skin texture check")
        # The page's own two streams hold their places first: one still on its way would end
        # a stream of the test's (the oldest) instead and never meet the refusal
        assert holding(page, server, 2), f"the page holds {len(server.streams)} streams, not 2"
        page.route("**/events", refuse)
        page.route("**/preview.mjpg*", refuse)
        with ExitStack() as stack:  # two newer streams end the page's two
            for path in ("/events", "/preview.mjpg"):
                stack.enter_context(open_stream(server, path))
            assert asked(page, refused, "/events")  # it comes back: refused
        page.unroute("**/events")
        assert asked(page, refused, "/preview.mjpg")  # the events back, the preview refused
        page.unroute("**/preview.mjpg*")
        server.state.set_language("ja")
        expect(page.locator("h1")).to_have_text("肌のキメチェック")
        expect(page.locator("#preview")).to_have_js_property("naturalWidth", 320)


def holding(page: Any, server: ScreenServer, count: int) -> bool:
    """Whether ``count`` streams hold a place on ``server`` within ANSWER_WAIT_S."""
    for _ in range(int(ANSWER_WAIT_S / 0.05)):
        if len(server.streams) == count:
            return True
        page.wait_for_timeout(50)
    return False


def asked(page: Any, refused: list[str], path: str) -> bool:
    """Whether the page asks for ``path`` within ANSWER_WAIT_S (Playwright hands the page's
    requests to this thread only while it waits on the page)."""
    for _ in range(int(ANSWER_WAIT_S / 0.05)):
        if any(path in address for address in refused):
            return True
        page.wait_for_timeout(50)
    return False


@contextmanager
def feeding_frames(server: ScreenServer) -> Iterator[None]:
    """A camera offering a frame to the preview every 20 ms."""
    rgb = np.full((240, 320, 3), 128, np.uint8)
    stop = threading.Event()

    def camera() -> None:
        while not stop.wait(0.02):
            server.preview.offer(Frame(rgb=rgb, index=0))

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_a_fifo_in_the_place_of_the_overlay_is_answered_as_none_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever can write the state folder put a FIFO where the screen's overlay is: reading it
    waited for a writer for ever, and every request for the overlay (one a result) held a
    thread and a connection's place for good, until none was left for the page."""
    os.mkfifo(tmp_path / "last_overlay.png")
    try:
        with screen(tmp_path) as server:
            assert [status_of(url(server, "/overlay.png")) for _ in range(3)] == [404] * 3
            assert status_of(url(server)) == 200
    finally:
        with contextlib.suppress(OSError):  # a reader waiting for a writer gets EOF
            os.close(os.open(tmp_path / "last_overlay.png", os.O_WRONLY | os.O_NONBLOCK))
    said = [r.getMessage() for r in caplog.records if "overlays not served" in r.getMessage()]
    assert len(said) == 1  # at once; the other two wait a minute
    assert f"{tmp_path / 'last_overlay.png'}: not a regular file" in said[0]

"""A request whose body's length is unknown, or that carries a body the server does not read,
never has its body's bytes read as a request of its own on the same connection: the product's
stdlib HTTP servers (the kiosk screen's, /metrics, the model repository's) answer it once and
close the connection."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_server import ScreenServer
from appliance.edge.screen_state import ScreenState
from appliance.metricshttp import start_metrics_server, stop_metrics_server
from appliance.updates.serve import RepositoryServer
from tests.slow_clients import answer_to


@contextmanager
def screen(folder: Path) -> Iterator[ScreenServer]:
    server = ScreenServer(0, ScreenState(burst_frames=5, idle_s=60, language="en"),
                          PreviewFeed(320), folder, 15.0)
    thread = threading.Thread(target=server.serve_forever, args=(0.25,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def answers(port: int, head: bytes, body: bytes) -> list[bytes]:
    """The answers the server sends on one connection, ``head`` and ``body`` sent on it, until
    it closes the connection (ANSWER_WAIT_S at most): each one's status line, and whatever
    follows the last one framed by its Content-Length whole (an HTTP/0.9-style answer to
    garbage has no status line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n" + body)
        rest = answer_to(sock)
    said = []
    while rest.startswith(b"HTTP/1.") and b"\r\n\r\n" in rest:
        status_and_headers, rest = rest.split(b"\r\n\r\n", 1)
        said.append(status_and_headers.split(b"\r\n", 1)[0])
        length = re.search(rb"\r\nContent-Length: ([0-9]+)", status_and_headers)
        rest = rest[int(length[1]):] if length else b""
    return [*said, rest] if rest else said


def choosing_japanese(port: int) -> bytes:
    """A whole request of its own, sent as the body of another: it would change the screen."""
    choice = b'{"language": "ja"}'
    return (b"POST /language HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (port, len(choice), choice))


@pytest.mark.parametrize("length_headers", [
    b"Content-Length: \xb2\r\n",  # latin-1 superscript two: str.isdigit() took it, int() not
    b"Content-Length: \xb9\xb2\r\n",
    b"Content-Length: 18\r\nContent-Length: 5000\r\n",
    b"Content-Length: 18\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 5000\r\n",
    b"",
])
def test_a_post_of_unknown_length_is_answered_once_and_its_body_never_read_as_a_request(
    tmp_path: Path, length_headers: bytes,
) -> None:
    """Content-Length ``²`` was answered 400 with the connection kept alive and the body
    unread: the next request on the connection was read from the body's bytes."""
    with screen(tmp_path) as server:
        port = server.server_port
        head = (b"POST /language HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                b"application/json\r\n%s" % (port, length_headers))
        assert answers(port, head, choosing_japanese(port)) == [b"HTTP/1.1 400 Bad Request"]
        assert server.state.snapshot()["language"] == "en"  # nothing changed


def test_a_get_with_a_body_is_answered_once_and_its_body_never_read_as_a_request(
    tmp_path: Path,
) -> None:
    with screen(tmp_path) as server:
        port = server.server_port
        inner = choosing_japanese(port)
        head = b"GET /state HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n" % (
            port, len(inner))
        assert answers(port, head, inner) == [b"HTTP/1.1 200 OK"]
        assert server.state.snapshot()["language"] == "en"


def test_the_screen_still_keeps_a_connection_alive_for_a_request_of_known_length(
    tmp_path: Path,
) -> None:
    """The check of the tests above: a body of the length said is read, and the connection
    then serves the next request (this one sent after it, not within it)."""
    with screen(tmp_path) as server:
        port = server.server_port
        choice = b'{"language": "ja"}'
        head = (b"POST /language HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n" % (port, len(choice)))
        then = b"GET /state HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port
        assert answers(port, head, choice + then) == [b"HTTP/1.1 200 OK"] * 2
        assert server.state.snapshot()["language"] == "ja"


@pytest.mark.parametrize("method", [b"GET", b"POST"])
def test_metrics_and_the_model_repository_answer_one_request_a_connection(
    tmp_path: Path, method: bytes,
) -> None:
    """Checked for the same fault, not fixed: both answer HTTP/1.0 and close the connection
    after each answer, even one asked to keep it alive."""
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "1.root.json").write_text("{}")
    repository = RepositoryServer(tmp_path).start()
    httpd, thread = start_metrics_server(CollectorRegistry(), "127.0.0.1", 0)
    try:
        for port, path in ((httpd.server_address[1], b"/metrics"),
                           (repository.httpd.server_address[1], b"/metadata/1.root.json")):
            inner = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)
            for length in (b"\xb2", b"%d" % len(inner)):
                head = (b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: keep-alive\r\n"
                        b"Content-Length: %s\r\n" % (method, path, port, length))
                assert len(answers(port, head, inner)) == 1, (path, length)
    finally:
        stop_metrics_server(httpd, thread)
        repository.close()

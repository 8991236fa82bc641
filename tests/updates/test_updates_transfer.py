"""The kiosk's download deadline bounds the whole exchange with a hostile repository server:
its answer's headers as well as its body (appliance/updates/transfer.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from tuf.api import exceptions as tuf_errors

from appliance.updates.transfer import DeadlineFetcher
from tests.silent_server import accepting

DRIP_PAUSE_S = 0.05
DRIP_BYTES = 200  # some 10 s of headers: a fetch that waits for them all has no deadline


@contextmanager
def header_dripper(hung_up: threading.Event) -> Iterator[str]:
    """A server that answers each request with its status line and then headers one byte
    every DRIP_PAUSE_S (each well within any socket timeout), ending them after DRIP_BYTES
    with a small body; ``hung_up`` is set when the client hangs up mid-drip."""

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
            try:
                for _ in range(DRIP_BYTES // 20):
                    for byte in b"X-Drip: aaaaaaaaaa\r\n":
                        conn.sendall(bytes([byte]))
                        time.sleep(DRIP_PAUSE_S)
                conn.sendall(b"\r\n{}")
            except OSError:  # the kiosk gave up and hung up, as it should
                hung_up.set()

    with accepting("HeaderDripper", lambda conn: threading.Thread(
            target=drip, args=(conn,), daemon=True).start()) as port:
        yield f"http://127.0.0.1:{port}/metadata/timestamp.json"


def test_headers_sent_a_byte_at_a_time_are_refused_at_the_deadline() -> None:
    """Each header byte came within the socket timeout, and the deadline began only with the
    body, so a server dripping its headers held the kiosk's updater as long as it liked."""
    hung_up = threading.Event()
    fetcher = DeadlineFetcher(socket_timeout=1, deadline_s=1.0, app_user_agent="test")
    with header_dripper(hung_up) as url, pytest.raises(tuf_errors.SlowRetrievalError) as refused:
        b"".join(fetcher.fetch(url))
    assert f"{url}: answer's headers still arriving after 1 s " in str(refused.value)
    assert "(updates.download_deadline_s)" in str(refused.value)
    assert hung_up.wait(5), "the kiosk kept the dripping connection open"


def test_a_file_within_the_deadline_is_fetched_whole() -> None:
    """The deadline's timer leaves a prompt answer alone, over a kept-alive connection too."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    def serve(conn: socket.socket) -> None:
        def loop() -> None:
            with conn:
                while conn.recv(4096):
                    conn.sendall(answer)
        threading.Thread(target=loop, daemon=True).start()

    fetcher = DeadlineFetcher(socket_timeout=5, deadline_s=5.0, app_user_agent="test")
    with accepting("Prompt", serve) as port:
        url = f"http://127.0.0.1:{port}/metadata/timestamp.json"
        assert b"".join(fetcher.fetch(url)) == b"hello"
        assert b"".join(fetcher.fetch(url)) == b"hello"


@contextmanager
def answering(answers: dict[str, bytes], asked: list[str]) -> Iterator[int]:
    """A server answering each request for a path in ``answers`` with its bytes (a 404
    otherwise), recording each path asked in ``asked``; yields its port."""

    def serve(conn: socket.socket) -> None:
        with conn:
            path = conn.recv(4096).split(b" ")[1].decode()
            asked.append(path)
            conn.sendall(answers.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                              b"Connection: close\r\n\r\n"))

    with accepting("Answering", serve) as port:
        yield port


def _redirect(location: str) -> bytes:
    return (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n").encode()


def test_a_redirect_to_another_host_is_refused_and_that_host_never_asked() -> None:
    """urllib3 follows any redirect: whoever answers for the repository (its server, anyone on
    the path of plain HTTP) had the kiosk send GETs to a host of its choosing (its loopback
    services, its local network), and the kiosk's retained refusal told what came back."""
    elsewhere: list[str] = []
    asked: list[str] = []
    fetcher = DeadlineFetcher(socket_timeout=5, deadline_s=5.0, app_user_agent="test")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    with answering({"/admin/reboot": ok}, elsewhere) as other, \
            answering({"/metadata/timestamp.json": _redirect(
                f"http://127.0.0.1:{other}/admin/reboot")}, asked) as port:
        url = f"http://127.0.0.1:{port}/metadata/timestamp.json"
        with pytest.raises(tuf_errors.DownloadError) as refused:
            b"".join(fetcher.fetch(url))
    assert f"{url}: the server redirects to http://127.0.0.1:{other}/admin/reboot, another " \
           "host than the kiosk asked" in str(refused.value)
    assert asked == ["/metadata/timestamp.json"]
    assert elsewhere == []


def test_a_redirect_on_the_same_host_is_followed() -> None:
    asked: list[str] = []
    fetcher = DeadlineFetcher(socket_timeout=5, deadline_s=5.0, app_user_agent="test")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with answering({"/old/timestamp.json": _redirect("/new/timestamp.json"),
                    "/new/timestamp.json": ok}, asked) as port:
        assert b"".join(fetcher.fetch(f"http://127.0.0.1:{port}/old/timestamp.json")) == b"hello"
    assert asked == ["/old/timestamp.json", "/new/timestamp.json"]


def test_redirects_without_end_are_refused() -> None:
    asked: list[str] = []
    fetcher = DeadlineFetcher(socket_timeout=5, deadline_s=5.0, app_user_agent="test")
    with answering({"/a": _redirect("/b"), "/b": _redirect("/a")}, asked) as port, \
            pytest.raises(tuf_errors.DownloadError, match=r"more than 3 redirects"):
        b"".join(fetcher.fetch(f"http://127.0.0.1:{port}/a"))
    assert asked == ["/a", "/b", "/a", "/b"]

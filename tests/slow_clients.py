"""Clients that take an HTTP server's connections and send nothing, as slow or hostile ones
do, and the checks each bounded server must pass against them (appliance/httpbounds.py):
connections past its cap refused at once, its threads bounded, silent ones cut off, and a
legitimate request answered once the places are free again."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from appliance.edge.testing import wait_until

ANSWER_WAIT_S = 10.0  # a refusal comes at once; a server that holds the connection does not


@contextmanager
def silent_connections(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``address`` that send nothing, closed when the block ends."""
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection(address, timeout=ANSWER_WAIT_S))
               for _ in range(count)]


def answer_to(sock: socket.socket) -> bytes:
    """What the server sends on ``sock`` before it closes it, said within ANSWER_WAIT_S."""
    sock.settimeout(ANSWER_WAIT_S)
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def status_of(url: str) -> int:
    """The HTTP status a GET of ``url`` gets (an error status included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def check_the_cap(address: tuple[str, int], url: str, cap: int,
                  caplog: pytest.LogCaptureFixture) -> None:
    """``cap`` silent connections take every place: three more are answered 503 and closed
    at once (one log line says so), the server runs at most ``cap`` threads more than before,
    and once the server has cut the silent ones off (its request deadline), ``url`` is
    answered 200."""
    threads_before = threading.active_count()
    with silent_connections(address, cap) as held, silent_connections(address, 3) as excess:
        for sock in excess:  # the server took the held ones first: it accepts in order
            answer = answer_to(sock)
            assert answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
            assert answer.endswith(b"\r\n\r\ntoo many connections at once; try again later\n")
        assert threading.active_count() <= threads_before + cap
        for sock in held:
            assert answer_to(sock) == b""  # cut off at the request deadline, unanswered
    assert wait_until(lambda: status_of(url) == 200, 10)
    refusals = [r.getMessage() for r in caplog.records if " refused " in r.getMessage()]
    assert len(refusals) == 1, refusals  # the next ones within a minute are not said
    assert "refused 1 connection (the latest from 127.0.0.1)" in refusals[0]
    assert f"{cap} open at once, the most it takes" in refusals[0]

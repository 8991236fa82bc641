"""Clients that send their request slowly, or never, do not keep the console from others: each
connection holds one of the server's places until its request has arrived whole."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from console_helpers import Console

PLACES = 64  # the server's limit_concurrency (appliance/console/server.py)


def test_connections_that_never_finish_a_request_are_closed_and_others_get_answers(
    console: Console,
) -> None:
    address = urlsplit(console.url)
    held = [socket.create_connection((address.hostname, address.port), timeout=60)
            for _ in range(PLACES)]
    try:
        for index, sock in enumerate(held):  # a head, or a form, that never ends
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: console\r\n" if index % 2 else
                         b"POST /login HTTP/1.1\r\nHost: console\r\nContent-Type: "
                         b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=")
        for sock in held:  # the console answers or closes each (on main: it waited forever)
            while sock.recv(4096):
                pass
    finally:
        for sock in held:
            sock.close()
    status, _, body = console.get("/login")
    assert status == 200
    assert b'name="password"' in body

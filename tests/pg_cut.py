"""A PostgreSQL server that fails after a connection is made: a TCP relay to the suite's
server (127.0.0.1:5432) that passes the connection's start (the startup message, the login,
the server's first ReadyForQuery), then, at the client's first query, either closes both
sides (``close``: a server restarted or a session ended by an administrator) or stops passing
anything while it keeps both open (``silent``: a hung server, as the client sees one). With
neither, it relays until told to ``hang`` (every connection, and each one made meanwhile,
then passes nothing: the server hangs with its host up) and to ``recover`` (connections made
from then on are relayed again).

URLs through it disable TLS and GSSAPI encryption (``CUT_OPTIONS``), so the server's side is
PostgreSQL's plain messages from the first byte: a type byte and a length each.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from tests.silent_server import accepting

UPSTREAM = ("127.0.0.1", 5432)
CUT_OPTIONS = "sslmode=disable&gssencmode=disable"
_READY_FOR_QUERY = ord("Z")


@dataclass
class CutServer:
    """The relay's ``port``; ``cut`` is set once it has cut a connection (hung: held back a
    statement or its answer)."""

    port: int
    cut: threading.Event = field(default_factory=threading.Event)
    hung: threading.Event = field(default_factory=threading.Event)

    def hang(self) -> None:
        """From now on nothing passes, either way, on any connection."""
        self.hung.set()

    def recover(self) -> None:
        """Connections made from now on are relayed (those cut while hung stay so)."""
        self.hung.clear()

    def url(self, database: str = "test", query: str = "") -> str:
        """A store URL through the relay (``query``: more URL parameters)."""
        extra = f"&{query}" if query else ""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?{CUT_OPTIONS}{extra}"


class _Connection:
    """One client's connection and its upstream one, relayed until the first query."""

    def __init__(self, client: socket.socket, mode: str | None, server: CutServer) -> None:
        self.client, self.mode, self.server = client, mode, server
        self.upstream = socket.create_connection(UPSTREAM)
        self.ready = threading.Event()  # the server's first ReadyForQuery reached the client
        self.cut = threading.Event()
        self.pending = b""  # the server's bytes not yet split into whole messages

    def relay(self) -> None:
        if self.server.hung.is_set():
            self.upstream.close()
            return  # taken, never answered
        threading.Thread(target=self._from_server, daemon=True).start()
        self._from_client()

    def _from_client(self) -> None:
        while data := _received(self.client):
            if self.server.hung.is_set():  # swallowed; the client's leaving still ends the
                self.cut.set()  # session below, as a hung server acts on it once it recovers
                self.server.cut.set()  # a statement waits on the hung server
                continue
            if self.ready.is_set() and self.mode is not None:
                self.cut.set()
                self.server.cut.set()
                if self.mode == "close":
                    self.close()
                return  # silent: nothing more passes either way
            self.upstream.sendall(data)
        self.close()  # the client has gone, and with it its session

    def _from_server(self) -> None:
        while (data := _received(self.upstream)) and not self.cut.is_set():
            if self.server.hung.is_set():
                self.cut.set()
                self.server.cut.set()  # a statement waits for this answer from the hung server
                return
            if not self.ready.is_set() and self._holds_ready(data):
                self.ready.set()
            self.client.sendall(data)

    def _holds_ready(self, data: bytes) -> bool:
        """Whether the server's bytes so far hold a whole ReadyForQuery message."""
        self.pending += data
        while len(self.pending) >= 5:
            kind, length = self.pending[0], int.from_bytes(self.pending[1:5], "big")
            if len(self.pending) < 1 + length:
                return False
            self.pending = self.pending[1 + length:]
            if kind == _READY_FOR_QUERY:
                return True
        return False

    def close(self) -> None:
        for side in (self.client, self.upstream):
            with suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()


def _received(side: socket.socket) -> bytes:
    """The next bytes from ``side``; b"" once it is closed."""
    try:
        return side.recv(65536)
    except OSError:
        return b""


@contextmanager
def cut_server(mode: str | None = None) -> Iterator[CutServer]:
    """Relay on a free port of 127.0.0.1 for the ``with`` block, cutting each connection at its
    first query as ``mode`` (``close`` or ``silent``) says, or as told (None: ``hang``,
    ``recover``); every connection closed after."""
    connections: list[_Connection] = []
    servers: list[CutServer] = []  # made once the port is known, before any client has it

    def relay(client: socket.socket) -> None:
        client.settimeout(None)
        connections.append(_Connection(client, mode, servers[0]))
        threading.Thread(target=connections[-1].relay, daemon=True).start()

    try:
        with accepting("CutServer", relay) as port:
            servers.append(CutServer(port))
            yield servers[0]
    finally:
        for connection in connections:
            connection.close()

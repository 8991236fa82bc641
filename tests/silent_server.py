"""A PostgreSQL server that does not answer, without a PostgreSQL server: a TCP listener on
127.0.0.1 that takes every connection and never sends a byte.

That is what a client meets at a hung server, a proxy or load balancer with nothing behind it,
or a port forwarded to something that is not PostgreSQL: the TCP handshake passes (the kernel
makes it), then the startup message waits for an answer that never comes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SilentServer:
    """The listener's ``port``; ``taken`` is set once it has taken a connection."""

    port: int
    taken: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """A store URL of this server (database ``test``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"


@contextmanager
def accepting(name: str, on_accept: Callable[[socket.socket], None]) -> Iterator[int]:
    """Listen on a free port of 127.0.0.1 for the ``with`` block (its port yielded), handing
    each connection taken to ``on_accept`` from a thread named ``name``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # the taker looks at ``done`` between waits
    done = threading.Event()

    def take() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            on_accept(conn)

    taker = threading.Thread(target=take, name=name, daemon=True)
    taker.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        taker.join(5)
        listener.close()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """Listen on a free port of 127.0.0.1 for the ``with`` block. Every connection is taken
    and held open, unanswered, until the block ends."""
    held: list[socket.socket] = []
    taken = threading.Event()

    def hold(conn: socket.socket) -> None:
        held.append(conn)
        taken.set()

    try:
        with accepting("SilentServer", hold) as port:
            yield SilentServer(port, taken)
    finally:
        for conn in held:
            conn.close()

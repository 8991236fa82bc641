"""What slow or hostile clients can hold in our threaded stdlib HTTP servers (the model
repository's, the /metrics endpoints): a bounded number of connections, and a deadline on
each request's head.

A threaded server gives every connection a thread and a file descriptor, so clients that
connect and then send nothing, or a byte now and then, could take as many of both as they
liked. Here a server takes at most ``max_connections`` at once: one more is answered 503 and
closed at once, from the accepting thread, without a thread of its own, and the refusals are
said at most once a minute. Each read waits at most the idle timeout for the next bytes, and
a request whose line and headers have not arrived whole within ``request_deadline_s`` is
answered nothing and closed: without that, a client sending a byte of it within each idle
timeout held its connection for as long as it went on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from appliance.logsafe import escape_controls

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0
REQUEST_DEADLINE_S = 10.0  # a request line and headers are a few hundred bytes
REFUSALS_SAID_EVERY_S = 60.0
_REFUSAL_TEXT = b"too many connections at once; try again later\n"
REFUSAL = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
           b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 5\r\n\r\n%s"
           % (len(_REFUSAL_TEXT), _REFUSAL_TEXT))


class EveryMinute:
    """When a line said again and again (a flood's refusals) may be said: the first time at
    once, later ones at most once an interval."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 interval_s: float = REFUSALS_SAID_EVERY_S) -> None:
        self.clock, self.interval_s = clock, interval_s
        self._said_at: float | None = None

    def due(self) -> bool:
        """True (and counted as said now) when the last saying is an interval old or more."""
        now = self.clock()
        if self._said_at is not None and now - self._said_at < self.interval_s:
            return False
        self._said_at = now
        return True


class Tally:
    """A warning a flood would say again and again (a connection cut off at its deadline, a
    request ended early): the first said at once, later ones at most once a minute, with their
    count and the latest one's detail. Counted from any thread; a server whose loop looks
    often says the waiting ones with ``say_due``, others when ``count`` asks them to."""

    def __init__(self, logger: logging.Logger, what: str,
                 clock: Callable[[], float] = time.monotonic,
                 interval_s: float = REFUSALS_SAID_EVERY_S) -> None:
        self.logger, self.what, self.interval_s = logger, what, interval_s
        self.unsaid = 0
        self._latest = ""
        self._lock = threading.Lock()
        self._saying = EveryMinute(clock, interval_s)

    def count(self, latest: str) -> bool:
        """One more, ``latest`` saying which; True when it is the first one waiting to be
        said, so the caller arranges a ``say_due`` an interval from now."""
        with self._lock:
            self.unsaid += 1
            self._latest = latest
            first = self.unsaid == 1
        return self.say_due() and first

    def say_due(self) -> bool:
        """Say the ones not said yet, unless the last saying is under an interval old; True
        when some still wait."""
        with self._lock:
            if not self.unsaid:
                return False
            if not self._saying.due():
                return True
            count, latest, self.unsaid = self.unsaid, self._latest, 0
        self._say(count, latest)
        return False

    def _say(self, count: int, latest: str) -> None:
        """The line of ``count`` not said till now, the latest of them ``latest``."""
        latest_said = f", the latest {escape_controls(latest)}" if latest else ""
        self.logger.warning("%s: %d since the last saying%s; said at most once a minute",
                            self.what, count, latest_said)


class Refusals(Tally):
    """The connections a server on ``where`` refused, ``cap`` being open: a Tally whose
    detail is the latest refused client, said in a line of its own."""

    def __init__(self, where: str, cap: int, clock: Callable[[], float] = time.monotonic,
                 interval_s: float = REFUSALS_SAID_EVERY_S) -> None:
        super().__init__(log, f"HTTP server on {where}", clock, interval_s)
        self.cap = cap

    def _say(self, count: int, latest: str) -> None:
        noun = "connection" if count == 1 else "connections"
        self.logger.warning("%s refused %d %s (the latest from %s): %d open at once, "
                            "the most it takes; refusals are said at most once a minute",
                            self.what, count, noun, escape_controls(latest), self.cap)


class BoundedThreadingMixIn(socketserver.ThreadingMixIn):
    """A thread a connection, at most ``max_connections`` at once (put before the server
    class: ``class S(BoundedThreadingMixIn, HTTPServer)``). A request that ends in an error
    (a client that hung up mid-answer) is one line of the log, not a traceback on stderr."""

    daemon_threads = True
    block_on_close = False
    max_connections: int  # each server class sets its own

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open = 0  # connections being served
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        server: Any = self  # a socketserver.TCPServer too, bound now
        host, port = server.server_address[:2]
        self.refusals = Refusals(f"{host}:{port}", self.max_connections)
        self.ended_early = Tally(log, f"HTTP server on {host}:{port}: requests ended early")

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread of its own, or refuse it when every place is
        taken."""
        with self._open_lock:
            taken = self._open < self.max_connections
            if taken:
                self._open += 1
        if not taken:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()  # no thread started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The connection's thread; its place is free again when it ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """Answer 503 without waiting for anything. What the client has sent so far is read
        and dropped: closing with it unread would reset the connection, and the client might
        never see the answer."""
        server: Any = self  # a socketserver.TCPServer too
        with contextlib.suppress(OSError):
            request.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                request.recv(65536)
            request.send(REFUSAL)
        server.shutdown_request(request)
        self.refusals.count(str(client_address[0]))

    def service_actions(self) -> None:
        """Each turn of the serving loop: say refusals that wait to be said."""
        server: Any = super()  # socketserver.BaseServer's (typeshed's mix-in lacks it)
        server.service_actions()
        self.refusals.say_due()
        self.ended_early.say_due()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Counted, said at most once a minute: socketserver printed each one's traceback on
        stderr, and a client hanging up mid-request again and again made as many lines."""
        error = sys.exc_info()[1]
        self.ended_early.count(f"from {client_address[0]}: "
                               f"{type(error).__name__}: {error}"[:300])


class _DeadlineReader(io.RawIOBase):
    """A connection's reads: each waits at most ``idle_timeout_s``, and while a request's
    head is awaited, none past its deadline."""

    def __init__(self, sock: socket.socket, idle_timeout_s: float) -> None:
        super().__init__()
        self._sock, self._idle_timeout_s = sock, idle_timeout_s
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def await_head(self, deadline_s: float) -> None:
        """A request's line and headers must come whole within ``deadline_s`` from now."""
        self._deadline = time.monotonic() + deadline_s

    def head_read(self) -> None:
        """The head is in: the body and the answer wait at most the idle timeout each."""
        self._deadline = None
        self._sock.settimeout(self._idle_timeout_s)

    def readinto(self, buffer: Any) -> int:
        if self._deadline is not None:
            left_s = self._deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError("the request did not arrive whole in time")
            self._sock.settimeout(min(self._idle_timeout_s, left_s))
        return self._sock.recv_into(buffer)


class RequestDeadlineMixIn(BaseHTTPRequestHandler):
    """A handler whose request line and headers must arrive whole within
    ``request_deadline_s`` (put before the handler class); every read and write waits at most
    ``timeout`` for the next bytes (socketserver applies it)."""

    timeout = IDLE_TIMEOUT_S
    request_deadline_s = REQUEST_DEADLINE_S

    def setup(self) -> None:
        """Read the connection through the deadline's reader."""
        super().setup()
        self.rfile.close()  # the socket is closed only once each file made of it is
        self._reader = _DeadlineReader(self.connection, self.timeout or IDLE_TIMEOUT_S)
        self._reader.await_head(self.request_deadline_s)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """Each request of a kept-alive connection has its own deadline."""
        self._reader.await_head(self.request_deadline_s)
        super().handle_one_request()

    def handle(self) -> None:
        """A request cut off at its deadline (or idle too long) is answered nothing."""
        try:
            super().handle()
        except TimeoutError:
            self.close_connection = True

    def parse_request(self) -> bool:
        """Read the headers; the head is then whole (or refused)."""
        try:
            return super().parse_request()
        finally:
            self._reader.head_read()

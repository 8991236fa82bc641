"""Running the console: uvicorn on ``console.bind:console.port`` with a store pool.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from the addresses in
``console.trusted_proxies`` (none by default): from any other client they would let it name
the address its failed logins count against (console/throttle.py). Behind a trusted TLS
proxy, the session and login-form cookies are marked Secure when the visitor used HTTPS
(the session cookie then named __Host-: console/guard.py).

Each connection holds one of the server's ``limit_concurrency`` places, and uvicorn waits for
a request's headers without end: a visitor that opens connections and sends a request slowly
(or never) would keep every place and every other visitor would get 503. Here a request must
arrive whole within REQUEST_DEADLINE_S of its connection (or of the previous answer on it);
the connection of one that did not is closed. The answer's side is bounded too: a client
that reads nothing of a large answer (a CSV, a picture) for STALLED_SEND_S, its end
included, is cut off, or a few such downloads would keep every place; one that reads slowly,
but reads, holds its place as long as it likes, so a logged-in user has a bound of answers
being sent at once (console/inflight.py). uvicorn answers a request 503 while PLACES
connections are open, silent ones included, so a new connection that would leave no place
takes that of the one that has waited longest for its request (a silent or slow client's, or
one kept alive with nothing asked): a client that opened connections as fast as the deadline
closed them held every place for good, and every visitor was refused 503 while it went on; a
real request arrives whole within milliseconds of its connection, long before a flood's newer
connections make it the oldest. With MAX_CONNECTIONS open and every one being answered, one
more is answered 503 and closed as soon as it is accepted (said in the log at most once a
minute, as are the connections closed for room or cut off at either deadline), and at most
BACKLOG wait to be accepted: each open one holds a file descriptor, and a flood of silent ones
past the process's limit left the console answering nobody. A request beyond the places
(every one being answered) is answered 503 by uvicorn itself, outside the app: so that answer
too carries the console's security headers, uvicorn adds them to every answer (``headers``),
and the app sets none of its own; its 400 to a request it cannot parse, which bypasses
them, is sent with them here. uvicorn's warnings of such requests, one each whoever sends
them, are counted and said at most once a minute (CountedFloods).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
from pathlib import Path

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from appliance.backoffice.storeurl import masked_url
from appliance.config import ConsoleConfig
from appliance.config.mqtt import DEFAULT_TOPIC_PREFIX, this_host
from appliance.console.app import SECURITY_HEADERS, create_app
from appliance.console.db import StorePool, anyone_can_log_in
from appliance.httpbounds import Refusals, Tally
from appliance.shellname import shell_command

log = logging.getLogger(__name__)
# a console request (headers, and a form of at most 4 KiB) takes well under a second to send
REQUEST_DEADLINE_S = 10.0
# a client reading an answer at all drains the send buffer far more often than this
STALLED_SEND_S = 60.0
PLACES = 64  # requests served at once (uvicorn's limit_concurrency); more are answered 503
# connections held at once, twice the places, and far below the file descriptors a process
# has (1024 under systemd): one more is answered 503 and closed as soon as it is accepted
MAX_CONNECTIONS = 128
# connections waiting to be accepted, and so the most accepted at one turn of the event loop
# (uvicorn's 2,048 by default): with the open ones, within those descriptors even in a burst
BACKLOG = 128
_REFUSAL_TEXT = b"too many connections at once; try again later\n"
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
           b"content-length: %d\r\nconnection: close\r\nretry-after: 5\r\n%s\r\n%s"
           % (len(_REFUSAL_TEXT),
              b"".join(f"{name}: {value}\r\n".encode() for name, value in SECURITY_HEADERS.items()),
              _REFUSAL_TEXT))


# uvicorn's warnings that any request can cause, one each, whoever sends it: said at most once
# a minute with their count, as a client repeating them in a loop wrote as many as it liked
UVICORN_FLOODS = {
    "Invalid HTTP request received.": "console: requests it could not parse, answered 400",
    "Exceeded concurrency limit.": f"console: requests beyond its {PLACES} places, answered 503",
    "Unsupported upgrade request.": "console: requests asking for a protocol upgrade it does "
                                    "not make (a WebSocket), answered as plain requests",
}
NO_WEBSOCKETS = "No supported WebSocket library detected."  # said with each upgrade asked


class CountedFloods(logging.Filter):
    """Counts uvicorn's UVICORN_FLOODS in a Tally each instead of letting each through, and
    drops its hint to install a WebSocket library (the console serves none)."""

    def __init__(self) -> None:
        super().__init__()
        self.tallies = {message: Tally(log, what) for message, what in UVICORN_FLOODS.items()}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record counted (or dropped) here; they come from the event loop."""
        message = record.getMessage()
        tally = self.tallies.get(message)
        if tally is None:
            return not message.startswith(NO_WEBSOCKETS)
        if tally.count(""):
            asyncio.get_running_loop().call_later(tally.interval_s, tally.say_due)
        return False


def uvicorn_logger() -> logging.Logger:
    """A server's own "uvicorn.error" logger, its floods counted (CountedFloods): not the
    registered one, which every server in the process shares, its records passed to it."""
    counted = logging.Logger("uvicorn.error")
    counted.parent = logging.getLogger("uvicorn.error")
    counted.addFilter(CountedFloods())
    return counted


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request has not arrived whole
    within REQUEST_DEADLINE_S (a slow or silent client), or whose client has read nothing of
    its answer for STALLED_SEND_S."""

    deadline: asyncio.TimerHandle | None = None
    stalled: asyncio.TimerHandle | None = None
    refused = False
    refusals: Refusals  # each server's own (make_server), as are the cut-offs' tallies
    counted_logger: logging.Logger  # and uvicorn's logger (uvicorn_logger)
    cut_late: Tally
    cut_stalled: Tally
    cut_for_room: Tally
    waiting_since = 0.0  # when the connection last began to wait for a request (loop time)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's deadline. With PLACES - 1 open (uvicorn answers a request
        503 from PLACES on, a silent connection's too) close the one that has waited longest
        for its request, so this one is served: silent connections reopened as fast as the
        deadline closed them kept every visitor out. With MAX_CONNECTIONS open and every one
        being answered, refuse it: each held a file descriptor until its deadline, and a flood
        past the process's limit made asyncio log a traceback for each accept it could not make
        (some 50,000 in 20 s) while the console answered nobody."""
        self.logger = self.counted_logger
        open_now = self._open_connections()
        # uvicorn answers a request 503 while PLACES connections are open, idle ones included
        if open_now >= min(PLACES - 1, MAX_CONNECTIONS) and not self._make_room() and (
                open_now >= MAX_CONNECTIONS):
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._arm()

    def _open_connections(self) -> int:
        """The connections open and not closing (one closed for room stays in the set until
        the loop's next turn)."""
        return sum(not other.transport.is_closing() for other in self.connections)

    def _make_room(self) -> bool:
        """Close the open connection that has waited longest for its request, for this one;
        False when every open connection is being answered."""
        waiting = [other for other in self.connections
                   if isinstance(other, DeadlineProtocol) and other.awaits_request()]
        if not waiting:
            return False
        min(waiting, key=lambda other: other.waiting_since).close_for_room()
        return True

    def close_for_room(self) -> None:
        """Close this connection, still waiting for its request, to take a new one."""
        self._tally(self.cut_for_room)
        self.transport.close()

    def awaits_request(self) -> bool:
        """Whether the client is still to send its request's head or form (nothing is being
        answered) and the connection is not closing."""
        return (self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
                and not self.transport.is_closing())

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 and close at once. What the client has sent so far is read and dropped:
        closed with it unread, the connection would be reset, the answer perhaps unseen."""
        self.refused = True
        with contextlib.suppress(OSError):  # nonblocking: BlockingIOError when nothing came
            os.read(transport.get_extra_info("socket").fileno(), 65536)
        transport.write(REFUSAL)
        transport.close()
        peer = transport.get_extra_info("peername") or ("unknown",)
        if self.refusals.count(str(peer[0])):  # the first not said: said once the minute is over
            self.loop.call_later(self.refusals.interval_s, self.refusals.say_due)

    def data_received(self, data: bytes) -> None:
        """A refused connection's bytes are dropped."""
        if not self.refused:
            super().data_received(data)

    def on_response_complete(self) -> None:
        """Start the next request's deadline on a kept-alive connection. An answer that ended
        with bytes of it still in the buffer (under its high-water mark: uvicorn waited for
        no drain) must be read within STALLED_SEND_S too: closing the connection waits for
        them, and it held its place for good when the client read nothing more."""
        super().on_response_complete()
        self._arm()
        if self.transport.get_write_buffer_size():
            self._watch_send()

    def connection_lost(self, exc: Exception | None) -> None:
        """No deadline once the connection is gone."""
        if self.refused:
            return
        for timer in (self.deadline, self.stalled):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The send buffer is full: the client has STALLED_SEND_S to read some of it."""
        super().pause_writing()
        self._watch_send()

    def _watch_send(self) -> None:
        """Cut the client off unless it reads within STALLED_SEND_S (from now)."""
        if self.stalled is not None:
            self.stalled.cancel()
        self.stalled = self.loop.call_later(STALLED_SEND_S, self._stalled)

    def resume_writing(self) -> None:
        """The client read: no deadline until the buffer fills again."""
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
        super().resume_writing()

    def _stalled(self) -> None:
        """Cut off a client that read nothing for STALLED_SEND_S (bytes of its answer still
        unsent): abort, as a close would wait for the buffer it does not read; the answer's
        handler sees the disconnect."""
        self.stalled = None
        if not self.transport.get_write_buffer_size():
            return  # it read the end of its answer meanwhile
        self._tally(self.cut_stalled)
        self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse (headers past h11's limit, no HTTP at
        all), with the headers of every other answer, the security headers included: uvicorn's
        own sends a content type and Connection: close only."""
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                   *self.server_state.default_headers]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.waiting_since = self.loop.time()
        self.deadline = self.loop.call_later(REQUEST_DEADLINE_S, self._late)

    def _late(self) -> None:
        """Close the connection when the client is still sending its request's head or form."""
        if self.awaits_request():
            self._tally(self.cut_late)
            self.transport.close()

    def _tally(self, tally: Tally) -> None:
        """Count a connection cut off in ``tally``, said at most once a minute: a line each,
        a flood of silent connections wrote some 13 a second to the journal."""
        peer = self.client[0] if self.client else "unknown"
        if tally.count(f"from {peer}"):
            self.loop.call_later(tally.interval_s, tally.say_due)


def make_server(settings: ConsoleConfig, pool: StorePool,
                pathology_results: Path | None = None, *,
                topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> uvicorn.Server:
    """A uvicorn server for the console (not started); see create_app for the pictures and
    the topic prefix."""
    protocol = type("DeadlineProtocol", (DeadlineProtocol,), {
        "refusals": Refusals(f"{settings.bind}:{settings.port}", MAX_CONNECTIONS),
        "counted_logger": uvicorn_logger(),
        "cut_late": Tally(log, "console: connections closed with no whole request within "
                      f"{REQUEST_DEADLINE_S:.0f} s"),
        "cut_stalled": Tally(log, "console: connections cut off, their client having read "
                         f"nothing of its answer for {STALLED_SEND_S:.0f} s"),
        "cut_for_room": Tally(log, "console: connections that waited longest for their "
                          f"request closed for new ones (all {PLACES} places taken)")})
    config = uvicorn.Config(
        create_app(pool, settings, pathology_results, topic_prefix=topic_prefix),
        host=settings.bind, port=settings.port,
        # an explicit list: given None, uvicorn would trust FORWARDED_ALLOW_IPS or loopback
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies), log_level="warning",
        access_log=False, limit_concurrency=PLACES, timeout_keep_alive=5, http=protocol,
        backlog=BACKLOG, headers=list(SECURITY_HEADERS.items()),
    )
    return uvicorn.Server(config)


def serve(settings: ConsoleConfig, store_url: str, pathology_results: Path,
          store_option: str = "", *, stop: threading.Event | None = None,
          received: list[int] | None = None, topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> int:
    """Serve until ``stop`` is set (the command sets it on SIGINT or SIGTERM, noting each in
    ``received``); returns the exit code (0 once stopped; 2: the address cannot be had).
    ``store_option`` (`` --store URL`` or `` --config F``, as the console was given it) goes on
    the ``console user add`` it suggests when no user can log in yet; 2 also for a bind that
    ``ConsoleConfig.plain_http_refusal`` refuses."""
    if (refusal := settings.plain_http_refusal()) is not None:
        print(f"console: {refusal}", file=sys.stderr)
        return 2
    if settings.allow_plain_http and not this_host(settings.bind):
        print(f"console: serving {settings.bind} without TLS (console.allow_plain_http): "
              "passwords and session cookies cross the network in clear", file=sys.stderr)
    try:
        listener = listening_socket(settings.bind, settings.port)
    except OSError as exc:
        print(f"console: cannot listen on {settings.bind}:{settings.port}: "
              f"{exc.strerror or exc}; stop what uses it or set console.bind / console.port "
              f"(in the config, or for one run APPLIANCE__CONSOLE__PORT=8081 {shell_command()} "
              "console)",
              file=sys.stderr)
        return 2
    with listener:
        pool = StorePool(store_url)
        try:
            print(f"console on http://{settings.bind}:{settings.port}/ (store "
                  f"{masked_url(store_url)}, pathology pictures from "
                  f"{pathology_results.resolve()})", flush=True)
            if not anyone_can_log_in(pool):
                print("console: no user can log in yet; add one (this console takes it at "
                      f"once): {shell_command()} console user add NAME --role operator"
                      f"{store_option}",
                      flush=True)
            serve_until_stopped(make_server(settings, pool, pathology_results,
                                            topic_prefix=topic_prefix), listener,
                                stop or threading.Event(), received)
        finally:
            pool.close()
    return 0


def serve_until_stopped(server: uvicorn.Server, listener: socket.socket,
                        stop: threading.Event, received: list[int] | None = None) -> None:
    """Run ``server`` on ``listener`` until ``stop`` is set, then let it finish the requests
    it is answering, unless a second stop signal comes (``received`` holds two), which ends
    them at once, as uvicorn's own handlers did.

    It runs in a thread of its own, where uvicorn puts no signal handlers of its own: on the
    main thread it took SIGINT and SIGTERM and raised them again once it had stopped, so the
    console ended as a one-shot command does (130, 143) where the other servers stop in order
    and exit 0; here the command's own stop handlers (interrupts.stop_on_signals) set ``stop``."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                              name="ConsoleServer", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.wait(0.2):
        pass
    server.should_exit = True
    while thread.is_alive():
        server.force_exit = received is not None and len(received) > 1
        thread.join(0.2)


def listening_socket(bind: str, port: int) -> socket.socket:
    """The console's TCP socket, bound as uvicorn binds one (OSError when the address is
    taken or not this host's): bound here, a failure is the console's message and exit 2,
    not uvicorn's log line and exit 3 after the console said it was on."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
    except OSError:
        sock.close()
        raise
    return sock


class ConsoleThread(threading.Thread):
    """The console served from a thread (tests, demo); ``stop()`` ends it."""

    def __init__(self, settings: ConsoleConfig, pool: StorePool,
                 pathology_results: Path | None = None, *,
                 topic_prefix: str = DEFAULT_TOPIC_PREFIX) -> None:
        super().__init__(name="Console", daemon=True)
        self.server = make_server(settings, pool, pathology_results, topic_prefix=topic_prefix)

    def run(self) -> None:
        """Serve until stopped."""
        self.server.run()

    def wait_started(self, timeout_s: float = 10.0) -> bool:
        """True once the server accepts connections."""
        stop = threading.Event()
        waited = 0.0
        while not self.server.started and waited < timeout_s and self.is_alive():
            stop.wait(0.05)
            waited += 0.05
        return bool(self.server.started)

    def stop(self) -> None:
        """Ask the server to finish and wait for it."""
        self.server.should_exit = True
        self.join(10)

"""The kiosk screen's web server on 127.0.0.1: the page, its events, the preview, the choices.

A threaded stdlib ``http.server`` rather than uvicorn: the kiosk has one local viewer
(Chromium in kiosk mode), the daemon must not pull in the console's web stack, and each
long-lived stream (server-sent events, MJPEG) simply holds one thread that sleeps on a
condition variable. It binds loopback only and refuses other ``Host`` names (DNS rebinding),
so no picture leaves the kiosk; POSTs must be small JSON.

Any local process can connect too, so what a connection may hold is bounded
(appliance/httpbounds.py): at most ``max_connections`` at once, one more answered 503 and
closed at once by the accepting thread (said in the log at most once a minute); a request's
line and headers must arrive whole within ``request_deadline_s``, and a connection silent for
``idle_timeout_s`` is closed. The streams have a bound of their own, below the connections',
so streams can never take every place from the page and its choices: at most ``max_streams``
at once (one page holds two: its events and its preview), and a new one ends the oldest, as
the newest stream is the screen's browser coming back (a page reloaded, a tab left behind
goes); a stream whose write cannot proceed for ``stalled_write_s`` (its client reads nothing,
and the small send buffer is full) is cut off.

Routes: ``/`` the page (and its ``kiosk.js``, ``kiosk.css``, ``icon.svg``, ``messages.json``),
``/state``, ``/events`` (SSE), ``/preview.mjpg``, ``/overlay.png``; POST ``/subject`` and
``/language``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from appliance import safejson
from appliance.boundedread import NotRegularFileError, TooLargeError, read_bounded
from appliance.capture.sources import FRAME_HEIGHT_PX, FRAME_WIDTH_PX
from appliance.edge.screen import OVERLAY_FILE
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_state import AGE_BANDS, ScreenState
from appliance.httpbounds import (
    REQUEST_DEADLINE_S,
    BoundedThreadingMixIn,
    EveryMinute,
    RequestDeadlineMixIn,
    Tally,
)

log = logging.getLogger(__name__)

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8"),
          "/kiosk.css": ("kiosk.css", "text/css; charset=utf-8"),
          "/icon.svg": ("icon.svg", "image/svg+xml"),  # else Chromium asks /favicon.ico: a 404
          "/messages.json": ("messages.json", "application/json; charset=utf-8")}
MAX_POST_BYTES = 1024
ASCII_DIGITS = re.compile(r"[0-9]{1,18}")  # a length int() reads exactly, none of ²³¹
KEEPALIVE_S = 10.0
RECONNECT_MS = 500  # the screen's browser reconnects its event stream this soon
# A connection that sends nothing (a request left half-written) or takes nothing (a stream
# nobody reads) for this long is closed, so idle connections do not each hold a thread for good.
IDLE_TIMEOUT_S = 30.0
STREAM_LOOK_S = 0.5  # how often a stream looks whether it has been ended
# a stream's send buffer: a client that reads nothing blocks its writes after some 150 KB
# (this and the client's receive window), where the system's default took some 3 MB
STREAM_SEND_BUFFER_BYTES = 16384
BOUNDARY = "kioskframe"
# the overlay PNG of one frame: twice its raw RGB bytes is more than any PNG encoder makes of it
MAX_OVERLAY_BYTES = 2 * FRAME_WIDTH_PX * FRAME_HEIGHT_PX * 3


@dataclass(frozen=True)
class Bounds:
    """What the screen's clients may hold of its server (tests shorten them)."""

    max_connections: int = 16  # one page: its files, two streams, a post or two
    max_streams: int = 4  # one page's two, and a reloaded page's while the old ones close
    request_deadline_s: float = REQUEST_DEADLINE_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    stalled_write_s: float = 10.0  # a preview frame or an event is a few KB


DEFAULT_BOUNDS = Bounds()


class ScreenServer(BoundedThreadingMixIn, HTTPServer):
    """The HTTP server; its handler reaches the state, the preview and the overlay folder."""

    def __init__(self, port: int, state: ScreenState, preview: PreviewFeed, folder: Path,
                 fps: float, *, bounds: Bounds | None = None) -> None:
        self.bounds = bounds or DEFAULT_BOUNDS
        self.max_connections = self.bounds.max_connections
        bounded = type("ScreenHandler", (ScreenHandler,),
                       {"timeout": self.bounds.idle_timeout_s,
                        "request_deadline_s": self.bounds.request_deadline_s})
        super().__init__(("127.0.0.1", port), bounded)
        self.state, self.preview, self.folder, self.fps = state, preview, folder, fps
        self.stopping = threading.Event()
        self.allowed_hosts = {f"127.0.0.1:{self.server_port}", f"localhost:{self.server_port}"}
        self.streams = Streams(self.bounds.max_streams)
        self.overlays_refused = Tally(log, "kiosk screen: overlays not served")

    def service_actions(self) -> None:
        """Each turn of the serving loop: say refusals, ended streams and overlays not served
        that wait to be said."""
        super().service_actions()
        self.streams.say_due()
        self.overlays_refused.say_due()


class Streams:
    """The open streams, at most ``most`` of them: a new one ends the oldest (its socket is
    shut down at once, its thread ends within STREAM_LOOK_S). Ended streams are said in the
    log, the first at once, later ones at most once a minute with their count."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, threading.Event]] = []  # the oldest first
        self.ended_for_newer = self.stalled = 0  # not said yet
        self._saying = EveryMinute()

    @contextlib.contextmanager
    def place(self, connection: socket.socket) -> Iterator[threading.Event]:
        """A place for the stream on ``connection``; the event is set when it must end."""
        ended = threading.Event()
        with self._lock:
            while len(self._open) >= self.most:
                self._end(*self._open.pop(0))
            self._open.append((connection, ended))
        self.say_due()
        try:
            yield ended
        finally:
            with self._lock:
                if (connection, ended) in self._open:
                    self._open.remove((connection, ended))

    def __len__(self) -> int:
        """How many streams hold a place now."""
        with self._lock:
            return len(self._open)

    def _end(self, connection: socket.socket, ended: threading.Event) -> None:
        ended.set()
        with contextlib.suppress(OSError):  # its client sees the end now, its write fails
            connection.shutdown(socket.SHUT_RDWR)
        self.ended_for_newer += 1

    def count_stalled(self) -> None:
        """One more stream cut off because its client read nothing."""
        with self._lock:
            self.stalled += 1
        self.say_due()

    def say_due(self) -> None:
        """Say the streams ended since the last saying, unless it is under a minute old."""
        with self._lock:
            newer, stalled = self.ended_for_newer, self.stalled
            if not (newer or stalled) or not self._saying.due():
                return
            self.ended_for_newer = self.stalled = 0
        log.warning("kiosk screen: streams ended since the last saying: %d for newer ones (at "
                    "most %d at once), %d whose client read nothing; said at most once a minute",
                    newer, self.most, stalled)


def _static(name: str) -> bytes:
    return resources.files("appliance.edge").joinpath("screen_static", name).read_bytes()


class ScreenHandler(RequestDeadlineMixIn, BaseHTTPRequestHandler):
    """One request to the kiosk screen."""

    server: ScreenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page polls nothing, but streams reconnect; errors are logged elsewhere."""

    def _host_ok(self) -> bool:
        if self.headers.get("Host", "") in self.server.allowed_hosts:
            return True
        self._send(HTTPStatus.FORBIDDEN, b"kiosk screen: loopback only\n", "text/plain")
        return False

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Serve the page, its state and streams."""
        if not self._host_ok():
            return
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, ctype = STATIC[path]
            self._send(HTTPStatus.OK, _static(name), ctype)
        elif path == "/state":
            self._send(HTTPStatus.OK, json.dumps(self.server.state.snapshot()).encode(),
                       "application/json")
        elif path == "/events":
            self._events()
        elif path == "/preview.mjpg":
            self._preview()
        elif path == "/overlay.png":
            self._overlay()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _overlay(self) -> None:
        """The newest overlay. Read without waiting and within a bound (boundedread.py): a
        FIFO put in its place held the request's thread, and with it a connection's place,
        for good; one is said in the log (at most once a minute) and answered as none."""
        path = self.server.folder / OVERLAY_FILE
        try:
            body = read_bounded(path, MAX_OVERLAY_BYTES)
        except FileNotFoundError:
            body = None
        except (OSError, NotRegularFileError, TooLargeError) as exc:
            self.server.overlays_refused.count(str(exc))
            body = None
        if body is None:
            self._send(HTTPStatus.NOT_FOUND, b"no overlay yet\n", "text/plain")
            return
        self._send(HTTPStatus.OK, body, "image/png")

    def _stream_head(self, ctype: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _stream(self, ctype: str, send: Callable[[threading.Event], None]) -> None:
        """A stream: its place, its head, then ``send`` until the event is set (a newer
        stream ended this one) or the server stops; each write waits at most
        ``stalled_write_s``. A client gone, or one that read nothing for that long, ends it
        quietly (the latter counted)."""
        with self.server.streams.place(self.connection) as ended:
            self.connection.settimeout(self.server.bounds.stalled_write_s)
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                           STREAM_SEND_BUFFER_BYTES)
            try:
                self._stream_head(ctype)
                send(ended)
            except TimeoutError:
                self.server.streams.count_stalled()
            except OSError:  # the client went away, or a newer stream shut this one down
                return

    def _events(self) -> None:
        """Server-sent events: the whole state on every change, a comment as keep-alive.

        The stream first tells the browser to come back after ``RECONNECT_MS`` when it ends (a
        kiosk restarted by systemd, an update): its own default, 3 s in Chromium, left the
        customer's screen on its "reconnecting" state that long after the kiosk was back."""
        self._stream("text/event-stream", self._send_events)

    def _send_events(self, ended: threading.Event) -> None:
        state = self.server.state
        snapshot: dict[str, Any] | None = state.snapshot()
        version, quiet_since = -1, time.monotonic()
        self.wfile.write(f"retry: {RECONNECT_MS}\n\n".encode())
        while not (self.server.stopping.is_set() or ended.is_set()):
            if snapshot is not None:
                version = snapshot["version"]
                self.wfile.write(b"data: " + json.dumps(snapshot).encode() + b"\n\n")
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                self.wfile.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            self.wfile.flush()
            snapshot = state.wait_change(version, STREAM_LOOK_S)

    def _preview(self) -> None:
        """MJPEG (multipart/x-mixed-replace): each new camera frame, at most ``fps`` a second."""
        self._stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}", self._send_preview)

    def _send_preview(self, ended: threading.Event) -> None:
        number, interval_s = 0, 1.0 / self.server.fps
        while not (self.server.stopping.wait(interval_s) or ended.is_set()):
            picture = self.server.preview.next_jpeg(number, STREAM_LOOK_S)
            if picture is None:
                continue
            number, jpeg = picture
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                             f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
            self.wfile.flush()

    def do_POST(self) -> None:
        """The customer's choices: ``/subject`` {age_band, consent, measurement, run},
        ``/language`` {language}."""
        if not self._host_ok():
            return
        try:
            body = self._json_body()
            if self.path == "/subject":
                self._subject(body)
            elif self.path == "/language":
                self.server.state.set_language(str(body.get("language")))
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, json.dumps({"error": str(exc)}).encode(),
                       "application/json")
            return
        self._send(HTTPStatus.OK, json.dumps(self.server.state.snapshot()).encode(),
                   "application/json")

    def parse_request(self) -> bool:
        """Read the head; a request with a body this server does not read (a GET's) has its
        connection closed after the answer: left unread, the body would be read as the next
        request."""
        if not super().parse_request():
            return False
        if self.command != "POST" and self._says_a_body():
            self.close_connection = True
        return True

    def _says_a_body(self) -> bool:
        return (self.headers.get("Content-Length", "0") != "0"
                or "Transfer-Encoding" in self.headers)

    def _body_length(self) -> int:
        """The POST body's length: one Content-Length of ASCII digits (``str.isdigit`` also
        took ``²``, which ``int`` then refused), at most MAX_POST_BYTES, and no
        Transfer-Encoding. Else ValueError, the connection closed after the answer: where the
        body ends is unknown, and its bytes would be read as the next request."""
        lengths = self.headers.get_all("Content-Length") or []
        length = lengths[0] if len(lengths) == 1 else ""
        if "Transfer-Encoding" not in self.headers and ASCII_DIGITS.fullmatch(length):
            if int(length) <= MAX_POST_BYTES:
                return int(length)
            self.close_connection = True
            raise ValueError(f"body of {int(length)} bytes: at most {MAX_POST_BYTES}")
        self.close_connection = True
        raise ValueError(f"the body needs one Content-Length in bytes (0-9 digits), at most "
                         f"{MAX_POST_BYTES}, and no Transfer-Encoding")

    def _json_body(self) -> dict[str, Any]:
        length = self._body_length()
        # read even a body refused below: left unread, it would be taken for the next request
        raw = self.rfile.read(length)
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise ValueError("Content-Type must be application/json")
        try:
            body = safejson.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def _subject(self, body: dict[str, Any]) -> None:
        band, consent = body.get("age_band"), body.get("consent")
        if band is not None and band not in AGE_BANDS:
            raise ValueError(f"age_band {str(band)[:20]!r}: use one of {', '.join(AGE_BANDS)}")
        if not isinstance(consent, bool):
            raise ValueError("consent must be true or false")
        # both name what the page showed (the page this server serves always sends them), so
        # a choice can never slip to the next customer or to a daemon run started since
        measurement, run = body.get("measurement"), body.get("run")
        if type(measurement) is not int or measurement < 0:
            raise ValueError("measurement must be the count named in /state")
        if not isinstance(run, str):
            raise ValueError("run must be the run named in /state")
        self.server.state.set_subject(band, consent, measurement, run)

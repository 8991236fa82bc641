"""The kiosk screen's web server on 127.0.0.1: the page, its events, the preview, the choices.

A threaded stdlib ``http.server`` rather than uvicorn: the kiosk has one local viewer
(Chromium in kiosk mode), the daemon must not pull in the console's web stack, and each
long-lived stream (server-sent events, MJPEG) simply holds one thread that sleeps on a
condition variable. It binds loopback only and refuses other ``Host`` names (DNS rebinding),
so no picture leaves the kiosk; POSTs must be small JSON.

Routes: ``/`` the page (and its ``kiosk.js``, ``kiosk.css``, ``messages.json``), ``/state``,
``/events`` (SSE), ``/preview.mjpg``, ``/overlay.png``; POST ``/subject`` and ``/language``.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from appliance import safejson
from appliance.edge.screen_preview import PreviewFeed
from appliance.edge.screen_state import AGE_BANDS, ScreenState

log = logging.getLogger(__name__)

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8"),
          "/kiosk.css": ("kiosk.css", "text/css; charset=utf-8"),
          "/messages.json": ("messages.json", "application/json; charset=utf-8")}
MAX_POST_BYTES = 1024
KEEPALIVE_S = 10.0
RECONNECT_MS = 500  # the screen's browser reconnects its event stream this soon
# A connection that sends nothing (a request left half-written) or takes nothing (a stream
# nobody reads) for this long is closed, so idle connections do not each hold a thread for good.
IDLE_TIMEOUT_S = 30.0
BOUNDARY = "kioskframe"


class ScreenServer(ThreadingHTTPServer):
    """The HTTP server; its handler reaches the state, the preview and the overlay folder."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, state: ScreenState, preview: PreviewFeed, folder: Path,
                 fps: float) -> None:
        super().__init__(("127.0.0.1", port), ScreenHandler)
        self.state, self.preview, self.folder, self.fps = state, preview, folder, fps
        self.stopping = threading.Event()
        self.allowed_hosts = {f"127.0.0.1:{self.server_port}", f"localhost:{self.server_port}"}


def _static(name: str) -> bytes:
    return resources.files("appliance.edge").joinpath("screen_static", name).read_bytes()


class ScreenHandler(BaseHTTPRequestHandler):
    """One request to the kiosk screen."""

    server: ScreenServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # the socket's, for every read and write (socketserver applies it)

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
        try:
            body = (self.server.folder / "last_overlay.png").read_bytes()
        except OSError:
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

    def _events(self) -> None:
        """Server-sent events: the whole state on every change, a comment as keep-alive.

        The stream first tells the browser to come back after ``RECONNECT_MS`` when it ends (a
        kiosk restarted by systemd, an update): its own default, 3 s in Chromium, left the
        customer's screen on its "reconnecting" state that long after the kiosk was back."""
        self._stream_head("text/event-stream")
        state = self.server.state
        snapshot: dict[str, Any] | None = state.snapshot()
        version = -1
        try:
            self.wfile.write(f"retry: {RECONNECT_MS}\n\n".encode())
            while not self.server.stopping.is_set():
                if snapshot is None:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    version = snapshot["version"]
                    self.wfile.write(b"data: " + json.dumps(snapshot).encode() + b"\n\n")
                self.wfile.flush()
                snapshot = state.wait_change(version, KEEPALIVE_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return

    def _preview(self) -> None:
        """MJPEG (multipart/x-mixed-replace): each new camera frame, at most ``fps`` a second."""
        self._stream_head(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        number, interval_s = 0, 1.0 / self.server.fps
        try:
            while not self.server.stopping.wait(interval_s):
                picture = self.server.preview.next_jpeg(number, 1.0)
                if picture is None:
                    continue
                number, jpeg = picture
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return

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

    def _json_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_POST_BYTES:
            self.close_connection = True
            raise ValueError(f"body of {length or 'unknown'} bytes: at most {MAX_POST_BYTES}")
        # read even a body refused below: left unread, it would be taken for the next request
        raw = self.rfile.read(int(length))
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

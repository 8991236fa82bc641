"""A small static HTTP server for the repository's ``public/`` folder (one back-office box).

The repository is plain files, so at scale any web server or object store serves it; this one
is for a single back office and the tests. It serves GET/HEAD of published files under
``public/`` only: regular files, none hidden (the temporaries a killed release or deploy leaves,
``.NAME.xxxx``), none reached through a symlink that leads out of ``public/`` (never the keys
beside it). It logs through ``logging`` instead of stderr.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from appliance.logsafe import escape_controls

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0
REQUEST_DEADLINE_S = 10.0  # a request line and headers are a few hundred bytes


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "no listings")

    def send_head(self) -> BinaryIO | None:
        if not _published(Path(self.translate_path(self.path)), Path(self.directory)):
            self.send_error(404, "not published")
            return None
        return super().send_head()


class _RequestDeadline(http.server.BaseHTTPRequestHandler):
    """Closes a connection whose request (its line and headers) has not arrived whole within
    ``request_deadline_s``: the idle timeout bounds each wait for the next bytes only, so a
    client sending a byte of its request now and then held its thread for ever."""

    request_deadline_s = REQUEST_DEADLINE_S
    _cut = False  # the deadline passed first

    def setup(self) -> None:
        super().setup()
        self._deadline = threading.Timer(self.request_deadline_s, self._cut_off)
        self._deadline.daemon = True
        self._deadline.start()

    def parse_request(self) -> bool:
        """Read the headers; the deadline then is met, or the request refused (HTTP/1.0: one
        request a connection)."""
        parsed = super().parse_request()
        self._deadline.cancel()
        return parsed and not self._cut

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _cut_off(self) -> None:
        """Timer thread: end the reads the handler waits in (they return nothing)."""
        self._cut = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _published(path: Path, public_dir: Path) -> bool:
    """Whether ``path`` (a request translated into ``public_dir``) is a published file: a
    regular file inside ``public_dir`` after symlinks, with no hidden part in its name. A
    name no file can have (a NUL, %00 in the request; a part or a path longer than the file
    system takes) is none: those raised out of the handler, a traceback on stderr and no
    answer."""
    if any(part.startswith(".") for part in path.relative_to(public_dir).parts):
        return False
    try:
        resolved = Path(os.path.realpath(path))  # Path.resolve raises on a symlink loop
        return resolved.is_relative_to(os.path.realpath(public_dir)) and resolved.is_file()
    except (ValueError, OSError):
        return False


class _LoggingHTTPServer(http.server.ThreadingHTTPServer):
    """Says a request that ended in an error (a client that hung up mid-answer) in one line
    of the log: socketserver printed each one's traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        log.warning("%s: request ended early: %s", client_address[0],
                    escape_controls(f"{type(error).__name__}: {error}"[:300]))


class RepositoryServer:
    """Serves ``public_dir`` on ``host:port`` (port 0: a free one) in a background thread.

    Each connection has a thread; one that sends nothing for ``idle_timeout_s``, or whose
    request has not arrived whole within ``request_deadline_s``, is closed, so a slow or
    hostile client holds its thread for a while only (a kiosk's download never idles that
    long). Not bounded: a client that reads its answer a byte at a time (each send waits at
    most ``idle_timeout_s``), and how many connections are open at once.
    """

    def __init__(
        self,
        public_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[http.server.SimpleHTTPRequestHandler] = _QuietHandler,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        *,
        request_deadline_s: float = REQUEST_DEADLINE_S,
    ) -> None:
        self.public_dir = Path(public_dir)
        if not (self.public_dir / "metadata").is_dir():
            raise FileNotFoundError(
                f"{self.public_dir}: no metadata/ folder; serve a repository's public/ folder"
            )
        timed = type(handler.__name__, (_RequestDeadline, handler),
                     {"timeout": idle_timeout_s, "request_deadline_s": request_deadline_s})
        bound = functools.partial(timed, directory=str(self.public_dir))
        self.httpd = _LoggingHTTPServer((host, port), bound)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL kiosks put in ``updates.url``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RepositoryServer:
        """Serve in a background thread."""
        self._thread.start()
        log.info("serving %s on %s", self.public_dir, self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.httpd.shutdown()
        self.httpd.server_close()

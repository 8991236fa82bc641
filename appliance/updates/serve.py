"""A small static HTTP server for the repository's ``public/`` folder (one back-office box).

The repository is plain files, so at scale any web server or object store serves it; this one
is for a single back office and the tests. It serves GET/HEAD of published files under
``public/`` only: regular files, none hidden (the temporaries a killed release or deploy leaves,
``.NAME.xxxx``), none reached through a symlink that leads out of ``public/`` (never the keys
beside it). It logs through ``logging`` instead of stderr.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from appliance.httpbounds import (
    IDLE_TIMEOUT_S,
    REQUEST_DEADLINE_S,
    BoundedThreadingMixIn,
    RequestDeadlineMixIn,
)
from appliance.updates.defaults import MAX_CONNECTIONS

log = logging.getLogger(__name__)



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


class _RepositoryHTTPServer(BoundedThreadingMixIn, http.server.HTTPServer):
    """A thread a connection, at most ``max_connections`` of them (appliance/httpbounds.py)."""

    max_connections = MAX_CONNECTIONS


class RepositoryServer:
    """Serves ``public_dir`` on ``host:port`` (port 0: a free one) in a background thread.

    Each connection has a thread, at most ``max_connections`` at once (one more is answered
    503 and closed at once); one that sends nothing for ``idle_timeout_s``, or whose request
    has not arrived whole within ``request_deadline_s``, is closed, so a slow or hostile
    client holds its thread for a while only (a kiosk's download never idles that long). Not
    bounded: how long a client that reads its answer a byte at a time keeps its place (each
    send waits at most ``idle_timeout_s``).
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
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.public_dir = Path(public_dir)
        if not (self.public_dir / "metadata").is_dir():
            raise FileNotFoundError(
                f"{self.public_dir}: no metadata/ folder; serve a repository's public/ folder"
            )
        timed = type(handler.__name__, (RequestDeadlineMixIn, handler),
                     {"timeout": idle_timeout_s, "request_deadline_s": request_deadline_s})
        bound = functools.partial(timed, directory=str(self.public_dir))
        self.httpd = _RepositoryHTTPServer((host, port), bound)
        self.httpd.max_connections = max_connections
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

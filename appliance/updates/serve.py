"""A small static HTTP server for the repository's ``public/`` folder (one back-office box).

The repository is plain files, so at scale any web server or object store serves it; this one
is for a single back office and the tests. It serves GET/HEAD of files under ``public/`` only
(never the keys beside it) and logs through ``logging`` instead of stderr.
"""

from __future__ import annotations

import functools
import http.server
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "no listings")


class RepositoryServer:
    """Serves ``public_dir`` on ``host:port`` (port 0: a free one) in a background thread.

    Each connection has a thread; one that sends nothing for ``idle_timeout_s`` is closed, so
    slow or hostile clients cannot pile threads up (a kiosk's download never idles that long).
    """

    def __init__(
        self,
        public_dir: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[http.server.SimpleHTTPRequestHandler] = _QuietHandler,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.public_dir = Path(public_dir)
        if not (self.public_dir / "metadata").is_dir():
            raise FileNotFoundError(
                f"{self.public_dir}: no metadata/ folder; serve a repository's public/ folder"
            )
        timed = type(handler.__name__, (handler,), {"timeout": idle_timeout_s})
        bound = functools.partial(timed, directory=str(self.public_dir))
        self.httpd = http.server.ThreadingHTTPServer((host, port), bound)
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

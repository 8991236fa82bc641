"""Running the console: uvicorn on ``console.bind:console.port`` with a store pool.

Behind a TLS reverse proxy on the same host, uvicorn trusts ``X-Forwarded-Proto`` from
127.0.0.1 only, so session cookies are marked Secure when the visitor used HTTPS.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import uvicorn

from appliance.config import ConsoleConfig
from appliance.console.app import create_app
from appliance.console.db import StorePool

log = logging.getLogger(__name__)


def make_server(settings: ConsoleConfig, pool: StorePool,
                pathology_results: Path | None = None) -> uvicorn.Server:
    """A uvicorn server for the console (not started); see create_app for the pictures."""
    config = uvicorn.Config(
        create_app(pool, settings, pathology_results), host=settings.bind, port=settings.port,
        proxy_headers=True, forwarded_allow_ips="127.0.0.1", log_level="warning",
        access_log=False, limit_concurrency=64, timeout_keep_alive=5,
    )
    return uvicorn.Server(config)


def serve(settings: ConsoleConfig, store_url: str, pathology_results: Path) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    pool = StorePool(store_url)
    try:
        print(f"console on http://{settings.bind}:{settings.port}/ (store {store_url}, "
              f"pathology pictures from {pathology_results.resolve()})", flush=True)
        make_server(settings, pool, pathology_results).run()
    finally:
        pool.close()
    return 0


class ConsoleThread(threading.Thread):
    """The console served from a thread (tests, demo); ``stop()`` ends it."""

    def __init__(self, settings: ConsoleConfig, pool: StorePool,
                 pathology_results: Path | None = None) -> None:
        super().__init__(name="Console", daemon=True)
        self.server = make_server(settings, pool, pathology_results)

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

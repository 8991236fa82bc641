"""Prometheus text metrics on 127.0.0.1 (off unless ``edge.metrics_port`` is set)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

# name -> (type, help); every value the daemon reports must be listed here.
METRICS: dict[str, tuple[str, str]] = {
    "appliance_edge_frames_total": ("counter", "Frames read from the camera."),
    "appliance_edge_frames_dropped_total": ("counter", "Frames dropped because analysis lagged."),
    "appliance_edge_measurements_total": ("counter", "Results committed to the outbox."),
    "appliance_edge_outbox_depth": ("gauge", "Results waiting for their PUBACK."),
    "appliance_edge_outbox_dropped_total": ("counter", "Results the outbox policy dropped."),
    "appliance_edge_mqtt_reconnects_total": ("counter", "Broker connections lost."),
    "appliance_edge_mqtt_connected": ("gauge", "1 while connected to the broker."),
    "appliance_edge_camera_online": ("gauge", "1 while the camera delivers frames."),
    "appliance_edge_camera_failures_total": ("counter", "Camera failures (reopened)."),
}


def render(values: dict[str, float]) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of the given values."""
    lines = []
    for name, value in values.items():
        kind, help_text = METRICS[name]
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
    return ("\n".join(lines) + "\n").encode()


class MetricsServer:
    """Serves ``/metrics`` from a collect function on a background thread."""

    def __init__(self, port: int, collect: Callable[[], dict[str, float]]) -> None:
        handler = _handler_for(collect)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="MetricsServer", daemon=True
        )

    def start(self) -> None:
        """Start serving."""
        self._thread.start()
        log.info("metrics on http://127.0.0.1:%d/metrics", self.port)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


def _handler_for(collect: Callable[[], dict[str, float]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = render(collect())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics request: " + format, *args)

    return Handler

"""Prometheus metrics on 127.0.0.1 with prometheus-client (off unless ``edge.metrics_port``).

The daemon's counters live in its threads; a custom collector reads them at scrape time, so
no value is copied on the hot path and none can drift from what the status reports.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from appliance.metricshttp import DEFAULT_BOUNDS, Bounds, start_metrics_server, stop_metrics_server

log = logging.getLogger(__name__)

# name -> (type, help); every value the daemon reports must be listed here. Counter names end
# in _total on the wire (prometheus-client adds it to the family name given here).
METRICS: dict[str, tuple[str, str]] = {
    "appliance_edge_frames": ("counter", "Frames read from the camera."),
    "appliance_edge_frames_dropped": ("counter", "Frames dropped because analysis lagged."),
    "appliance_edge_measurements": ("counter", "Results committed to the outbox."),
    "appliance_edge_measurements_lost": (
        "counter", "Results measured but refused by the outbox (disk full, I/O error)."
    ),
    "appliance_edge_measuring_paused": ("gauge", "1 while the outbox cannot write."),
    "appliance_edge_outbox_depth": ("gauge", "Results the back office has not confirmed."),
    "appliance_edge_outbox_oldest_age_seconds": ("gauge", "Age of the oldest unconfirmed result."),
    "appliance_edge_outbox_dropped": ("counter", "Results lost: policy, age, refused commits."),
    "appliance_edge_results_confirmed": ("counter", "Results the back office confirmed."),
    "appliance_edge_results_resent": ("counter", "Results sent again, unconfirmed in time."),
    "appliance_edge_mqtt_reconnects": ("counter", "Broker connections lost."),
    "appliance_edge_mqtt_connected": ("gauge", "1 while connected to the broker."),
    "appliance_edge_held_back": (
        "gauge", "1 while another live kiosk uses this device id and this one holds back."
    ),
    "appliance_edge_camera_online": ("gauge", "1 while the camera delivers frames."),
    "appliance_edge_camera_failures": ("counter", "Camera failures (reopened)."),
}


class DaemonCollector(Collector):
    """Turns the daemon's current values into metric families at each scrape."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """One family per value the daemon reports."""
        for name, value in self._read().items():
            kind, help_text = METRICS[name]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)


class MetricsServer:
    """Serves ``/metrics`` on 127.0.0.1 from a read function, on a background thread."""

    def __init__(self, port: int, read: Callable[[], dict[str, float]],
                 bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(read))
        self.port = port
        self._bounds = bounds
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving."""
        self._server, self._thread = start_metrics_server(
            self.registry, "127.0.0.1", self.port, self._bounds)
        log.info("metrics on http://127.0.0.1:%d/metrics", self.port)

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None and self._thread is not None:
            stop_metrics_server(self._server, self._thread)

"""Prometheus metrics on 127.0.0.1 with prometheus-client (off unless ``edge.metrics_port``).

The daemon's counters live in its threads; a custom collector reads them at scrape time, so
no value is copied on the hot path and none can drift from what the status reports.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.metricshttp import DEFAULT_BOUNDS, Bounds, LoopbackMetrics

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
    "appliance_edge_outbox_on_repaired_copy": (
        "gauge", "1 while the results are kept in the repaired copy of a damaged outbox that "
        "cannot be moved aside (outbox.sqlite3.repaired): free the damaged file."),
    "appliance_edge_outbox_depth": ("gauge", "Results the back office has not confirmed."),
    "appliance_edge_outbox_kept_confirmed": (
        "gauge", "Results the back office confirmed, kept to send again on request "
        "(edge.keep_confirmed_h)."),
    "appliance_edge_outbox_oldest_age_seconds": (
        "gauge", "Age of the oldest result never confirmed."),
    "appliance_edge_outbox_dropped": ("counter", "Results lost: policy, age, refused commits."),
    "appliance_edge_results_confirmed": ("counter", "Results the back office confirmed."),
    "appliance_edge_results_resent": ("counter", "Results sent again, unconfirmed in time."),
    "appliance_edge_results_refused": (
        "counter", "Broker refusals of results: PUBACK 0x80+, or a connection dropped with "
        "results in flight and none answered (an ACL)."),
    "appliance_edge_mqtt_reconnects": ("counter", "Broker connections lost."),
    "appliance_edge_mqtt_connected": ("gauge", "1 while connected to the broker."),
    "appliance_edge_held_back": (
        "gauge", "1 while another live kiosk uses this device id and this one holds back."
    ),
    "appliance_edge_camera_online": ("gauge", "1 while the camera delivers frames."),
    "appliance_edge_camera_failures": ("counter", "Camera failures (reopened)."),
}


class MetricsServer(LoopbackMetrics):
    """The kiosk's metrics (``METRICS``) on 127.0.0.1, read from the daemon at each scrape."""

    def __init__(self, port: int, read: Callable[[], dict[str, float]],
                 bounds: Bounds = DEFAULT_BOUNDS) -> None:
        super().__init__(port, METRICS, read, bounds)

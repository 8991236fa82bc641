"""Pathology server metrics: tiles/s, batch fill, queue depth, accelerator busy fraction.

Exported for Prometheus (prometheus-client, on ``pathology.metrics_port``) and copied into every
job state message. Rates and fractions are over a sliding window of the last WINDOW_S seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from appliance.metricshttp import DEFAULT_BOUNDS, Bounds, start_metrics_server, stop_metrics_server

log = logging.getLogger(__name__)
WINDOW_S = 10.0


class ServiceMetrics:
    """Counters and gauges of one server, with a private registry (tests run several)."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.registry = CollectorRegistry()
        self.tiles = Counter("pathology_tiles", "Tiles scored by the model",
                             registry=self.registry)
        self.batches = Counter("pathology_batches", "Model calls", registry=self.registry)
        self.queue_depth = Gauge("pathology_queue_depth_tiles",
                                 "Prepared tiles waiting for the model", registry=self.registry)
        self.tiles_per_s = Gauge("pathology_tiles_per_second", "Tiles scored per second "
                                 f"(last {WINDOW_S:g} s)", registry=self.registry)
        self.batch_fill = Gauge("pathology_batch_fill", "Mean tiles per batch / max_batch "
                                f"(last {WINDOW_S:g} s)", registry=self.registry)
        self.busy = Gauge("pathology_accelerator_busy_fraction", "Share of wall time the model "
                          f"was running (last {WINDOW_S:g} s)", registry=self.registry)
        self.jobs_running = Gauge("pathology_jobs_running", "Jobs this server runs",
                                  registry=self.registry)
        self.busy_s_total = 0.0
        self._http: Any = None
        self._events: deque[tuple[float, int, float]] = deque()
        self._lock = threading.Lock()

    def serve(self, port: int, bind: str = "127.0.0.1", bounds: Bounds = DEFAULT_BOUNDS,
              thread_name: str = "metrics-http") -> None:
        """Expose /metrics over HTTP on bind:port (port 0: none) from a thread named
        ``thread_name``. An address that cannot be had is logged and the server serves jobs
        without its metrics."""
        if not port:
            return
        try:
            self._http = start_metrics_server(self.registry, bind, port, bounds, thread_name)
        except OSError as exc:
            log.error("metrics not served: cannot listen on %s:%d: %s; check "
                      "pathology.metrics_port and pathology.metrics_bind", bind, port, exc)

    def bound_address(self) -> tuple[str, int] | None:
        """(address, port) the /metrics server listens on, or None when none runs."""
        if self._http is None:
            return None
        host, port = self._http[0].server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop the /metrics HTTP server, if one runs."""
        if self._http is not None:
            stop_metrics_server(*self._http)  # the port free at once, not when collected
            self._http = None

    def batch_done(self, tiles: int, busy_s: float) -> None:
        """Record one model call of ``tiles`` tiles that kept the accelerator busy busy_s."""
        self.tiles.inc(tiles)
        self.batches.inc()
        self.busy_s_total += busy_s
        with self._lock:
            self._events.append((time.monotonic(), tiles, busy_s))
        self.refresh()

    def refresh(self) -> dict[str, float]:
        """Recompute the windowed gauges; returns the figures a job state carries."""
        now = time.monotonic()
        with self._lock:
            while self._events and now - self._events[0][0] > WINDOW_S:
                self._events.popleft()
            events = list(self._events)
        figures = {"tiles_per_s": 0.0, "batch_fill": 0.0, "accelerator_busy": 0.0}
        if events:
            span_s = max(now - events[0][0] + events[0][2], 1e-3)
            tiles = sum(event[1] for event in events)
            figures = {"tiles_per_s": round(tiles / span_s, 1),
                       "batch_fill": round(tiles / len(events) / self.max_batch, 3),
                       "accelerator_busy": round(min(1.0, sum(e[2] for e in events) / span_s), 3)}
        self.tiles_per_s.set(figures["tiles_per_s"])
        self.batch_fill.set(figures["batch_fill"])
        self.busy.set(figures["accelerator_busy"])
        return figures

    def snapshot(self, queue_depth_tiles: int) -> dict[str, float]:
        """The figures a job state carries, with the current queue depth."""
        self.queue_depth.set(queue_depth_tiles)
        return {**self.refresh(), "queue_depth_tiles": queue_depth_tiles}

"""The ingest worker's counters for Prometheus on 127.0.0.1 (off unless
``backoffice.metrics_port``), read from the worker at each scrape (appliance/metricshttp.py)."""

from __future__ import annotations

import logging

from appliance.backoffice.ingest import IngestWorker
from appliance.metricshttp import Catalogue, LoopbackMetrics

log = logging.getLogger(__name__)

METRICS: Catalogue = {
    "appliance_backoffice_messages_received": (
        "counter", "Messages the worker took from the broker and acknowledged."),
    "appliance_backoffice_results_stored": ("counter", "Results stored for the first time."),
    "appliance_backoffice_results_duplicate": (
        "counter", "Results received again that were stored already (confirmed again)."),
    "appliance_backoffice_results_over_rate": (
        "counter", "Results over their kiosk's rate (backoffice.kiosk_results_per_s): neither "
        "stored nor confirmed, so their kiosk sends them again."),
    "appliance_backoffice_dead_letters": ("counter", "Messages kept as dead letters."),
    "appliance_backoffice_statuses": (
        "counter", "Device status upserts written (one a kiosk a batch: the newest)."),
    "appliance_backoffice_statuses_over_rate": (
        "counter", "Statuses over their kiosk's rate (backoffice.kiosk_statuses_per_s): "
        "acknowledged, not written; each kiosk's newest of them written once its rate allows."),
    "appliance_backoffice_model_reports": (
        "counter", "Kiosks' model reports written to the model history (one already kept "
        "counted too, stored once)."),
    "appliance_backoffice_model_reports_over_rate": (
        "counter", "Model reports over their kiosk's rate (backoffice.kiosk_statuses_per_s): "
        "acknowledged, not kept."),
    "appliance_backoffice_commit_failures": ("counter", "Store commits that failed (retried)."),
    "appliance_backoffice_qos0_dropped": (
        "counter", "QoS 0 messages dropped: too many waited already."),
    "appliance_backoffice_inbox_depth": (
        "gauge", "Messages received and waiting for the store."),
}


def worker_values(worker: IngestWorker) -> dict[str, float]:
    """The worker's current values, by metric name."""
    stats = worker.stats
    return {
        "appliance_backoffice_messages_received": stats.received,
        "appliance_backoffice_results_stored": stats.stored,
        "appliance_backoffice_results_duplicate": stats.duplicates,
        "appliance_backoffice_results_over_rate": stats.over_rate,
        "appliance_backoffice_dead_letters": stats.dead_letters,
        "appliance_backoffice_statuses": stats.statuses,
        "appliance_backoffice_statuses_over_rate": stats.statuses_over_rate,
        "appliance_backoffice_model_reports": stats.model_reports,
        "appliance_backoffice_model_reports_over_rate": stats.model_reports_over_rate,
        "appliance_backoffice_commit_failures": stats.commit_failures,
        "appliance_backoffice_qos0_dropped": stats.qos0_refused,
        "appliance_backoffice_inbox_depth": worker.writer.inbox.qsize(),
    }


def serve_metrics(worker: IngestWorker, port: int | None) -> LoopbackMetrics | None:
    """The worker's metrics served on 127.0.0.1:``port`` (None: unset). A port that cannot
    be bound is logged and the worker goes on storing without its metrics."""
    if port is None:
        return None
    metrics = LoopbackMetrics(port, METRICS, lambda: worker_values(worker))
    try:
        metrics.start()
    except OSError as exc:
        log.error("metrics not served: cannot listen on 127.0.0.1:%d: %s; check "
                  "backoffice.metrics_port", port, exc)
        return None
    return metrics

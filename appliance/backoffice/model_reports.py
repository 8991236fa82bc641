"""The kiosks' model reports kept as history: which model a kiosk ran, refused or went back
from, when, and why.

A kiosk says what it did with a model update on its retained ``.../model/state`` topic
(docs/model-updates.md); the broker keeps only the newest report of each kiosk. For a medical
device fleet the operator must answer, for years, which model version produced a result and
when kiosk K switched models, so the ingest worker stores every report it receives
(triage.py) in ``model_reports`` (migration 25). A report is one row, whatever the number of
times it arrives: the broker hands a kiosk's retained report out again at each subscribe, and
every ingest worker subscribes to the reports (retained messages are not sent to shared
subscriptions, MQTT 5 spec 3.3.1.3), so a report is keyed by its kiosk and its payload's
SHA-256 (each carries its kiosk's time ``at``, so two reports never have one payload).
The retention bound removes a report only once a newer one of its kiosk is also past it
(retention.py), so the history explains every result the store still holds.

A mixin of ``Store`` (same connection, same SQL for SQLite and PostgreSQL), as
``store_reads.py`` and ``store_writes.py`` are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from appliance.backoffice.report_history import MAX_HISTORY_ROWS
from appliance.backoffice.schema import iso_utc
from appliance.backoffice.store_connection import StoreConnection
from appliance.transport.payloads import ModelState

MODEL_REPORT_COLUMNS = (
    "site", "device_id", "state", "model_name", "model_version", "running_name",
    "running_version", "reason", "healthy", "rollout", "reported_at", "received_at",
    "report_sha256",
)


def model_report_row(report: ModelState, received_at: str, payload: bytes) -> tuple[Any, ...]:
    """The ``model_reports`` row of one report received at ``received_at``, in
    MODEL_REPORT_COLUMNS order (``healthy`` as 0/1: both stores keep it as an INTEGER)."""
    model, running = report.model, report.running
    return (
        report.site,
        report.device_id,
        report.state,
        model.name if model else None,
        model.version if model else None,
        running.name if running else None,
        running.version if running else None,
        report.reason,
        None if report.healthy is None else int(report.healthy),
        report.rollout,
        iso_utc(report.at),
        received_at,
        hashlib.sha256(payload).hexdigest(),
    )


class ModelReports(StoreConnection):
    """Writes and reads of ``model_reports``; ``Store`` provides the connection."""

    def _insert_model_reports(self, cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert the reports not kept yet (inside the batch's transaction): a retained report
        replayed at a subscribe, or heard by several workers, is kept once."""
        marks = ",".join("?" * len(MODEL_REPORT_COLUMNS))
        cur.executemany(
            self._sql(
                f"INSERT INTO model_reports ({','.join(MODEL_REPORT_COLUMNS)}) VALUES ({marks}) "
                "ON CONFLICT (site, device_id, report_sha256) DO NOTHING"
            ),
            rows,
        )

    def model_reports(self, device: str, site: str | None = None, limit: int = 20,
                      before_id: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` (at most MAX_HISTORY_ROWS) reports of ``device`` (of
        ``site``, else of every site with a device of that id), newest first: in the order
        the back office stored them, not by the kiosk's clock, which may have been stepped;
        ``before_id``: only those stored before the report of that ``id`` (a page on)."""
        where = ["device_id = ?"]
        params: list[Any] = [device]
        if site is not None:
            where, params = [*where, "site = ?"], [*params, site]
        if before_id is not None:
            where, params = [*where, "id < ?"], [*params, before_id]
        columns = ("id", *MODEL_REPORT_COLUMNS[:-1])
        rows = self._fetch(
            f"SELECT {','.join(columns)} FROM model_reports WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?", [*params, max(1, min(limit, MAX_HISTORY_ROWS))])
        return [_report(dict(zip(columns, row, strict=True))) for row in rows]

    def latest_model_reports(self) -> list[dict[str, Any]]:
        """Each kiosk's newest stored report (the one stored last), by site and device id."""
        columns = ("id", *MODEL_REPORT_COLUMNS[:-1])
        rows = self._fetch(
            f"SELECT {','.join('m.' + c for c in columns)} FROM model_reports m WHERE m.id = "
            "(SELECT MAX(n.id) FROM model_reports n WHERE n.site = m.site AND "
            "n.device_id = m.device_id) ORDER BY m.site, m.device_id")
        return [_report(dict(zip(columns, row, strict=True))) for row in rows]


def _report(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as its readers show it: ``healthy`` back to a bool (or None)."""
    healthy = row["healthy"]
    return {**row, "healthy": None if healthy is None else bool(healthy)}

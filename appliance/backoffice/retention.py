"""The retention bound: results captured, and dead letters received, before a cut-off are
removed, a few hundred at a time, each batch its own short transaction.

A kiosk's model reports (model_reports.py) are the audit trail of which model produced which
result, so they go with the results they explain, never before: a report received before the
cut-off is removed only where a newer one of its kiosk was received before the cut-off too.
Each kiosk's newest report from before the cut-off stays, as it says which model served from
then on, when the oldest results kept were measured (a kiosk that reported nothing since keeps
its newest report for as long as the store holds it).

"Captured" is the capture as the back office places it (``results.placed_at``,
placed_capture.py): its kiosk's ``captured_at`` corrected by that kiosk's clock as its live
statuses read it, never later than its receipt and never earlier than the oldest result its
kiosk said it held. So no result is kept more than the bound after the back office received
it, and none is removed before the bound after its placed capture, whatever its kiosk's clock
said.

``backoffice.retention_days`` (unset: results are kept for ever) has each ingest worker run
``RetentionPruner`` beside it, on its own store connection, never in the ingest transaction:
at start, then every ``RETENTION_EVERY_S``. ``appliance results prune --older-than DAYS`` runs
the same once by hand. A run that removed anything (results, dead letters or model reports)
is recorded in ``erasures`` (kind "retention", its cut-off as the selector, the counts), and
the ingest writer does not store again a result captured before the newest recorded cut-off
(a kiosk's late re-send): erasure.py's ``_drop_erased``. Several workers may prune at once:
each batch deletes what is still there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from appliance.backoffice import storeerrors
from appliance.backoffice.erasure import Erased
from appliance.backoffice.queries import ResultFilter
from appliance.backoffice.schema import iso_utc, second_text
from appliance.backoffice.store_connection import StoreConnection
from appliance.transport.payloads import utc_now

if TYPE_CHECKING:
    from appliance.backoffice.store import Store

log = logging.getLogger(__name__)
RETENTION_EVERY_S = 3600.0
ROWS_AT_ONCE = 500  # results (or dead letters, model reports) one prune transaction removes
# a kiosk's report received before the cut-off (?) that a newer one of it, also received
# before the cut-off, followed: the newer one says which model served from then on
_SUPERSEDED_REPORTS = (
    "FROM model_reports m WHERE EXISTS (SELECT 1 FROM model_reports n WHERE n.site = m.site "
    "AND n.device_id = m.device_id AND n.id > m.id AND n.received_at < ? "
    "AND m.received_at <= n.received_at)")


@dataclass(frozen=True)
class Period:
    """What the stored results cover: the first and last capture time as the back office
    placed it (placed_capture.py; None: no result), and
    the newest retention cut-off (None: none was applied), before which results were removed,
    so figures computed earlier covered more."""

    captured_from: str | None
    captured_to: str | None
    removed_before: str | None

    def text(self) -> str:
        """The period in words, for a report's page."""
        covered = (f"Results captured from {_second(self.captured_from)} to "
                   f"{_second(self.captured_to)} (capture times as the back office places "
                   "them)." if self.captured_from else "No results stored.")
        if self.removed_before is None:
            return covered
        return (f"{covered} Results captured before {_second(self.removed_before)} were removed "
                "(the retention bound: backoffice.retention_days, `appliance results prune`).")


def _second(stored: str | None) -> str:
    """A stored time to the second (schema.second_text), '-Z' where there is none."""
    return second_text(stored or "-")


def cut_off(days: int) -> str:
    """The stored-time text of the moment ``days`` days before now (UTC)."""
    return iso_utc(utc_now() - timedelta(days=days))


class RetentionWrites(StoreConnection):
    """``prune_preview``, ``prune_before`` and ``covered_period``, mixed into ``Store``."""

    if TYPE_CHECKING:

        def _remove_letters(self, cur: Any, where: str, params: Sequence[Any]) -> None: ...
        def _add_to_letter_totals(self, cur: Any, letters: int,
                                  letter_bytes: int) -> tuple[int, int]: ...

    def prune_preview(self, before: str) -> tuple[int, int]:
        """How many results captured (as placed), and dead letters received, before ``before``
        there are."""
        results = self._fetch("SELECT COUNT(*) FROM results WHERE placed_at < ?", (before,))
        letters = self._fetch("SELECT COUNT(*) FROM dead_letters WHERE received_at < ?",
                              (before,))
        return int(results[0][0]), int(letters[0][0])

    def prunable_model_reports(self, before: str) -> int:
        """How many model reports a prune at ``before`` removes (each kiosk's newest one
        received before ``before`` stays)."""
        return int(self._fetch(f"SELECT COUNT(*) {_SUPERSEDED_REPORTS}", (before,))[0][0])

    def covered_period(self, where: ResultFilter | None = None) -> Period:
        """The capture times (as placed) the stored results ``where`` selects span (every
        one's when None), and the newest retention cut-off."""
        conditions, params = (where or ResultFilter()).where()
        matching = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        first, last = self._fetch(
            f"SELECT MIN(placed_at), MAX(placed_at) FROM results{matching}", params)[0]
        cut = self._fetch("SELECT MAX(selector) FROM erasures WHERE kind = 'retention'")[0][0]
        return Period(first, last, cut)

    def prune_before(self, before: str, user: str, rows_at_once: int = ROWS_AT_ONCE,
                     stop: threading.Event | None = None) -> Erased:
        """Remove results captured (as placed) and dead letters received before ``before``,
        and the model reports that newer ones before it followed, ``rows_at_once`` per
        transaction, until none is left (or ``stop`` is set); a run that removed anything is
        recorded in ``erasures``, its model reports too (erasure id 0: none was)."""
        results = self._prune_batches(
            "DELETE FROM results WHERE measurement_id IN (SELECT measurement_id FROM results "
            "WHERE placed_at < ? ORDER BY placed_at LIMIT ?) RETURNING measurement_id",
            before, rows_at_once, stop)
        letters = self._prune_batches(None, before, rows_at_once, stop)
        reports = self._prune_batches(
            f"DELETE FROM model_reports WHERE id IN (SELECT m.id {_SUPERSEDED_REPORTS} "
            "ORDER BY m.id LIMIT ?) RETURNING id", before, rows_at_once, stop)
        if not results and not letters and not reports:
            return Erased(0, user, 0, 0, 0)
        done = Erased(0, user, results, letters, reports)
        erasure_id = self._after_restart(lambda: self._record_run(done, before), stop)
        return Erased(erasure_id, user, results, letters, reports)

    def _record_run(self, done: Erased, before: str) -> int:
        """Record a run that removed anything (``done``'s counts); its erasure id."""
        with self._transaction() as cur:
            cur.execute(self._sql(
                "INSERT INTO erasures (erased_at, os_user, kind, selector, results, dead_letters, "
                "model_reports) VALUES (?, ?, 'retention', ?, ?, ?, ?) RETURNING id"),
                (iso_utc(utc_now()), done.os_user, before, done.results, done.dead_letters,
                 done.model_reports))
            return int(cur.fetchone()[0])

    def _prune_batches(self, results_sql: str | None, before: str, rows_at_once: int,
                       stop: threading.Event | None) -> int:
        """Run one prune statement per transaction until a batch removes fewer than
        ``rows_at_once``; ``results_sql`` None: the dead letters (their totals kept)."""
        removed = 0
        while stop is None or not stop.is_set():
            count = self._after_restart(
                lambda: self._prune_batch(results_sql, before, rows_at_once), stop)
            removed += count
            if count < rows_at_once:
                break
        return removed

    def _prune_batch(self, results_sql: str | None, before: str, rows_at_once: int) -> int:
        """One prune transaction; how many it removed."""
        with self._transaction() as cur:
            if results_sql is None:
                before_count = self._add_to_letter_totals(cur, 0, 0)[0]  # the lock order
                self._remove_letters(cur, "id IN (SELECT id FROM dead_letters WHERE "
                                     "received_at < ? ORDER BY id LIMIT ?)",
                                     (before, rows_at_once))
                return before_count - self._add_to_letter_totals(cur, 0, 0)[0]
            cur.execute(self._sql(results_sql), (before, rows_at_once))
            return len(cur.fetchall())

    def _after_restart(self, call: Callable[[], int], stop: threading.Event | None) -> int:
        """``call`` (one transaction), made once more on a new connection where the server
        had closed the connection under it (a restart met in flight, waited out:
        Store.reopened_after_close, said at INFO). Before, the run stopped there with a
        WARNING, and the batches it had removed were never recorded: the next run, an hour
        later, recorded only its own."""
        try:
            return call()
        except storeerrors.DATABASE_ERRORS as exc:  # built here: SQLite loads no psycopg
            if not self.reopened_after_close(exc, stop):
                raise
        return call()


class RetentionPruner:
    """Removes what is older than ``days`` from the store at ``url`` every ``every_s``, on its
    own connection, until ``stop`` is set; one log line a run."""

    def __init__(self, url: str, days: int, who: str, stop: threading.Event,
                 every_s: float = RETENTION_EVERY_S) -> None:
        self.url, self.days, self.who, self.every_s = url, days, who, every_s
        self.stop = stop
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name="RetentionPruner", daemon=True)

    def start(self) -> None:
        """Start the pruning thread."""
        self._thread.start()

    def halt(self, timeout_s: float) -> None:
        """Set ``stop`` and wait up to ``timeout_s`` for the thread to end (a batch under way
        ends its transaction first)."""
        self.stop.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.run_once()
            self.stop.wait(self.every_s)

    def run_once(self) -> Erased | None:
        """One run; a store that fails is said and tried again at the next run."""
        from appliance.backoffice.store import open_store  # noqa: PLC0415  (imports this)

        before = cut_off(self.days)
        try:
            store: Store = open_store(self.url)
            try:
                done = store.prune_before(before, self.who, stop=self.stop)
            finally:
                store.close()
        except Exception as exc:  # the next run tries again; ingest goes on meanwhile
            log.warning("retention: results captured before %s not pruned now: %s; tried "
                        "again in %.0f s", before, exc, self.every_s)
            return None
        self.runs += 1
        log.info("retention (backoffice.retention_days %d): removed %d result(s) captured, "
                 "%d dead letter(s) and %d superseded model report(s) received before %s",
                 self.days, done.results, done.dead_letters, done.model_reports, before)
        return done

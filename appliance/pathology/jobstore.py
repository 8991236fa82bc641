"""Pathology jobs and slide results in the back-office store (SQLite or PostgreSQL).

A job row is written before its MQTT message is acknowledged, so an accepted job is never lost.
Each running job has an owner (a server's client id) and a lease the owner renews; a server
whose lease ran out (killed, cut off) loses the job to the next server that claims it. A slide
result is keyed by (job, slide index) and written once: the server that takes a job over skips
the slides already stored, so a job completes exactly once in the store. Pictures and tile
tables are files under the server's results folder; the rows hold their paths.

Leases (``lease_until``, seconds since the epoch) are written and compared on the store's
clock: PostgreSQL's, which every server sharing it reads, so a server whose own clock is ahead
cannot take over live jobs and one behind still takes over a dead server's. SQLite serves
servers on one host, one clock: there the lease is that host's ``time.time()``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from appliance.backoffice import storeerrors
from appliance.backoffice.store import Store, StoreError
from appliance.backoffice.storeerrors import explained
from appliance.backoffice.storeurl import store_name
from appliance.pathology.jobs import FINAL_STATES, JobRequest, utc_text
from appliance.pathology.refusals import refusals_let_go

# the slide results' key to their job (a store's tables made before it had none)
_SLIDES_KEY = """ CONSTRAINT pathology_slides_job_fkey
        REFERENCES pathology_jobs (job_id)"""
# A job's slide results, keyed to the job (a foreign key; tables made before it had none and
# are rebuilt with it by migrate_pathology, rows naming no job kept aside)
_SLIDES_DDL = """
CREATE TABLE {exists}{name} (
    job_id TEXT NOT NULL CONSTRAINT pathology_slides_job_fkey
        REFERENCES pathology_jobs (job_id),
    slide_index INTEGER NOT NULL,
    slide TEXT NOT NULL,
    path TEXT NOT NULL,
    label TEXT NOT NULL,
    score {real},
    mean_probability {real},
    msi_tile_share {real},
    tile_count INTEGER NOT NULL,
    in_distribution_share {real},
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    heatmap_path TEXT NOT NULL,
    cam_path TEXT NOT NULL,
    tiles_path TEXT NOT NULL,
    backend TEXT NOT NULL,
    server TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (job_id, slide_index)
)
"""
_DDL = """
CREATE TABLE IF NOT EXISTS pathology_jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until {real} NOT NULL,
    request TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    accepted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    takeovers INTEGER NOT NULL DEFAULT 0
);
{slides}
CREATE INDEX IF NOT EXISTS pathology_refusals ON pathology_jobs (updated_at)
    WHERE request = '{{}}'
"""
SLIDE_COLUMNS = (
    "job_id", "slide_index", "slide", "path", "label", "score", "mean_probability",
    "msi_tile_share", "tile_count", "in_distribution_share", "reason", "error", "heatmap_path",
    "cam_path", "tiles_path", "backend", "server", "stored_at",
)
_NOT_FINAL = "state NOT IN ('done', 'failed', 'cancelled')"
# how long each store call of the pathology server (one read, or one transaction of a few
# statements) waits for a PostgreSQL server's answer before its connection is cut and the call
# fails as in any outage (said, retried, reconnected; appliance/backoffice/outage.py): a server
# that hangs while its host stays up (a stalled disk, a stopped process) still acknowledges at
# the TCP level, so keepalives never find it, and the server's main loop (its leases, every
# job's events) or the finisher's slide write waited on it for ever with nothing said. Each
# call reads or writes a few rows, in milliseconds on a server that answers; one waiting behind
# another's lock (a migration rebuilding a table) may take longer, and is only retried. The
# calls are bounded one by one, not an event's whole work: that may read slides between them.
ANSWER_DEADLINE_S = 30.0
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # characters storable_text escapes


def storable_text(text: str) -> str:
    """``text`` that every store takes: a lone surrogate (a file name's undecodable byte, as
    Python reads it), which no driver encodes, and NUL, which PostgreSQL's text refuses,
    written as visible escapes. A job's reason may quote anything (a model's error)."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _utc_text_of(epoch_s: float) -> str:
    return utc_text(datetime.fromtimestamp(epoch_s, UTC))


class PathologyStore(Store):
    """The store's pathology tables; one connection, not shared between threads. Each read
    and each transaction is answered within ANSWER_DEADLINE_S or fails (OperationalError).

    ``stop``: the server's stop event; once set, a call waiting on the server is cut at once
    (``stopping`` says so), so a server stopped while its store hangs ends in a moment, not
    after the deadline. Migrations are cut by the stop only: one may rebuild a large table,
    or wait for another program's migration, for minutes."""

    def __init__(self, url: str, pg_schema: str | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop
        self._migrating = False
        super().__init__(url, pg_schema)

    def stopping(self) -> bool:
        """Whether the server stops: a call that failed now failed for that, not an outage."""
        return self.stop is not None and self.stop.is_set()

    def reopened_after_close(self, error: BaseException,
                             abandon: threading.Event | None = None) -> bool:
        """Store.reopened_after_close, its wait for a restarting server cut by the stop."""
        return super().reopened_after_close(error, abandon or self.stop)

    @contextmanager
    def _transaction(self, lock_wait_ms: int | None = None) -> Iterator[Any]:
        with self._answered(), super()._transaction(lock_wait_ms) as cur:
            yield cur

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._answered():
            return super()._fetch(sql, params)

    def _answered(self) -> AbstractContextManager[None]:
        """The bound of one store call (Store.answering_within); a migration's, the stop."""
        if not self._migrating:
            return self.answering_within(ANSWER_DEADLINE_S, self.stop)
        return nullcontext() if self.stop is None else self.answering_within(math.inf, self.stop)

    @contextmanager
    def _migration(self) -> Iterator[None]:
        """For the block, the store's calls are a migration's (``_answered``)."""
        self._migrating = True
        try:
            yield
        finally:
            self._migrating = False

    def migrate(self, through: int | None = None) -> list[int]:
        """Store.migrate, cut by the stop only."""
        with self._migration():
            return super().migrate(through)

    def migrate_pathology(self) -> None:
        """Create the pathology tables when missing, and key the slide results of a store made
        before they had a foreign key to their job; cut by the stop only."""
        real = "DOUBLE PRECISION" if self.postgres else "REAL"
        slides = _SLIDES_DDL.format(exists="IF NOT EXISTS ", name="pathology_slides", real=real)
        with self._migration(), self._transaction() as cur:
            self.lock_for_migration(cur)  # servers and store migrate may start together
            for statement in _DDL.format(real=real, slides=slides + ";").split(";"):
                if statement.strip():
                    cur.execute(statement)
            if not self._slides_keyed(cur):
                self._key_slides(cur, real)

    def make_unkeyed_pathology(self) -> None:
        """The pathology tables as releases before the slides' foreign key made them, for
        ``migrate_pathology`` to key: a restore remakes so the schema of a store that
        migration took forward (its names: ``pathology_slides_keyed_pkey``)."""
        real = "DOUBLE PRECISION" if self.postgres else "REAL"
        slides = _SLIDES_DDL.format(exists="IF NOT EXISTS ", name="pathology_slides", real=real)
        unkeyed = slides.replace(_SLIDES_KEY, "")
        with self._migration(), self._transaction() as cur:
            for statement in _DDL.format(real=real, slides=unkeyed + ";").split(";"):
                if statement.strip():
                    cur.execute(statement)

    def _slides_keyed(self, cur: Any) -> bool:
        """Whether pathology_slides has its foreign key to pathology_jobs."""
        if self.postgres:
            cur.execute("SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' AND "
                        "conrelid = to_regclass('pathology_slides')")
            return bool(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM pragma_foreign_key_list('pathology_slides')")
        return bool(cur.fetchone()[0])

    def _key_slides(self, cur: Any, real: str) -> None:
        """Rebuild pathology_slides with its foreign key (neither database adds one in place
        in the same SQL); rows naming no job are kept, as they were, in
        pathology_slides_orphaned."""
        # NOT EXISTS, not NOT IN: a NULL job id among the jobs would make NOT IN keep no row
        # aside and NOT (NOT IN) copy none of them: both lost
        orphaned = ("NOT EXISTS (SELECT 1 FROM pathology_jobs "
                    "WHERE pathology_jobs.job_id = pathology_slides.job_id)")
        cur.execute(f"CREATE TABLE pathology_slides_orphaned AS SELECT * FROM pathology_slides "
                    f"WHERE {orphaned}")
        cur.execute(_SLIDES_DDL.format(exists="", name="pathology_slides_keyed", real=real))
        cur.execute(f"INSERT INTO pathology_slides_keyed SELECT * FROM pathology_slides "
                    f"WHERE NOT ({orphaned})")
        cur.execute("DROP TABLE pathology_slides")
        cur.execute("ALTER TABLE pathology_slides_keyed RENAME TO pathology_slides")

    def _lease_clock(self, cur: Any) -> float:
        """Now in seconds since the epoch on the clock leases run on: the PostgreSQL
        server's (shared by every server's host), or this host's for SQLite (one host)."""
        if not self.postgres:
            return time.time()
        cur.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
        return float(cur.fetchone()[0])

    def _clock_text(self, cur: Any) -> str:
        """Now as UTC ISO 8601 text on the lease clock: jobs taken over oldest accepted first
        are in true order across hosts whose clocks differ."""
        return _utc_text_of(self._lease_clock(cur))

    def accept(self, request: JobRequest, owner: str, lease_s: float) -> bool:
        """Store a new job as queued and owned; False when the job id is already stored."""
        with self._transaction() as cur:
            clock = self._lease_clock(cur)  # read once: the accepted time and the lease agree
            now, lease_until = _utc_text_of(clock), clock + lease_s
            cur.execute(self._sql(
                "INSERT INTO pathology_jobs (job_id, state, owner, lease_until, request, "
                "submitted_at, accepted_at, updated_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO NOTHING"),
                (request.job_id, owner, lease_until, request.to_json(),
                 request.submitted_at, now, now))
            return bool(cur.rowcount == 1)

    def record_refusal(self, job_id: str, owner: str, reason: str, *, keep_s: float,
                       keep: int, keep_per_login: int) -> bool:
        """Keep a refused job (named by a usable id) as failed, with the reason; False when
        the id is already stored (that job is left as it is). Refusals are then pruned
        (``prune_refusals``; this one stays)."""
        with self._transaction() as cur:
            now = self._clock_text(cur)
            cur.execute(self._sql(
                "INSERT INTO pathology_jobs (job_id, state, owner, lease_until, request, "
                "submitted_at, accepted_at, updated_at, reason) "
                "VALUES (?, 'failed', ?, 0, '{}', '', ?, ?, ?) ON CONFLICT (job_id) DO NOTHING"),
                (job_id, owner, now, now, storable_text(reason)[:2000]))
            recorded = bool(cur.rowcount == 1)
            self._prune_refusals(cur, keep_s, keep, keep_per_login, job_id)
            return recorded

    def prune_refusals(self, keep_s: float, keep: int, keep_per_login: int) -> None:
        """Remove the refusals recorded more than ``keep_s`` ago on the store's clock (the
        time the broker keeps their retained state, pathology.final_state_keep_s), each
        login's but its newest ``keep_per_login`` and all but ``keep`` in all
        (appliance/pathology/refusals.py): a job client sending garbage under ever new ids
        can grow the store without bound no more than it can remove another login's
        refusals. Jobs that were accepted are never removed."""
        with self._transaction() as cur:
            self._prune_refusals(cur, keep_s, keep, keep_per_login, "")

    def _prune_refusals(self, cur: Any, keep_s: float, keep: int, keep_per_login: int,
                        kept_id: str) -> None:
        # a refusal is the only row without a request (record_refusal); the index on it keeps
        # this to the refusals, however many jobs the store holds (at most about ``keep``
        # once the old ones are gone: this runs as each is recorded)
        cur.execute(self._sql(
            "DELETE FROM pathology_jobs WHERE request = '{}' AND job_id <> ? AND updated_at < ?"),
            (kept_id, _utc_text_of(self._lease_clock(cur) - keep_s)))
        cur.execute(self._sql("SELECT job_id FROM pathology_jobs WHERE request = '{}' "
                              "ORDER BY updated_at DESC, job_id DESC"))
        # the one just recorded stays: first, whatever the clock wrote
        newest_first = sorted((job_id for (job_id,) in cur.fetchall()),
                              key=lambda job_id: job_id != kept_id)
        let_go = refusals_let_go(newest_first, keep_per_login, keep)
        cur.executemany(self._sql("DELETE FROM pathology_jobs WHERE job_id = ? "
                                  "AND request = '{}'"), [(job_id,) for job_id in let_go])

    def claim_expired(self, owner: str, lease_s: float, limit: int = 10) -> list[JobRequest]:
        """Take over unfinished jobs whose lease ran out; returns their requests."""
        from appliance.pathology.jobs import parse_stored  # noqa: PLC0415 - avoids a cycle

        claimed = []
        with self._transaction() as cur:
            now = self._lease_clock(cur)
            cur.execute(self._sql(
                f"SELECT job_id, request FROM pathology_jobs WHERE {_NOT_FINAL} "
                f"AND lease_until < ? ORDER BY accepted_at LIMIT {int(limit)}"), (now,))
            for job_id, request in cur.fetchall():
                cur.execute(self._sql(
                    "UPDATE pathology_jobs SET owner = ?, lease_until = ?, "
                    f"takeovers = takeovers + 1 WHERE job_id = ? AND lease_until < ? "
                    f"AND {_NOT_FINAL}"), (owner, now + lease_s, job_id, now))
                if cur.rowcount == 1:
                    claimed.append(parse_stored(request))
        return claimed

    def renew(self, owner: str, job_ids: list[str], lease_s: float) -> set[str]:
        """Extend the leases of this owner's unfinished jobs; returns the ids still owned."""
        kept = set()
        with self._transaction() as cur:
            lease_until = self._lease_clock(cur) + lease_s
            for job_id in job_ids:
                cur.execute(self._sql(
                    f"UPDATE pathology_jobs SET lease_until = ? WHERE job_id = ? AND owner = ? "
                    f"AND {_NOT_FINAL}"), (lease_until, job_id, owner))
                if cur.rowcount == 1:
                    kept.add(job_id)
        return kept

    def set_running(self, job_id: str, owner: str) -> None:
        """Mark an owned job running."""
        self._update_state(job_id, owner, "running", "")

    def finish(self, job_id: str, owner: str, state: str, reason: str = "") -> bool:
        """Move an owned, unfinished job to a final state; False when it was not ours to end."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final job state")
        return self._update_state(job_id, owner, state, reason)

    def _update_state(self, job_id: str, owner: str, state: str, reason: str) -> bool:
        with self._transaction() as cur:
            cur.execute(self._sql(
                f"UPDATE pathology_jobs SET state = ?, reason = ?, updated_at = ? "
                f"WHERE job_id = ? AND owner = ? AND {_NOT_FINAL}"),
                (state, storable_text(reason)[:2000], self._clock_text(cur), job_id, owner))
            return bool(cur.rowcount == 1)

    def request_cancel(self, job_id: str) -> bool:
        """Flag an unfinished job for cancelling; False when it is unknown or already final."""
        with self._transaction() as cur:
            cur.execute(self._sql(
                f"UPDATE pathology_jobs SET cancel_requested = 1 WHERE job_id = ? "
                f"AND {_NOT_FINAL}"), (job_id,))
            return bool(cur.rowcount == 1)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job."""
        rows = self._fetch("SELECT cancel_requested FROM pathology_jobs WHERE job_id = ?",
                           (job_id,))
        return bool(rows and rows[0][0])

    def store_slide(self, row: dict[str, Any]) -> bool:
        """Write one slide result once; False when (job, slide index) was already stored."""
        values = tuple(_finite(row[column]) for column in SLIDE_COLUMNS)
        marks = ", ".join("?" for _ in SLIDE_COLUMNS)
        with self._transaction() as cur:
            cur.execute(self._sql(
                f"INSERT INTO pathology_slides ({', '.join(SLIDE_COLUMNS)}) VALUES ({marks}) "
                "ON CONFLICT (job_id, slide_index) DO NOTHING"), values)
            return bool(cur.rowcount == 1)

    def stored_slides(self, job_id: str) -> set[int]:
        """Slide indices of a job whose results are stored."""
        rows = self._fetch("SELECT slide_index FROM pathology_slides WHERE job_id = ?", (job_id,))
        return {int(row[0]) for row in rows}

    def slide_results(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored slide results, by slide index."""
        rows = self._fetch(
            f"SELECT {', '.join(SLIDE_COLUMNS)} FROM pathology_slides WHERE job_id = ? "
            "ORDER BY slide_index", (job_id,))
        return [dict(zip(SLIDE_COLUMNS, row, strict=True)) for row in rows]

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A job's row (state, owner, reason, takeovers, request), or None."""
        columns = ("job_id", "state", "owner", "reason", "takeovers", "cancel_requested",
                   "request")
        rows = self._fetch(
            f"SELECT {', '.join(columns)} FROM pathology_jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        job = dict(zip(columns, rows[0], strict=True))
        job["request"] = json.loads(job["request"] or "{}")
        return job


def open_pathology_store(url: str, pg_schema: str | None = None,
                         stop: threading.Event | None = None) -> PathologyStore:
    """Open the store (``stop``: as PathologyStore's) and create the pathology tables when
    missing; StoreError naming the database when that fails, or when the stop came first."""
    store = PathologyStore(url, pg_schema, stop)
    try:
        store.migrate_pathology()
    except storeerrors.DATABASE_ERRORS as exc:
        store.close()
        raise StoreError(f"cannot create the pathology tables in the {store_name(url)}: "
                         f"{explained(exc)}") from exc
    return store

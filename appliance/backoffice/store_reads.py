"""The store's reads for the command line and the ingest worker: results, dead letters and the
fleet registry.

A mixin of ``Store`` (same connection, same SQL for SQLite and PostgreSQL), as the console's
queries (``queries.py``) and the ingest worker's writes (``store_writes.py``) are. Results are
streamed a batch at a time, so an export of millions of them holds one batch in memory; they
are ordered and filtered by their capture as the back office placed it (``placed_at``,
placed_capture.py), as the console lists them, not by their kiosk's clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from appliance.backoffice.keyset import Keyset
from appliance.backoffice.queries import LetterFilter, ResultFilter
from appliance.backoffice.schema import (
    DEVICE_READ_COLUMNS,
    RESULT_READ_COLUMNS,
    DeadLetter,
    result_selection,
)
from appliance.backoffice.store_connection import StoreConnection
from appliance.backoffice.storeerrors import StoreError
from appliance.transport.topics import parse_device_topic

LETTER_KEYS = Keyset(("id",), descending=True)  # dead letters are paged newest first (keyset.py)


class StoreReads(StoreConnection):
    """Reads of results, dead letters and devices; ``Store`` provides the connection."""

    def count_results(self) -> int:
        """How many results are stored."""
        return int(self._fetch("SELECT COUNT(*) FROM results")[0][0])

    def dead_letters(self, limit: int = 100, of: LetterFilter | None = None) -> list[DeadLetter]:
        """The newest dead letters (of those ``of`` selects: every one when None), newest
        first."""
        return [letter for _, letter in self.dead_letters_before(None, limit, of)]

    def dead_letters_before(self, before_id: int | None, limit: int,
                            of: LetterFilter | None = None) -> list[tuple[int, DeadLetter]]:
        """Up to ``limit`` dead letters kept before the one numbered ``before_id`` (None: the
        newest), of those ``of`` selects, newest first, each with its number: one keyset page
        of them."""
        rows = LETTER_KEYS.page(
            self._fetch, "SELECT id, received_at, topic, reason, payload_bytes, payload, "
            "letter_sha256 FROM dead_letters", self._letter_where(of), limit,
            onward=None if before_id is None else (before_id,))
        return [(int(r[0]), DeadLetter(r[1], r[2], r[3], int(r[4]), bytes(r[5]), r[6]))
                for r in rows]

    def count_dead_letters(self, of: LetterFilter | None = None) -> int:
        """How many dead letters are kept (of those ``of`` selects)."""
        conditions, params = self._letter_where(of)
        matching = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return int(self._fetch(f"SELECT COUNT(*) FROM dead_letters{matching}", params)[0][0])

    def _letter_where(self, of: LetterFilter | None) -> tuple[list[str], list[Any]]:
        """SQL conditions and parameters of the letters ``of`` selects: a site's (or a
        kiosk's) topics by how they begin; a device id's at any site by the topics kept
        (``dead_letter_topic_totals``) that are that device's under the prefix."""
        if of is None or (of.site is None and of.device_id is None):
            return [], []
        head = of.kiosk_topics_head()
        if head is not None:
            return ["SUBSTR(topic, 1, CAST(? AS INTEGER)) = ?"], [len(head), head]
        candidates = self._fetch(
            "SELECT topic FROM dead_letter_topic_totals WHERE topic LIKE ? ESCAPE '!'",
            [f"{_like_text(of.prefix.rstrip('/'))}/%/{_like_text(str(of.device_id))}/%"])
        topics = [str(row[0]) for row in candidates
                  if (kiosk := parse_device_topic(of.prefix, str(row[0]))) is not None
                  and kiosk[1] == of.device_id]
        if not topics:
            return ["1 = 0"], []
        return [f"topic IN ({','.join('?' * len(topics))})"], topics

    def devices(self) -> list[dict[str, Any]]:
        """The fleet registry, one mapping per device, by site and device id."""
        rows = self._fetch(
            f"SELECT {','.join(DEVICE_READ_COLUMNS)} FROM devices ORDER BY site, device_id")
        return [dict(zip(DEVICE_READ_COLUMNS, row, strict=True)) for row in rows]

    def knows_device(self, site: str, device: str) -> bool:
        """Whether the back office knows ``device`` of ``site``: the fleet registry holds it
        (a status or a result of it was stored), or a model report of it was stored."""
        return bool(self._fetch(
            "SELECT 1 FROM devices WHERE site = ? AND device_id = ? UNION ALL "
            "SELECT 1 FROM model_reports WHERE site = ? AND device_id = ?",
            (site, device, site, device)))

    def select_results(
        self,
        columns: Sequence[str],
        where: ResultFilter | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        """Stored results (chosen columns) by placed capture, those ``where`` selects (site,
        device, placed capture; every result when None); GRADE_PROBABILITIES too (schema.py)."""
        try:
            selection = result_selection(columns, self.postgres)
        except ValueError as unknown:
            raise StoreError(str(unknown)) from unknown
        matching, params = _result_filter(where)
        order = "placed_at DESC, measurement_id DESC" if newest_first else (
            "placed_at, measurement_id")
        sql = f"SELECT {selection} FROM results{matching} ORDER BY {order}"
        sql += f" LIMIT {int(limit)}" if limit is not None else ""
        return self._stream(sql, params)

    def select_repeated_subjects(self, columns: Sequence[str], where: ResultFilter | None = None
                                 ) -> Iterator[tuple[Any, ...]]:
        """The results (chosen columns) with an age band, of those ``where`` selects (every
        one when None), of every subject that has more than one of them, a subject's results
        together (by subject id, then their capture as the back office placed it, as every
        list goes: not by their kiosks' clocks)."""
        _refuse_unknown(columns)
        conditions, params = (where or ResultFilter()).where()
        banded = " AND ".join(["subject_id IS NOT NULL AND age_band IS NOT NULL", *conditions])
        return self._stream(
            f"SELECT {','.join(columns)} FROM results WHERE {banded} AND subject_id IN "
            f"(SELECT subject_id FROM results WHERE {banded} GROUP BY subject_id "
            "HAVING COUNT(*) > 1) ORDER BY subject_id, placed_at, measurement_id",
            [*params, *params])

    def _stream(self, sql: str, params: Sequence[Any],
                rows_at_once: int = 1000) -> Iterator[tuple[Any, ...]]:
        """The rows of one SELECT (``?`` placeholders), fetched ``rows_at_once`` at a time as
        they are read, so a query over millions of results holds one batch in memory; inside
        a transaction (``write_batch``'s) it reads what that transaction sees."""
        if not self.postgres:  # SQLite steps through the table as rows are fetched
            yield from _in_batches(self._conn.cursor(), sql, params, rows_at_once)
            return
        # psycopg's plain cursor takes the whole answer into memory at once (an export of
        # millions of results); a named one is a server-side cursor, read a batch at a time.
        # It needs a transaction: its own, or a savepoint in the one already open
        with self._conn.transaction(), self._conn.cursor(name="select_results") as cur:
            yield from _in_batches(cur, self._sql(sql), params, rows_at_once)

    def count_matching(self, where: ResultFilter | None = None) -> int:
        """How many stored results ``where`` selects (every one when None)."""
        matching, params = _result_filter(where)
        return int(self._fetch(f"SELECT COUNT(*) FROM results{matching}", tuple(params))[0][0])

    def has_results(self, where: ResultFilter) -> bool:
        """Whether ``where`` selects any stored result (one index entry read, not counted)."""
        matching, params = _result_filter(where)
        return bool(self._fetch(f"SELECT 1 FROM results{matching} LIMIT 1", tuple(params)))


def _refuse_unknown(columns: Sequence[str]) -> None:
    """A StoreError naming the columns that are no result columns."""
    unknown = set(columns) - set(RESULT_READ_COLUMNS)
    if unknown:
        raise StoreError(f"unknown result columns {sorted(unknown)}")


def _result_filter(where: ResultFilter | None) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space, or empty) and parameters of a results filter."""
    conditions, params = (where or ResultFilter()).where()
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _in_batches(cur: Any, sql: str, params: Sequence[Any],
                rows_at_once: int) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql``, fetched ``rows_at_once`` at a time."""
    cur.execute(sql, params)
    while rows := cur.fetchmany(rows_at_once):
        yield from rows


def _like_text(text: str) -> str:
    """``text`` matched as itself in a LIKE pattern with ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")

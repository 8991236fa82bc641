"""The ingest worker's writes to the store: one transaction per batch of results, statuses, model
reports and dead letters.

A mixin of ``Store`` (same connection, same SQL for SQLite and PostgreSQL), as the console's
queries are (``queries.py``). A message is acknowledged to the broker only once everything
its batch changed is committed, so every write here happens inside one ``_transaction``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from appliance.backoffice.erasure_clock import HeldResult
from appliance.backoffice.letter_writes import LetterWrites, pruned_warning
from appliance.backoffice.model_reports import ModelReports
from appliance.backoffice.placed_capture import READING_KEPT, StatusReading, kept_parameters
from appliance.backoffice.schema import (
    DEVICE_COLUMNS,
    RESULT_COLUMNS,
    DeadLetter,
    dead_letter,
    iso_utc,
)
from appliance.backoffice.status_order import (
    SEEN_BEFORE,
    STATE_REPLAYED,
    STORED_SENT_LATER,
    StatusOrder,
    latest_statuses,
)

log = logging.getLogger(__name__)

_IN_CHUNK = 500
# last_seen never moves back (a retained status replayed on reconnect is old news)
_LATEST_SEEN = (
    "last_seen = CASE WHEN excluded.last_seen > devices.last_seen "
    "THEN excluded.last_seen ELSE devices.last_seen END"
)
# nor for a status heard before, or one sent before it (status_order.SEEN_BEFORE): a queue
# replayed to a worker back from a stop was sent before the stored status was received
_STATUS_SEEN = (f"last_seen = CASE WHEN {SEEN_BEFORE} THEN devices.last_seen "
                "WHEN excluded.last_seen > devices.last_seen THEN excluded.last_seen "
                "ELSE devices.last_seen END")
# what ``_touch_devices`` registers a kiosk of statuses only as seen: never (no text sorts
# before it); its status's upsert, next in the same transaction, says when it was
_UNSEEN = iso_utc(datetime.min)
# A status sent before the stored one (status_order.py: by the time since its kiosk's boot
# where both say it, else by the back office's clock, so a kiosk clock stepped back does not
# freeze them) changes only state and last_seen: a kiosk's last will ("offline") is written
# when it connects, so its camera, outbox and versions are older than those of its last
# online status, which stay (the fleet shows an offline kiosk's last known camera state with
# its age).
_KEEP_NEWER = (f"{{col}} = CASE WHEN {STORED_SENT_LATER} "
               "THEN devices.{col} ELSE excluded.{col} END")
# The state is written as it comes (a last will's "offline" is news, its details are not),
# except one that is older news than the stored status's (status_order.py): a queue replayed.
_STATE_AS_SENT = f"state = CASE WHEN {STATE_REPLAYED} THEN devices.state ELSE excluded.state END"
# The lock order. On PostgreSQL two transactions that lock the same rows in opposite orders
# deadlock (the server ends one). Every writer here locks in one order: the dead_letter_totals
# row first (a batch with dead letters, a retry), then results by measurement id, then devices
# by (site, device id), then model reports by (site, device id), one kiosk's in the order they
# came (the order every worker hears them in: one topic, MQTT 5 spec 4.6), which numbers
# them in that order; letters are added and removed only with the totals row held.
# the payload keys a kiosk's new identity changes in a result it measured under an older one
_IDENTITY_KEYS = ("site", "device_id")
_MAX_PARAMS = 16_000  # under SQLite's 32766 and PostgreSQL's 65535 bind parameters


@dataclass
class Batch:
    """Everything one ingest transaction writes."""

    results: list[tuple[Any, ...]] = field(default_factory=list)
    statuses: list[tuple[Any, ...]] = field(default_factory=list)
    # the kiosks' model reports, as rows of model_reports.MODEL_REPORT_COLUMNS
    model_reports: list[tuple[Any, ...]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # the topic prefix of the messages: names the topic of a result set aside as a conflict,
    # and tells which pruned letters were on a device's result topic (a worker passes its own)
    topic_prefix: str = "appliance"
    # written by the store: (site, device) -> letters kept before that the bounds pruned now,
    # each the only copy of a result its kiosk was told to drop
    pruned_only_copies: Counter[tuple[str, str]] = field(default_factory=Counter)
    # each kiosk's clock as its live statuses read it (erasure_clock.py, placed_capture.py)
    clock_readings: list[StatusReading] = field(default_factory=list)
    # written by the store: the letter_sha256 of the letters it did not hold before this batch
    # (a retained message the broker hands out again at each subscribe is held already)
    new_letters: set[str] = field(default_factory=set)


class IngestWrites(LetterWrites, StatusOrder, ModelReports):
    """``write_batch`` and its statements, mixed into ``Store``."""

    if TYPE_CHECKING:

        def _drop_erased(self, cur: Any, stored: Sequence[tuple[Any, ...]], *,
                         released: bool = False) -> tuple[set[str], list[HeldResult]]: ...

    def write_batch(
        self, batch: Batch, dead_letter_max_rows: int, dead_letter_max_total_bytes: int = 2**62
    ) -> list[str]:
        """Commit one batch; returns the measurement ids that were new (stored now).

        A result whose measurement id is already stored (or earlier in the batch) with other
        content is not stored: it becomes a dead letter in the same transaction (one that
        differs only in its site and device id is a re-send: ``_same_measurement``), as does
        a result of an erased subject held (erasure_clock.py). A letter of
        ``batch`` that the bounds prune at once is taken out of it once committed: it was not
        kept, so it is not confirmed to its device. Letters kept before that the bounds prune
        now and that were a result's only copy are counted by device in the store, added to
        ``batch.pruned_only_copies`` and named in a warning. The letters the store did not hold
        before are named in ``batch.new_letters``; ``batch.statuses`` is left as the rows
        written, one a kiosk.
        """
        kept = batch.dead_letters
        pruned: Counter[tuple[str, str]] = Counter()
        added: set[str] = set()
        with self._transaction() as cur:
            fresh, conflicts = self._sorted_out(cur, batch.results)
            letters = batch.dead_letters + [_conflict(batch.topic_prefix, r) for r in conflicts]
            if letters:  # rows are locked in one order by every writer (the lock order, above)
                self._add_to_letter_totals(cur, 0, 0)
            fresh, late, held = self._insert_fresh(cur, fresh, in_batch=batch.clock_readings)
            if late or held:  # stored meanwhile with other content; an erased subject's
                if not letters:  # out of the lock order: a deadlock here is retried
                    self._add_to_letter_totals(cur, 0, 0)
                letters += [_conflict(batch.topic_prefix, r) for r in late]
                letters += [_held(batch.topic_prefix, h) for h in held]
            self._touch_devices(cur, batch.results, batch.statuses)
            statuses = batch.statuses  # one row a kiosk: the status it sent last (status_order.py)
            if batch.clock_readings:  # against the status stored before this batch's
                self._read_clocks(cur, batch.clock_readings)
            if statuses:
                statuses = latest_statuses(self._sent_statuses(cur, statuses,
                                                               batch.clock_readings))
                self._upsert_statuses(cur, statuses)
            if batch.model_reports:  # after the devices, by kiosk: the lock order, above
                self._insert_model_reports(cur, sorted(batch.model_reports, key=_device_key))
            if letters:
                pruned, added = self._keep_letters(
                    cur, letters, (dead_letter_max_rows, dead_letter_max_total_bytes),
                    batch.topic_prefix)
                kept = self._still_kept(cur, batch.dead_letters)
        batch.dead_letters[:] = kept
        batch.statuses[:] = statuses  # the upserts written (a worker counts them)
        batch.new_letters = added
        if pruned:
            batch.pruned_only_copies.update(pruned)
            log.warning("%s", pruned_warning(pruned))
        return [row[0] for row in fresh]

    def retry_dead_letters(
        self, judge: Callable[[str, bytes], Sequence[tuple[Any, ...]]], *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Store the dead-lettered results ``judge`` now takes, removing their letters.

        ``judge(topic, payload)`` gives the result rows a message makes today (none when it is
        still refused): a result dead-lettered for a kiosk clock that ran ahead is taken once
        the time has caught up, one refused by a bug since fixed once the fix is in. Only
        letters kept whole on a result topic are tried. A letter whose result is stored now,
        or was stored already with the same content, is removed in the same transaction; one
        that conflicts with a stored result stays (also with one this retry stored from
        another letter under the same id). Returns (stored, still refused).

        The letters are judged before the write lock is taken (the totals row, and on SQLite
        the whole database): judging thousands of them takes seconds, and every ingest batch
        would wait that long. A letter never changes once kept (ids are not reused), so what
        can change meanwhile is only which letters are still kept: an ingest batch may have
        pruned one (counting it lost) or another retry stored it. With the totals row held,
        the letters still kept are read again and only those are stored or counted refused,
        so a pruned letter is counted lost or stored, never both; whether a result is stored
        already is read with the lock held too (``_insert_results``)."""
        query = "SELECT id, topic, payload_bytes, payload FROM dead_letters ORDER BY id"
        letters, taken = self._judged(self._fetch(query), judge)  # a read: no write lock
        if dry_run:
            return self._would_retry(letters, self._placeable(taken))
        with self._transaction() as cur:
            # the totals row before the letters are read again: an ingest batch that holds it
            # may be pruning these very letters (and counting them lost), so they are read
            # once it has committed, and a letter it pruned is not stored as well
            self._add_to_letter_totals(cur, 0, 0)
            kept = self._still_kept_ids(cur, letters)
            letters = [i for i in letters if i in kept]
            rows = [row for i in letters for row in taken[i]]
            if not rows:
                return 0, len(letters)
            fresh, conflicts = self._insert_results(cur, rows)
            self._touch_devices(cur, rows)
            # by the letter, not the measurement id: of two letters under one id, the one
            # stored now goes and the one that conflicts with it stays; the letter of a
            # result held (an erased subject's) stays as it is
            conflicting = {id(row) for row in conflicts}
            done = [i for i in letters
                    if taken[i] and not any(id(row) in conflicting for row in taken[i])]
            for start in range(0, len(done), _IN_CHUNK):
                chunk = done[start : start + _IN_CHUNK]
                self._remove_letters(cur, f"id IN ({','.join('?' * len(chunk))})", chunk)
        return len(fresh), len(letters) - len(done)

    def _would_retry(self, letters: Sequence[int],
                     placeable: dict[int, Sequence[tuple[Any, ...]]]) -> tuple[int, int]:
        """What a retry of ``letters`` would store and leave refused, read as it sorts them
        (``_sorted_out``): a letter whose result re-uses a stored measurement id with other
        content stays, and one stored already with the same content is no new result. A dry
        run counted both as results it would store."""
        rows = [row for i in letters for row in placeable.get(i, ())]
        fresh, conflicts = self._sorted_out(self._conn.cursor(), rows) if rows else ([], [])
        conflicting = {id(row) for row in conflicts}
        done = [i for i in letters
                if placeable.get(i) and not any(id(row) in conflicting for row in placeable[i])]
        return len(fresh), len(letters) - len(done)

    def _placeable(self, taken: dict[int, Sequence[tuple[Any, ...]]]
                   ) -> dict[int, Sequence[tuple[Any, ...]]]:
        """``taken`` less the letters whose result's capture cannot be placed now
        (placed_capture.py: a kiosk clock years behind, not read lately); a read."""
        rows = [row for found in taken.values() for row in found]
        _, unplaced = self._placed_captures(self._conn.cursor(), rows) if rows else ([], [])
        refused = {held.row[0] for held in unplaced}
        return {i: () if any(row[0] in refused for row in found) else found
                for i, found in taken.items()}

    def _still_kept_ids(self, cur: Any, letters: Sequence[int]) -> set[int]:
        """Which of the letters ``letters`` (ids, ascending) the dead-letter table holds now."""
        if not letters:
            return set()
        cur.execute(self._sql("SELECT id FROM dead_letters WHERE id <= ?"), (letters[-1],))
        return {int(row[0]) for row in cur.fetchall()} & set(letters)

    @staticmethod
    def _judged(
        rows: Sequence[Sequence[Any]], judge: Callable[[str, bytes], Sequence[tuple[Any, ...]]]
    ) -> tuple[list[int], dict[int, Sequence[tuple[Any, ...]]]]:
        """The ids of the letters kept whole on a result topic, and what ``judge`` makes of each."""
        letters = [(int(i), str(t), bytes(p)) for i, t, n, p in rows
                   if str(t).endswith("/result") and int(n) == len(bytes(p))]
        return [i for i, _, _ in letters], {i: judge(t, p) for i, t, p in letters}

    def _insert_results(
        self, cur: Any, rows: Sequence[tuple[Any, ...]], *, released: bool = False
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Store the new results among ``rows``; returns their ids and the rows not stored
        that keep their letters: those conflicting, and an erased subject's held (unless
        ``released``: ``_drop_erased``)."""
        fresh, conflicts = self._sorted_out(cur, rows)
        fresh, late, held = self._insert_fresh(cur, fresh, released=released)
        return [row[0] for row in fresh], conflicts + late + [h.row for h in held]

    def _sorted_out(
        self, cur: Any, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows whose measurement id is new (the first of each, in batch order), and those
        that re-use a stored id (or one earlier in the batch) with other content; reads only."""
        unique: dict[str, tuple[Any, ...]] = {}
        conflicts = []
        for row in rows:
            first = unique.setdefault(row[0], row)  # the first copy in the batch wins
            if first is not row and not _same_measurement(first[-1], row[-1]):
                conflicts.append(row)
        existing: dict[str, str] = {}
        ids = list(unique)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self._sql(
                    f"SELECT measurement_id, payload FROM results WHERE measurement_id IN ({marks})"
                ),
                chunk,
            )
            existing.update((row[0], row[1]) for row in cur.fetchall())
        conflicts += [row for key, row in unique.items()
                      if key in existing and not _same_measurement(existing[key], row[-1])]
        return [row for key, row in unique.items() if key not in existing], conflicts

    def _insert_fresh(
        self, cur: Any, fresh: Sequence[tuple[Any, ...]], *, released: bool = False,
        in_batch: Sequence[StatusReading] = (),
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[HeldResult]]:
        """Insert new results (``_insert_new``), then take out again those that were erased
        (erasure.py: a kiosk re-sends what it has not had confirmed); returns those stored now,
        those another transaction stored first with other content, and an erased subject's
        held and those whose capture cannot be placed (to keep as dead letters). An erased
        result is none of them: it is confirmed to its kiosk, as a duplicate is, and not kept.
        ``in_batch``: the clock readings of the batch's statuses, which place the captures
        (placed_capture.py) with those stored."""
        stored, late, unplaced = self._insert_new(cur, fresh, in_batch)
        erased, held = self._drop_erased(cur, stored, released=released)
        if erased:
            log.info("%d result(s) received again after their erasure: confirmed, not stored",
                     len(erased))
        if held:
            log.warning("%d result(s) of an erased subject held as dead letters: not told "
                        "captured before or after the erasure (appliance results "
                        "dead-letters)", len(held))
        if unplaced:
            log.warning("%d result(s) captured more than 10 years ago by their kiosk's clock "
                        "kept as dead letters (appliance results dead-letters)", len(unplaced))
        gone = erased | {h.row[0] for h in held}
        return [row for row in stored if row[0] not in gone], late, held + unplaced

    def _insert_new(
        self, cur: Any, fresh: Sequence[tuple[Any, ...]], in_batch: Sequence[StatusReading]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[HeldResult]]:
        """Insert new results in measurement id order (the lock order, above), each with its
        placed capture; returns those stored now, those another transaction stored first
        with other content, and those whose capture cannot be placed (not inserted).

        ``fresh`` was read as not stored, but on PostgreSQL another worker may store the same
        id before this insert (it waits for that one, then does nothing): read as stored, its
        content would be confirmed to its kiosk and never kept. SQLite's BEGIN IMMEDIATE lets
        no other writer in between."""
        ordered = sorted(fresh, key=_measurement_id)
        placed, unplaced = self._placed_captures(cur, ordered, in_batch) if ordered else ([], [])
        refused = {held.row[0] for held in unplaced}
        fresh = [row for row in fresh if row[0] not in refused]
        columns, rows = (*RESULT_COLUMNS, "placed_at"), [(*row, at) for row, at in placed]
        conflict = "ON CONFLICT (measurement_id) DO NOTHING"
        if not self.postgres or not rows:
            self._insert_many(cur, "results", columns, rows, conflict)
            return list(fresh), [], unplaced
        inserted = set(self._insert_many(cur, "results", columns, rows, conflict,
                                         returning="measurement_id"))
        beaten = [row for row in fresh if row[0] not in inserted]
        if not beaten:
            return list(fresh), [], unplaced
        cur.execute(self._sql("SELECT measurement_id, payload FROM results WHERE measurement_id "
                              f"IN ({','.join('?' * len(beaten))})"), [row[0] for row in beaten])
        stored = dict(cur.fetchall())
        late = [row for row in beaten if not _same_measurement(stored[row[0]], row[-1])]
        return [row for row in fresh if row[0] in inserted], late, unplaced

    def _insert_many(
        self,
        cur: Any,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        conflict: str,
        *,
        returning: str | None = None,
    ) -> list[Any]:
        """SQLite: multi-row INSERTs, one step (and GIL hand-off) per chunk instead of per row.
        PostgreSQL: psycopg's pipelined executemany, which parses the one-row query once; with
        ``returning`` (PostgreSQL only), the column of each row inserted."""
        one = "(" + ",".join("?" * len(columns)) + ")"
        if self.postgres:
            if not rows:
                return []
            sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES {one} {conflict}"
            if returning is None:
                cur.executemany(self._sql(sql), rows)
                return []
            cur.executemany(self._sql(f"{sql} RETURNING {returning}"), rows, returning=True)
            returned = []
            while True:
                returned += [row[0] for row in cur.fetchall()]
                if not cur.nextset():
                    return returned
        per_chunk = max(1, _MAX_PARAMS // len(columns))
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            values = ",".join([one] * len(chunk))
            sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES {values} {conflict}"
            cur.execute(self._sql(sql), [value for row in chunk for value in row])
        return []

    def _touch_devices(self, cur: Any, results: Sequence[tuple[Any, ...]],
                       statuses: Sequence[tuple[Any, ...]] = ()) -> None:
        """Register every device of ``results`` and ``statuses``, in (site, device) order (the
        lock order, above), seen as its results were received: the status upserts after it
        find each row locked already, and say whether a status moves last_seen (one heard
        before does not: ``_STATUS_SEEN``)."""
        seen: dict[tuple[str, str], str] = {}
        for site, device, at in [(row[2], row[1], row[4]) for row in results] + [
                (row[0], row[1], _UNSEEN) for row in statuses]:
            seen[site, device] = max(at, seen.get((site, device), at))
        self._insert_many(
            cur,
            "devices",
            ("site", "device_id", "last_seen"),
            [(site, device, at) for (site, device), at in sorted(seen.items())],
            f"ON CONFLICT (site, device_id) DO UPDATE SET {_LATEST_SEEN}",
        )

    def _read_clocks(self, cur: Any, readings: Sequence[StatusReading]) -> None:
        """Keep each kiosk's newest clock reading (rows locked already, by ``_touch_devices``),
        unless the status that read it (its boot stamp, with the reading) is no later in its
        boot than the one stored before it: one the broker queued for this worker, which reads
        the clock behind by its wait, or the same status, read already with less delay
        (placed_capture.READING_KEPT)."""
        cur.executemany(self._sql(
            "UPDATE devices SET clock_ahead_s = ?, clock_read_at = ? WHERE site = ? AND "
            f"device_id = ? AND {READING_KEPT}"),
            [(reading[2], reading[3], reading[0], reading[1], *kept_parameters(reading))
             for reading in sorted(readings, key=_reading_key)])

    def _upsert_statuses(self, cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        updates = ", ".join(  # each right-hand side reads the row as it was before
            _STATUS_SEEN if col == "last_seen" else
            _STATE_AS_SENT if col == "state" else _KEEP_NEWER.format(col=col)
            for col in DEVICE_COLUMNS[2:]
        )
        marks = ",".join("?" * len(DEVICE_COLUMNS))
        cur.executemany(
            self._sql(
                f"INSERT INTO devices ({','.join(DEVICE_COLUMNS)}) VALUES ({marks}) "
                f"ON CONFLICT (site, device_id) DO UPDATE SET {updates}"
            ),
            sorted(rows, key=_device_key),  # stable: one device's statuses in arrival order
        )


def latest_readings(readings: Sequence[StatusReading]) -> list[StatusReading]:
    """Each kiosk's newest clock reading of one batch's: of two whose statuses say one boot,
    that of the later in it; else the latest read, of those read at once the one whose status
    was the latest by the kiosk's clock (the furthest ahead), of two alike the later; what
    ``_read_clocks`` keeps of them, and the one that places the batch's results
    (placed_capture.py)."""
    newest: dict[tuple[str, str], StatusReading] = {}
    for reading in readings:
        before = newest.get(key := (reading[0], reading[1]))
        if before is None or _read_later(reading, before):
            newest[key] = reading
    return list(newest.values())


def _read_later(reading: StatusReading, before: StatusReading) -> bool:
    """Whether ``reading`` is newer than ``before`` (or as new): ``latest_readings``."""
    stamp, stamped_before = reading[5], before[5]
    if stamp is not None and stamped_before is not None and stamp[0] == stamped_before[0]:
        return stamp[1] >= stamped_before[1]
    return (before[3], before[2]) <= (reading[3], reading[2])


def _measurement_id(row: tuple[Any, ...]) -> str:
    return str(row[0])


def _reading_key(reading: StatusReading) -> tuple[str, str, float, str]:
    return reading[:4]  # the outbox age and the stamp may be None


def _device_key(row: tuple[Any, ...]) -> tuple[str, str]:
    return str(row[0]), str(row[1])  # DEVICE_COLUMNS order: site, device_id, ...


def _same_measurement(stored: str, received: str) -> bool:
    """Whether two payloads of one measurement id hold the same measurement: the same text, or
    the same but for the site and device id. A kiosk given its own identity sends what it
    measured under another (a held-back clone's shared device id) under its own, with the same
    measurement ids (appliance/edge/relabel.py); one the store holds already stays stored under
    the first identity, and the copy is a re-send, not a conflict to keep as a dead letter."""
    if stored == received:
        return True
    try:
        first, second = json.loads(stored), json.loads(received)
    except ValueError:
        return False
    if not isinstance(first, dict) or not isinstance(second, dict):
        return False
    for key in _IDENTITY_KEYS:
        first.pop(key, None)
        second.pop(key, None)
    return bool(first == second)


def _held(prefix: str, held: HeldResult) -> DeadLetter:
    """A result of an erased subject held (erasure_clock.py), as a dead letter."""
    row = held.row  # RESULT_COLUMNS order: id, device, site, captured, received, ..., payload
    return dead_letter(row[4], f"{prefix}/{row[2]}/{row[1]}/result", held.reason,
                       str(row[-1]).encode())


def _conflict(prefix: str, row: tuple[Any, ...]) -> DeadLetter:
    """A result that re-uses a stored measurement id with other content, as a dead letter."""
    raw = str(row[-1]).encode()  # RESULT_COLUMNS order: id, device, site, ..., payload last
    reason = f"measurement_id {row[0]} already stored with other content; not stored"
    return dead_letter(row[4], f"{prefix}/{row[2]}/{row[1]}/result", reason, raw)

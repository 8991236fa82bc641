"""Erasure on request: one subject's results (consent withdrawn) or one result, and every copy
the store holds of them, with an audit record and tombstones that keep them from coming back.

A result lives in the ``results`` table and, when it was refused once or re-sent with other
content, as a dead letter; both go. What stays is the audit record (``erasures``: when, the
operating-system user who ran it, what was asked for, how many results and letters went) and
a tombstone per erased measurement id of the form a result has (``erased_results``;
``result_can_have``). A kiosk re-sends a result until the back office confirms it, so one
erased between its storing and its ack reaching the kiosk (or whose ack was lost) comes
again: the ingest worker confirms it, so the kiosk drops it, but does not store it
(``_drop_erased``). Results of an erased subject that arrive later are judged by the back
office's clock, not the kiosk's (erasure_clock.py): one captured before the erasure (a kiosk
that was offline with it in its outbox) is not stored either, one captured after it (the
person came back and consented again) is, and one that cannot be told is held as a dead
letter, for an operator to release or erase. Each erasure is also a line of the erasure
journal, outside the store, written before its commit (erasure_journal.py), which a restore
from a backup taken before it applies again (erasure_reapply.py). The erased results' ids are
also recorded by the kiosk that sent each, which the back office asks to forget its kept copy
(kiosk_forgets.py).

The ingest worker checks for tombstones after its insert, in the same transaction: on
PostgreSQL an erasure locks the results table against inserts (SHARE ROW EXCLUSIVE) after the
dead-letter totals row (store_writes.py's lock order), so an insert either committed before the
erasure (which then finds and erases it) or waits for it and then finds its tombstone.
SQLite's BEGIN IMMEDIATE serialises the two. A mixin of ``Store``.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from appliance import safejson
from appliance.backoffice import storeerrors
from appliance.backoffice.erasure_clock import (
    Erasure,
    HeldResult,
    Verdict,
    held_reason,
    judged,
)
from appliance.backoffice.kiosk_forgets import record_forgets
from appliance.backoffice.placed_capture import PlacedCaptures
from appliance.backoffice.schema import RESULT_COLUMNS, iso_utc, named_measurement_id
from appliance.backoffice.storeerrors import is_deadlock
from appliance.logsafe import escape_controls
from appliance.transport.payloads import MEASUREMENT_ID_PATTERN, utc_now
from appliance.transport.topics import parse_device_topic

_IN_CHUNK = 500
_DEADLOCK_ATTEMPTS = 3  # an erasure ended as deadlocked is tried again, this many times in all
_LETTERS_AT_ONCE = 16  # letters read at once to find those holding an erased result
MAX_SUBJECT_ID_CHARS = 64  # payloads.Subject's bound
# where a result row (RESULT_COLUMNS order) holds what the subject's erasure rule reads
_DEVICE, _SITE, _CAPTURED, _RECEIVED, _SUBJECT = (RESULT_COLUMNS.index(name) for name in (
    "device_id", "site", "captured_at", "received_at", "subject_id"))
# a dead letter's id and the measurement id and subject id its payload names (None: none)
LetterName = tuple[int, str | None, str | None]


@dataclass(frozen=True)
class Selector:
    """What an erasure removes: one subject's results (``kind`` "subject") or one result
    ("result"), named by ``value``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind} {escape_controls(self.value)}"  # a kiosk's free text


class ErasureMoment:
    """An erasure's time by the back office's clock, taken once (a retry after a deadlock
    keeps the first try's), and ``intent``, called with it before the transaction commits
    (the erasure journal's line); ``at``: a time given (an erasure applied again from the
    journal keeps its own)."""

    def __init__(self, at: str | None = None,
                 intent: Callable[[str], None] | None = None) -> None:
        self._at = at
        self._intent = intent

    @property
    def known(self) -> str | None:
        """The time where it is set already (given, or taken by an earlier try: its journal
        line written), else None."""
        return self._at

    def taken(self) -> str:
        """The time, the intent written first where this is its first use."""
        if self._at is None:
            self._at = iso_utc(utc_now())
            if self._intent is not None:
                self._intent(self._at)
        return self._at


@dataclass(frozen=True)
class Erased:
    """What one erasure removed (counts only) and its audit record's id and user."""

    erasure_id: int
    os_user: str
    results: int
    dead_letters: int
    model_reports: int = 0  # a retention run's (retention.py); an erasure keeps them


def subject_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a stored result's subject id (None: it can). The payload took
    any text up to its bound (a kiosk's free text: tabs, escapes, no-break spaces, joiners;
    it now refuses what draws nothing, but a store keeps what came before), so only what no
    stored id holds is refused: bytes the locale could not decode (argv's surrogate escapes;
    the store holds UTF-8), and the empty id, which names no person."""
    if not text or len(text) > MAX_SUBJECT_ID_CHARS:
        return f"a subject id has 1 to {MAX_SUBJECT_ID_CHARS} characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes that are not UTF-8 are in no stored subject id"
    return None


def result_can_have(measurement_id: str) -> bool:
    """Whether a stored result can have ``measurement_id`` (a UUIDv7 in lower case). A dead
    letter may name any identifier (a result refused for its id), so an id of another form
    selects letters only, and no tombstone is kept for it: no result with it is stored."""
    return re.fullmatch(MEASUREMENT_ID_PATTERN, measurement_id) is not None


def os_user() -> str:
    """The operating-system user running this (the audit's "who"): the name the system holds
    for the process's user id, not $LOGNAME or $USER, which anyone sets to any name
    (``USER=alice appliance results erase ...`` recorded alice); under sudo, root and the
    user sudo names. The uid when unnamed (a container's uid without a passwd entry). Bytes
    of a name that are not UTF-8 are written as ``\\xff`` escapes: the store takes only
    UTF-8 text."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
    by_sudo = os.environ.get("SUDO_USER") if uid == 0 else None  # set by sudo, for root only
    if by_sudo:
        name = f"{name} (sudo by {by_sudo[:64]})"
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def letter_names(payload: bytes) -> tuple[str | None, str | None]:
    """The measurement id and subject id a dead letter's payload names (None: none). A byte
    that is not UTF-8 elsewhere in it (a letter is often refused for one) hides neither: it
    is read as U+FFFD, so the letter still goes with the result or subject it holds. JSON
    nested too deep to decode names nothing either: one such letter (a hostile message kept
    as refused) ended every erasure in a RecursionError."""
    text = payload.decode("utf-8", "replace")
    try:
        data = safejson.loads(text)
    except ValueError:  # not JSON (or nested past the decoder): it names nothing a result could
        return None, None
    subject = data.get("subject") if isinstance(data, dict) else None
    subject_id = subject.get("subject_id") if isinstance(subject, dict) else None
    return (named_measurement_id(text.encode("utf-8")),
            subject_id if isinstance(subject_id, str) else None)


class ErasureWrites(PlacedCaptures):
    """``erase``, ``erasure_preview``, ``erasures`` (the audit) and ingest's ``_drop_erased``,
    mixed into ``Store``."""

    if TYPE_CHECKING:

        def _remove_letters(self, cur: Any, where: str, params: Sequence[Any]) -> None: ...
        def _add_to_letter_totals(self, cur: Any, letters: int,
                                  letter_bytes: int) -> tuple[int, int]: ...

    def erasure_preview(self, selector: Selector) -> tuple[int, int]:
        """How many results and dead letters ``erase`` would remove now; reads only."""
        where, params = _results_where(selector)
        rows = self._fetch(f"SELECT measurement_id FROM results WHERE {where}", params)
        ids = {str(row[0]) for row in rows}
        return len(ids), len(_matching(self._letter_names(self._conn.cursor(), 0), selector, ids))

    def erase(self, selector: Selector, user: str, moment: ErasureMoment | None = None, *,
              topic_prefix: str | None = None) -> Erased:
        """Remove the results ``selector`` names and the dead letters holding them or naming
        the subject, keep their ids as tombstones and record the erasure; one transaction.

        The letters are read before it (about 1 s at the default bounds, which every ingest
        batch would wait for under the write lock): a letter never changes once kept, so
        inside only those kept since are read, and one pruned meanwhile is not counted.

        On PostgreSQL an ingest batch that meets a late id conflict takes the totals row
        after its inserts, out of the lock order (store_writes.py), and the server may end
        the erasure as deadlocked with it: nothing of it was done, so it is tried again.

        ``moment``: its time (now, where not given: taken under the lock) and the journal line
        written before the commit (erasure_journal.py).

        ``topic_prefix``: the fleet's (``mqtt.topic_prefix``); with it, a removed letter kept
        on a kiosk's result topic records the result id it names for that kiosk to forget too
        (kiosk_forgets.py), as an erased result's row does: a result held or refused reached
        the back office only as a letter, and its kiosk keeps a copy all the same."""
        moment = moment or ErasureMoment()
        for _ in range(_DEADLOCK_ATTEMPTS - 1):
            try:
                return self._erase_once(selector, user, moment, topic_prefix)
            except storeerrors.DATABASE_ERRORS as exc:  # built here: SQLite loads no psycopg
                if not is_deadlock(exc):
                    raise
        return self._erase_once(selector, user, moment, topic_prefix)

    def _erase_once(self, selector: Selector, user: str, moment: ErasureMoment,
                    topic_prefix: str | None) -> Erased:
        """One try of ``erase``."""
        names = self._letter_names(self._conn.cursor(), 0)
        with self._transaction() as cur:
            held = self._add_to_letter_totals(cur, 0, 0)[0]  # the lock order: totals first
            if self.postgres:  # no insert commits between the delete and the tombstones
                cur.execute("LOCK TABLE results IN SHARE ROW EXCLUSIVE MODE")
            if (done := self._done_already(cur, selector, moment)) is not None:
                return done
            where, params = _results_where(selector)
            cur.execute(self._sql(f"DELETE FROM results WHERE {where} RETURNING measurement_id, "
                                  "site, device_id"), params)
            removed_rows = [(str(mid), str(site), str(device)) for mid, site, device
                            in cur.fetchall()]
            ids = {mid for mid, _, _ in removed_rows}
            names += self._letter_names(cur, names[-1][0] if names else 0)
            letters = _matching(names, selector, ids)
            for start in range(0, len(letters), _IN_CHUNK):
                chunk = [letter_id for letter_id, _ in letters[start : start + _IN_CHUNK]]
                if topic_prefix is not None:
                    removed_rows += self._letter_kiosks(cur, letters[start : start + _IN_CHUNK],
                                                        topic_prefix)
                self._remove_letters(cur, f"id IN ({','.join('?' * len(chunk))})", chunk)
            removed = held - self._add_to_letter_totals(cur, 0, 0)[0]
            cur.execute(self._sql(
                "INSERT INTO erasures (erased_at, os_user, kind, selector, results, dead_letters) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"),
                (moment.taken(), user, selector.kind, selector.value, len(ids), removed))
            erasure_id = int(cur.fetchone()[0])
            record_forgets(cur, self._sql, removed_rows, moment.taken())
            named = {mid for _, mid in letters if mid is not None}
            if selector.kind == "result":
                named.add(selector.value)
            cur.executemany(self._sql(
                "INSERT INTO erased_results (measurement_id, erasure_id) VALUES (?, ?) "
                "ON CONFLICT (measurement_id) DO NOTHING"),
                [(mid, erasure_id) for mid in sorted(ids | named) if result_can_have(mid)])
        return Erased(erasure_id, user, len(ids), removed)

    def _done_already(self, cur: Any, selector: Selector,
                      moment: ErasureMoment) -> Erased | None:
        """The store's erasure of ``selector`` at ``moment``'s time where the time was set
        before this try (a retry after a deadlock: its journal line is written; a line applied
        again) and the store holds it already, read under the erasure's locks; else None. A
        worker starting between a deadlocked try's rollback and its retry applies the line
        its store lacks (journal_start.py): the retry is then done, and a second audit row of
        the one erasure is not written."""
        if moment.known is None:
            return None
        cur.execute(self._sql(
            "SELECT id, os_user, results, dead_letters FROM erasures WHERE kind = ? AND "
            "selector = ? AND erased_at = ? ORDER BY id LIMIT 1"),
            (selector.kind, selector.value, moment.known))
        row = cur.fetchone()
        return None if row is None else Erased(int(row[0]), str(row[1]), int(row[2]),
                                               int(row[3]))

    def erasures(self, limit: int) -> tuple[list[tuple[Any, ...]], int]:
        """The newest ``limit`` audit records (erased_at, os_user, kind, selector, results,
        dead_letters, model_reports), newest first, and how many there are."""
        rows = self._fetch("SELECT erased_at, os_user, kind, selector, results, dead_letters, "
                           "model_reports FROM erasures ORDER BY id DESC LIMIT ?", (limit,))
        return rows, int(self._fetch("SELECT COUNT(*) FROM erasures")[0][0])

    def erasure_mark(self) -> int:
        """The newest erasure's id (0: none): cached figures computed before it changed are
        stale (the console's cohort cache)."""
        return int(self._fetch("SELECT COALESCE(MAX(id), 0) FROM erasures")[0][0])

    def _letter_kiosks(self, cur: Any, letters: Sequence[tuple[int, str | None]],
                       topic_prefix: str) -> list[tuple[str, str, str]]:
        """(measurement id, site, device id) of each of ``letters`` (id, the measurement id it
        names) kept on a kiosk's result topic under ``topic_prefix`` and naming an id."""
        named = {letter_id: mid for letter_id, mid in letters if mid is not None}
        if not named:
            return []
        cur.execute(self._sql(f"SELECT id, topic FROM dead_letters WHERE id IN "
                              f"({','.join('?' * len(named))})"), list(named))
        found = []
        for letter_id, topic in cur.fetchall():
            where = parse_device_topic(topic_prefix, str(topic))
            if where is not None and where[2] == "result":
                found.append((named[int(letter_id)], where[0], where[1]))
        return found

    def _letter_names(self, cur: Any, after: int) -> list[LetterName]:
        """What each dead letter kept after id ``after`` names, read a few at a time."""
        found: list[LetterName] = []
        while True:
            cur.execute(self._sql("SELECT id, payload FROM dead_letters WHERE id > ? ORDER BY id "
                                  "LIMIT ?"), (after, _LETTERS_AT_ONCE))
            page = cur.fetchall()
            found += [(int(letter_id), *letter_names(bytes(payload)))
                      for letter_id, payload in page]
            if len(page) < _LETTERS_AT_ONCE:
                return found
            after = int(page[-1][0])

    def _drop_erased(self, cur: Any, stored: Sequence[tuple[Any, ...]], *,
                     released: bool = False) -> tuple[set[str], list[HeldResult]]:
        """Remove again, in the ingest transaction that just stored them, the results among
        ``stored`` (rows in RESULT_COLUMNS order) that were erased: a tombstoned id, one
        whose placed capture lies before the newest retention cut-off (retention.py,
        placed_capture.py), or a result of an erased subject captured before its erasure by
        the back office's clock; returns their ids
        (confirmed to the kiosk, not kept), and the subject's results whose capture cannot be
        told before or after it, removed too, with their reasons (kept as dead letters).
        ``released``: an operator releases these (erasure_release.py), so an erased subject's
        are stored; a tombstone or the retention cut-off still hold."""
        dropped: set[str] = set()
        for start in range(0, len(stored), _IN_CHUNK):
            chunk = [row[0] for row in stored[start : start + _IN_CHUNK]]
            cur.execute(self._sql(
                f"DELETE FROM results WHERE measurement_id IN ({','.join('?' * len(chunk))}) "
                "AND (measurement_id IN (SELECT measurement_id FROM erased_results) OR "
                "results.placed_at < "
                "(SELECT MAX(selector) FROM erasures WHERE kind = 'retention')) "
                "RETURNING measurement_id"), chunk)
            dropped.update(str(row[0]) for row in cur.fetchall())
        judged_rows = [] if released else self._judged_subjects(
            cur, [row for row in stored if row[0] not in dropped])
        held = [HeldResult(row, held_reason(row[0], erasure, why))
                for row, verdict, erasure, why in judged_rows if verdict == "held"]
        gone = [row[0] for row, verdict, _, _ in judged_rows if verdict != "after"]
        for start in range(0, len(gone), _IN_CHUNK):
            chunk = gone[start : start + _IN_CHUNK]
            cur.execute(self._sql("DELETE FROM results WHERE measurement_id IN "
                                  f"({','.join('?' * len(chunk))})"), chunk)
        dropped.update(row[0] for row, verdict, _, _ in judged_rows if verdict == "before")
        return dropped, held

    def _judged_subjects(self, cur: Any, rows: Sequence[tuple[Any, ...]]
                         ) -> list[tuple[tuple[Any, ...], Verdict, Erasure, str]]:
        """Each of ``rows`` whose subject was erased, with whether it was captured before or
        after the subject's newest erasure or is held (erasure_clock.py), the erasure, and why."""
        erasures = self._subject_erasures(cur, {row[_SUBJECT] for row in rows
                                                if row[_SUBJECT] is not None})
        rows = [row for row in rows if row[_SUBJECT] in erasures]
        readings = self._kiosk_readings(cur, {row[_DEVICE] for row in rows})
        releases = self._releases(cur, [str(row[0]) for row in rows])
        found: list[tuple[tuple[Any, ...], Verdict, Erasure, str]] = []
        for row in rows:
            erasure = erasures[row[_SUBJECT]]
            if releases.get(str(row[0]), erasure.erased_at) > erasure.erased_at:
                found.append((row, "after", erasure, "released after the erasure"))
                continue
            reading = readings.get((row[_SITE], row[_DEVICE]))
            verdict, why = judged(_moment(row[_CAPTURED]), _moment(row[_RECEIVED]), erasure,
                                  None if reading is None else reading.clock)
            found.append((row, verdict, erasure, why))
        return found

    def _releases(self, cur: Any, measurement_ids: Sequence[str]) -> dict[str, datetime]:
        """The newest release (erasure_release.py) of each of ``measurement_ids`` released: one
        released after its subject's newest erasure is stored when it comes again (a store
        restored from a backup taken before the release, the journal's release applied
        again, gets it from the kiosk's resend; erasure_reapply.py)."""
        newest: dict[str, datetime] = {}
        for start in range(0, len(measurement_ids), _IN_CHUNK):
            chunk = measurement_ids[start : start + _IN_CHUNK]
            cur.execute(self._sql(
                "SELECT selector, erased_at FROM erasures WHERE kind = 'release' AND "
                f"selector IN ({','.join('?' * len(chunk))})"), chunk)
            for measurement_id, released_at in cur.fetchall():
                moment = _moment(released_at)
                newest[measurement_id] = max(moment, newest.get(measurement_id, moment))
        return newest

    def _subject_erasures(self, cur: Any, subjects: set[str]) -> dict[str, Erasure]:
        """The newest erasure of each of ``subjects`` erased."""
        newest: dict[str, Erasure] = {}
        names = sorted(subjects)
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            cur.execute(self._sql(
                "SELECT selector, erased_at, id FROM erasures WHERE kind = 'subject' AND "
                f"selector IN ({','.join('?' * len(chunk))})"), chunk)
            for subject, erased_at, erasure_id in cur.fetchall():
                erasure = Erasure(int(erasure_id), _moment(erased_at))
                if subject not in newest or erasure.erased_at > newest[subject].erased_at:
                    newest[subject] = erasure
        return newest


def _moment(stored: str) -> datetime:
    """A stored UTC time (schema.iso_utc's form) as a datetime."""
    return datetime.fromisoformat(stored)


def _results_where(selector: Selector) -> tuple[str, tuple[str]]:
    column = "subject_id" if selector.kind == "subject" else "measurement_id"
    return f"{column} = ?", (selector.value,)


def _matching(names: Sequence[LetterName], selector: Selector,
              ids: set[str]) -> list[tuple[int, str | None]]:
    """(id, measurement id) of the letters holding a result of ``ids``, the selected result
    or one of the selected subject."""
    return [(letter_id, measurement_id) for letter_id, measurement_id, subject_id in names
            if measurement_id in ids or _selected(selector, measurement_id, subject_id)]


def _selected(selector: Selector, measurement_id: str | None, subject_id: str | None) -> bool:
    if selector.kind == "subject":
        return subject_id == selector.value
    return measurement_id == selector.value

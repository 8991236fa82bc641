"""Reading what a damaged outbox still holds: its rows, how many are unreadable, its count.

Rows are read a window of seqs at a time and handed on (``keep``) window by window, so a repair
holds at most one window in memory whatever the outbox holds (100,000 results with thumbnails
are gigabytes); a window that cannot be read is read one seq at a time, so one bad page loses
only the rows on it. A row that reads but holds what no outbox row can (a NULL or a number
where the id, topic or payload belongs: a garbled record) is unreadable too; one whose commit
time alone is garbled is kept, aged from the repair. A row's confirmation marks (when the back
office confirmed it, and first confirmed it) are read with it, so a result the back office
confirmed stays kept, and one sent again on request is still never counted lost; a garbled
confirmation reads as none (the result waits and is sent again: the back office stores each
measurement id once), a garbled first confirmation as its confirmation (its window then runs
from the later time, as an outbox of the release before the column has it). Rows that cannot
be read are counted, also from the table's or its index's own counts.

A damaged first page (the file header, or the schema that says where each table starts) hides
every row although the pages holding them are intact: the rows are then read from a copy whose
first page is rebuilt from a fresh outbox of the same page size (appliance/transport/
outbox_header.py), since an outbox's tables always start on the same pages.

Whether a file at a repaired copy's name is an outbox at all is told the same way: its schema
names the outbox table, or, with its first page rebuilt, a result reads from it (looked for
as the rows are read here, by seq past a bad page, in its first windows) or the outbox's index
counts some. A rebuilt first page names the table over whatever pages follow, so the table
alone says nothing there; garbage yields no result and no index. A file that cannot be read
now (no room for the rebuilt copy, an I/O error) is taken for an outbox: that it is not is
never guessed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from appliance.transport.outbox_file import (
    CONFIRMED_COLUMN,
    FIRST_CONFIRMED_COLUMN,
    OutboxMessage,
    RecoveredRow,
    is_corrupt,
)
from appliance.transport.outbox_header import HEADER_BYTES, page_sizes, with_rebuilt_first_page

log = logging.getLogger(__name__)
MAX_PROBED_SEQS = 1_000_000  # row-by-row salvage never walks more seqs than this
WINDOW_SEQS = 200  # seqs read (and held in memory) at once
WINDOWS_LOOKED_IN = 10  # windows read, at most, to find one result in a file at a copy's name
Keep = Callable[[Sequence[RecoveredRow]], object]
_COLUMNS = "seq, measurement_id, topic, payload, created_at_s"
# the confirmation marks read with each row: both, then the first alone (a migration killed
# between its two steps), then none (an outbox of a release before them)
_MARKS = (f"{CONFIRMED_COLUMN}, {FIRST_CONFIRMED_COLUMN}", f"{CONFIRMED_COLUMN}, NULL",
          "NULL, NULL")


class Salvaged(NamedTuple):
    """What a salvage of a damaged outbox found: rows handed on, known rows that could not be
    read, and the last seq the outbox had committed (its sequence, else its highest row)."""

    kept: int
    unreadable: int
    last_seq: int


def dropped_before(damaged: Path) -> int:
    """The damaged outbox's own ``dropped`` counter (0 where it cannot be read)."""
    counted = _dropped_in_file(damaged)
    if counted is None:
        counted = with_rebuilt_first_page(damaged, _dropped_in_file)
    return counted or 0


def _dropped_in_file(damaged: Path) -> int | None:
    try:
        db = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return max(0, int(row[0]))
    except (sqlite3.Error, TypeError, ValueError):
        return None
    finally:
        db.close()


def is_an_outbox(path: Path) -> bool:
    """Whether the file at ``path`` is an outbox, however damaged: False only where it was
    read and no outbox was found in it, even with its first page rebuilt."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if db.execute("SELECT 1 FROM sqlite_schema WHERE name = 'outbox'").fetchone():
                return True
        finally:
            db.close()
    except sqlite3.Error as exc:
        if not is_corrupt(exc):  # it could not be read now: it may well be one
            return True
    return _a_result_reads_rebuilt(path)


def _a_result_reads_rebuilt(path: Path) -> bool:
    """Whether a result reads from ``path`` with its first page rebuilt (True where that could
    not be tried: no room for the rebuilt copy, say)."""
    tried: list[Path] = []

    def a_result(copy: Path) -> bool | None:
        tried.append(copy)
        return _a_result_reads(copy) or _indexed_results(copy) > 0 or None

    try:
        if with_rebuilt_first_page(path, a_result):
            return True
        with path.open("rb") as handle:
            header = handle.read(HEADER_BYTES)
        return not tried and bool(page_sizes(header, path.stat().st_size))
    except (OSError, sqlite3.Error):  # the rebuilt copy could not be made: no room, say
        return True


def _a_result_reads(path: Path) -> bool:
    """Whether a result reads from the outbox table in ``path``, looked for as salvage reads
    rows (a window of seqs at a time, seq by seq past a bad page) in its first windows."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        low, high = _seq_range(db)
        probes = [WINDOW_SEQS * WINDOWS_LOOKED_IN]
        starts = range(low, high + 1, WINDOW_SEQS)[:WINDOWS_LOOKED_IN]
        columns = _columns(db)
        return any(_window(db, columns, start, min(high, start + WINDOW_SEQS - 1), probes)[0]
                   for start in starts)
    finally:
        db.close()


def _indexed_results(path: Path) -> int:
    """How many results the outbox's index in ``path`` says its table holds (0 where it cannot
    be read): a copy whose table's first pages are garbled still shows its rows there."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        sql = "SELECT COUNT(*) FROM outbox INDEXED BY outbox_measurement_id"
        return int(db.execute(sql).fetchone()[0])
    except (sqlite3.Error, TypeError, ValueError):
        return 0
    finally:
        db.close()


def salvage(damaged: Path, keep: Keep) -> Salvaged:
    """Hand the readable rows of a damaged outbox to ``keep``, oldest first, a window at a
    time; returns what it found (rows handed on, known rows unreadable, last seq committed)."""
    found = _salvage_file(damaged, keep)
    if found is None:  # no outbox table to be found: the first page is what is damaged
        found = with_rebuilt_first_page(damaged, lambda copy: _salvage_file(copy, keep))
    if found is None:
        log.error(
            "%s: no outbox table can be found in it, even with its first page rebuilt; how many "
            "results it held is unknown (the file is kept for inspection)", damaged,
        )
        return Salvaged(0, 0, 0)
    return found


def _salvage_file(damaged: Path, keep: Keep) -> Salvaged | None:
    """What a salvage of the file found, or None when it shows no outbox table."""
    try:
        db = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        if not _has_outbox_table(db):
            return None
        low, high = _seq_range(db)
        kept = unreadable = 0
        probes = [MAX_PROBED_SEQS]  # per-seq reads left
        columns = _columns(db)
        for start in range(low, high + 1, WINDOW_SEQS):
            rows, failed = _window(db, columns, start, min(high, start + WINDOW_SEQS - 1),
                                   probes)
            if rows:
                keep(rows)
            kept, unreadable = kept + len(rows), unreadable + failed
            del rows  # one window in memory at a time, not this one and the next
        known = _known_rows(db)
        if known is None and not kept and not unreadable:
            return None  # the table is named but none of it can be read: not an outbox's page
        unreadable = max(unreadable, (known or 0) - kept)
        # seqs are distinct and positive: the last is at least the count of known rows
        return Salvaged(kept, unreadable, _last_seq(db, max(high, kept + unreadable)))
    finally:
        db.close()


def _columns(db: sqlite3.Connection) -> str:
    """The columns to read of each row: its message's, and the confirmation marks the table
    has."""
    for marks in _MARKS[:-1]:
        with contextlib.suppress(sqlite3.Error):
            db.execute(f"SELECT {marks} FROM outbox LIMIT 0")
            return f"{_COLUMNS}, {marks}"
    return f"{_COLUMNS}, {_MARKS[-1]}"


def _window(
    db: sqlite3.Connection, columns: str, first: int, last: int, probes: list[int]
) -> tuple[list[RecoveredRow], int]:
    """The rows with seqs ``first``..``last`` (``columns`` of each), and how many seqs failed;
    one seq at a time (while ``probes`` lasts) when the window cannot be read at once."""
    with contextlib.suppress(sqlite3.Error):
        rows = db.execute(
            f"SELECT {columns} FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        ).fetchall()
        messages = [m for m in map(_message, rows) if m is not None]
        return messages, len(rows) - len(messages)
    found: list[RecoveredRow] = []
    failed = 0
    for seq in range(first, last + 1):
        if probes[0] <= 0:
            break
        probes[0] -= 1
        try:
            row = db.execute(f"SELECT {columns} FROM outbox WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error:
            failed += 1
            continue
        if row is not None:
            message = _message(row)
            if message is None:
                failed += 1
            else:
                found.append(message)
    return found, failed


def _has_outbox_table(db: sqlite3.Connection) -> bool:
    try:
        named = db.execute("SELECT 1 FROM sqlite_schema WHERE name = 'outbox'").fetchone()
    except sqlite3.Error:
        return False
    return named is not None


def _known_rows(db: sqlite3.Connection) -> int | None:
    """How many rows the damaged table, or its index, still says it holds (None: neither can).

    A page whose cells are garbled may answer a lookup by seq with nothing rather than an
    error, so the rows on it are missed without a failed probe; the counts still show them.
    """
    counts: list[int] = []
    for sql in (
        "SELECT COUNT(*) FROM outbox NOT INDEXED",
        "SELECT COUNT(*) FROM outbox INDEXED BY outbox_measurement_id",
    ):
        with contextlib.suppress(sqlite3.Error, TypeError):
            counts.append(int(db.execute(sql).fetchone()[0]))
    return max(counts, default=None)


def _seq_range(db: sqlite3.Connection) -> tuple[int, int]:
    for sql in (
        "SELECT MIN(seq), MAX(seq) FROM outbox",
        "SELECT 1, seq FROM sqlite_sequence WHERE name = 'outbox'",
    ):
        with contextlib.suppress(sqlite3.Error, TypeError):
            low, high = db.execute(sql).fetchone()
            return int(low), int(high)
    return 1, 0


def _last_seq(db: sqlite3.Connection, highest_row: int) -> int:
    """The last seq the outbox committed: its sequence, which rows acked since do not lower
    (``highest_row`` where it cannot be read)."""
    with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return max(highest_row, int(row[0]))
    return highest_row


def _message(row: tuple[Any, ...]) -> RecoveredRow | None:
    """The row as a recovered one, or None when its record is garbled past use."""
    seq, measurement_id, topic, payload, created_at_s, confirmed, first_confirmed = row
    texts = (measurement_id, topic)
    if not all(isinstance(text, str) and text for text in texts) or not isinstance(payload, bytes):
        return None
    if not isinstance(created_at_s, int | float) or not math.isfinite(created_at_s):
        created_at_s = time.time()  # the result is sound; only its age is lost
    message = OutboxMessage(int(seq), measurement_id, topic, payload, float(created_at_s))
    confirmed_at_s, first_at_s = _time_or_none(confirmed), _time_or_none(first_confirmed)
    if confirmed_at_s is not None:  # its window runs from a time it has, never from none
        first_at_s = confirmed_at_s if first_at_s is None else min(first_at_s, confirmed_at_s)
    return RecoveredRow(message, confirmed_at_s, first_at_s)


def _time_or_none(value: Any) -> float | None:
    """A confirmation time as read, or None where there is none or it is garbled."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None

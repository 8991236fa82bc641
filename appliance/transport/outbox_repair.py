"""Opening the outbox so that a damaged file never keeps a kiosk down.

A corrupt outbox (power cut on a bad SD card, a file truncated by hand) is moved aside with
its WAL, a fresh outbox is created in its place, and every row that can still be read from
the damaged copy is committed into the fresh one with its measurement id and age, so it is
sent again. Rows that cannot be read are counted as dropped, and so are the ones the damaged
outbox had already counted (its ``dropped`` counter, where it can be read), so the device's
``dropped`` never goes down with a repair. The daemon carries on either way;
the damaged copy stays next to it (``outbox.sqlite3.corrupt-<unix time>``) for inspection.
A repair that cannot finish (no room for the recovered rows) is undone: the fresh outbox, which
holds nothing yet, is removed and the damaged file put back, so the next start tries again
rather than opening an empty outbox and leaving the rows behind.

A damaged first page (the file header, or the schema that says where each table starts) hides
every row, although the pages holding them are intact: the rows are then read from a copy whose
first page is rebuilt from a fresh outbox of the same page size (appliance/transport/
outbox_header.py), since an outbox's tables always start on the same pages.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from appliance.diskspace import full_disk_hint
from appliance.transport.outbox import Outbox, OutboxCorruptError, OutboxError, OutboxMessage
from appliance.transport.outbox_header import with_rebuilt_first_page

log = logging.getLogger(__name__)
MAX_PROBED_SEQS = 1_000_000  # row-by-row salvage never walks more seqs than this
_COLUMNS = "seq, measurement_id, topic, payload, created_at_s"


def open_outbox(path: Path, **bounds: Any) -> Outbox:
    """The outbox at ``path``; a damaged one is moved aside and its readable rows recovered."""
    try:
        return Outbox(path, **bounds)
    except OutboxCorruptError as exc:
        log.error("%s; moving it aside and recovering what can be read", exc)
    aside = move_aside(path)
    try:
        outbox = Outbox(path, **bounds)
    except OutboxError:
        put_back(aside, path)
        raise
    rows, lost = salvage(aside)
    try:
        outbox.add_recovered(rows)
    except OutboxError as exc:
        outbox.close()
        put_back(aside, path)
        raise OutboxError(f"{exc}; the damaged outbox is back in place with its {len(rows)} "
                          f"readable result(s), and the repair is tried again at the next start"
                          f"{': ' + full if (full := full_disk_hint(path)) else ''}") from exc
    earlier = dropped_before(aside)
    if lost + earlier:
        outbox.count_lost(lost + earlier)
        outbox.writable()  # save the lost count now
    log.error(
        "outbox %s recreated: %d result(s) recovered from %s, %d unreadable (counted dropped, "
        "with the %d it had counted before)", path, len(rows), aside, lost, earlier,
    )
    return outbox


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


def salvage(damaged: Path) -> tuple[list[OutboxMessage], int]:
    """Readable rows of a damaged outbox, and how many known rows could not be read."""
    found = _salvage_file(damaged)
    if found is None:  # no outbox table to be found: the first page is what is damaged
        found = with_rebuilt_first_page(damaged, _salvage_file)
    if found is None:
        log.error(
            "%s: no outbox table can be found in it, even with its first page rebuilt; how many "
            "results it held is unknown (the file is kept for inspection)", damaged,
        )
        return [], 0
    return found


def put_back(aside: Path, path: Path) -> None:
    """Undo ``move_aside``: the fresh outbox at ``path`` holds nothing and gives way."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        moved = aside.with_name(aside.name + suffix)
        if moved.exists():
            moved.rename(path.with_name(path.name + suffix))
    log.error("%s: the repair could not finish; the damaged outbox is back in place", path)


def move_aside(path: Path) -> Path:
    """Rename the damaged file (and its WAL and shared-memory files) out of the way.

    The name is one no earlier damaged copy has: a rename replaces what it lands on, and two
    repairs within a second (on the way out, then at the restart) must both be kept."""
    stem = f"{path.name}.corrupt-{int(time.time())}"
    aside, tries = path.with_name(stem), 1
    while any(aside.with_name(aside.name + s).exists() for s in ("", "-wal", "-shm")):
        tries += 1
        aside = path.with_name(f"{stem}.{tries}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    return aside


def _salvage_file(damaged: Path) -> tuple[list[OutboxMessage], int] | None:
    """Rows and unreadable count of the file, or None when it shows no outbox table at all."""
    try:
        db = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        if not _has_outbox_table(db):
            return None
        with contextlib.suppress(sqlite3.Error):
            rows = db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq").fetchall()
            return [_message(row) for row in rows], 0
        found, unreadable = _row_by_row(db)
        known = _known_rows(db)
        if known is None and not found and not unreadable:
            return None  # the table is named but none of it can be read: not an outbox's page
        return found, max(unreadable, (known or 0) - len(found))
    finally:
        db.close()


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


def _row_by_row(db: sqlite3.Connection) -> tuple[list[OutboxMessage], int]:
    """Probe each seq on its own, so one bad page loses only the rows on it."""
    low, high = _seq_range(db)
    found: list[OutboxMessage] = []
    unreadable = 0
    for seq in range(low, min(high, low + MAX_PROBED_SEQS - 1) + 1):
        try:
            row = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE seq = ?", (seq,)).fetchone()
        except sqlite3.Error:
            unreadable += 1
            continue
        if row is not None:
            found.append(_message(row))
    return found, unreadable


def _seq_range(db: sqlite3.Connection) -> tuple[int, int]:
    for sql in (
        "SELECT MIN(seq), MAX(seq) FROM outbox",
        "SELECT 1, seq FROM sqlite_sequence WHERE name = 'outbox'",
    ):
        with contextlib.suppress(sqlite3.Error, TypeError):
            low, high = db.execute(sql).fetchone()
            return int(low), int(high)
    return 1, 0


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    seq, measurement_id, topic, payload, created_at_s = row
    return OutboxMessage(int(seq), str(measurement_id), str(topic), bytes(payload), created_at_s)

"""Confirmed results the outbox keeps for a while: marked, never sent on their own, sent again
on request.

The back office confirms a result once it has committed it (docs/delivery.md); an outbox that
deleted it then held no copy anywhere but the store, so a store restored from the night's backup
had lost for good what it confirmed since. With ``edge.keep_confirmed_h`` the outbox marks such
a row (``confirmed_at_s``: the time of the back office's ack, by its clock, which the resend's
time is on too; not this kiosk's clock, which may lag or jump) instead of deleting it: every
read of what waits passes it by, the bounds of what waits (row count, age, the drop-oldest
policy) neither count it nor take it, and it is deleted once its window has passed, or as
the first confirmed of more kept rows than the outbox's row limit, or all at once when the disk
runs low (they are delivered; the room is for results that wait). The window runs from the
row's first confirmation (``first_confirmed_at_s``, the earliest of its acks' times): a row sent
again on request and confirmed again keeps it, so asking for a resend every window does not keep
a kiosk's results (personal data) for good. ``reopen`` makes the rows confirmed
since a time wait again, so the link sends them again (appliance/transport/resend.py says when);
the back office stores each measurement id once. ``forget`` deletes the rows of results the
back office erased (appliance/transport/forget.py). Each function runs in the caller's transaction
(appliance/transport/outbox.py holds the lock).

A row sent again on request waits as a new one does, but the back office confirmed it once, so
it is never counted lost: no age limit takes it (the window does, uncounted, as a kept one), and
where the drop-oldest policy needs room such rows go first, uncounted (``ONCE_CONFIRMED``).
"""

from __future__ import annotations

import sqlite3

from appliance.transport.outbox_file import CONFIRMED_COLUMN, FIRST_CONFIRMED_COLUMN

_KEPT = f"{CONFIRMED_COLUMN} IS NOT NULL"
ONCE_CONFIRMED = f"{FIRST_CONFIRMED_COLUMN} IS NOT NULL"  # kept, or sent again on request


def confirm(db: sqlite3.Connection, ids: list[tuple[str]], now_s: float | None) -> list[int]:
    """Mark the waiting rows of these measurement ids confirmed at ``now_s`` (None: delete
    them, nothing kept); their seqs. A row confirmed before (sent again on request) keeps the
    earlier of its first confirmation and ``now_s`` as its first: its window does not start anew."""
    seqs: list[int] = []
    for (mid,) in ids:
        if now_s is None:
            rows = db.execute(f"DELETE FROM outbox WHERE measurement_id = ? AND NOT {_KEPT} "
                              "RETURNING seq", (mid,)).fetchall()
        else:
            rows = db.execute(
                f"UPDATE outbox SET {CONFIRMED_COLUMN} = ?1, {FIRST_CONFIRMED_COLUMN} = "
                f"COALESCE(MIN({FIRST_CONFIRMED_COLUMN}, ?1), ?1) WHERE measurement_id = ?2 "
                f"AND NOT {_KEPT} RETURNING seq", (now_s, mid)).fetchall()
        seqs += [int(row[0]) for row in rows]
    return seqs


def trim(db: sqlite3.Connection, most: int) -> int:
    """Delete the kept rows first confirmed first beyond ``most``; how many went."""
    return int(db.execute(
        f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE {_KEPT} "
        f"ORDER BY {FIRST_CONFIRMED_COLUMN} DESC LIMIT -1 OFFSET ?)", (most,)).rowcount)


def expire(db: sqlite3.Connection, before_s: float) -> int:
    """Delete the kept rows first confirmed before ``before_s`` (their window has passed); how
    many went."""
    return int(db.execute(f"DELETE FROM outbox WHERE {FIRST_CONFIRMED_COLUMN} < ? AND {_KEPT}",
                          (before_s,)).rowcount)


def expire_resent(db: sqlite3.Connection, before_s: float) -> int:
    """Delete the rows waiting to be sent again whose window (from their first confirmation)
    passed before ``before_s``: delivered once, so not lost; how many went."""
    return int(db.execute(f"DELETE FROM outbox WHERE {FIRST_CONFIRMED_COLUMN} < ? AND NOT "
                          f"{_KEPT}", (before_s,)).rowcount)


def drop_resent(db: sqlite3.Connection, most: int) -> int:
    """Delete at most ``most`` of the rows waiting to be sent again, oldest first (room for
    results never delivered, which the drop-oldest policy would drop and count lost); how many
    went."""
    return int(db.execute(
        f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE {ONCE_CONFIRMED} AND "
        f"NOT {_KEPT} ORDER BY seq LIMIT ?)", (most,)).rowcount)


def any_resent(db: sqlite3.Connection) -> bool:
    """Whether any row waits to be sent again on request (an index read)."""
    return db.execute(f"SELECT 1 FROM outbox WHERE {ONCE_CONFIRMED} AND NOT {_KEPT} "
                      "LIMIT 1").fetchone() is not None


def free(db: sqlite3.Connection) -> int:
    """Delete every kept row (room for waiting results on a disk running low); how many went."""
    return int(db.execute(f"DELETE FROM outbox WHERE {_KEPT}").rowcount)


def reopen(db: sqlite3.Connection, since_s: float) -> list[int]:
    """Have the rows confirmed at or after ``since_s`` wait again; their seqs, oldest first."""
    rows = db.execute(f"UPDATE outbox SET {CONFIRMED_COLUMN} = NULL WHERE {_KEPT} AND "
                      f"{CONFIRMED_COLUMN} >= ? RETURNING seq", (since_s,)).fetchall()
    return sorted(int(row[0]) for row in rows)


def forget(db: sqlite3.Connection, ids: list[str]) -> tuple[int, int]:
    """Delete the rows of these measurement ids the back office confirmed (kept, or waiting to
    be sent again on request): it erased them; how many kept and how many waiting went. A row
    it never confirmed stays: it is to be delivered."""
    kept = waiting = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = db.execute(
            f"DELETE FROM outbox WHERE measurement_id IN ({','.join('?' * len(chunk))}) AND "
            f"{ONCE_CONFIRMED} RETURNING {_KEPT}", chunk).fetchall()
        kept += sum(1 for (was_kept,) in rows if was_kept)
        waiting += sum(1 for (was_kept,) in rows if not was_kept)
    return kept, waiting


def count(db: sqlite3.Connection) -> int:
    """How many confirmed rows are kept."""
    return int(db.execute(f"SELECT COUNT(*) FROM outbox WHERE {_KEPT}").fetchone()[0])

"""The outbox file: its tables and rows, opening and checking it, the side files kept beside it,
and the errors of each; the outbox itself (appliance/transport/outbox.py) raises only these.

A disk too full to take the ``-shm`` file that WAL mode keeps its index in does not keep the
outbox shut (appliance/transport/walopen.py), so a kiosk started on a full disk sends what waits;
a new outbox that a full disk cannot take (no file yet, or an empty one) stands in memory, empty
and refusing writes, until its file can be made: the kiosk starts with measuring paused.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.diskspace import read_only_hint
from appliance.transport import highwater, walopen
from appliance.transport.losttally import LostTally

log = logging.getLogger("appliance.transport.outbox")  # the outbox's journal name, as before

OUTBOX_SCHEMA = (  # the tables in creation order: their root pages follow it
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "measurement_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, "
    "created_at_s REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0)",
    "CREATE INDEX IF NOT EXISTS outbox_measurement_id ON outbox (measurement_id)",
)
# when the back office confirmed a row (its ack's time, by its clock; NULL: it waits). Added by
# ``migrate`` to the table ``OUTBOX_SCHEMA`` makes, so an outbox of an earlier release and a new
# one hold the same schema, their tables on the same pages (appliance/transport/outbox_header.py)
CONFIRMED_COLUMN = "confirmed_at_s"
# when the back office first confirmed a row (the earliest of its acks' times; NULL: never). A
# resend's ack confirms a row again but never moves this: the keeping window runs from it. Added
# by ``migrate`` after ``CONFIRMED_COLUMN``, as that one is
FIRST_CONFIRMED_COLUMN = "first_confirmed_at_s"


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written; the message names the file."""


class OutboxFullError(OutboxError):
    """The outbox is at its row limit and its policy is ``refuse_new``."""


class OutboxWriteError(OutboxError):
    """A write failed (disk full, I/O error); nothing of it was kept."""


class OutboxCorruptError(OutboxError):
    """The outbox file is damaged (not a database, or malformed pages)."""


_CORRUPT_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (not a full disk or a busy lock)."""
    return getattr(exc, "sqlite_errorname", "") in _CORRUPT_CODES


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message, in commit order (``seq``)."""

    seq: int
    measurement_id: str
    topic: str
    payload: bytes
    created_at_s: float


@dataclass(frozen=True)
class RecoveredRow:
    """A row read from a damaged outbox: its message and, where they could be read, when the
    back office confirmed it (None: it waits) and first confirmed it (None: never)."""

    message: OutboxMessage
    confirmed_at_s: float | None = None
    first_confirmed_at_s: float | None = None


def open_checked(path: Path) -> tuple[sqlite3.Connection, int]:
    """The outbox file at ``path``, opened and checked, its tables made (closed again on
    failure), and how many results wait in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = walopen.open_wal(path)
    try:
        for statement in OUTBOX_SCHEMA:
            db.execute(statement)
        migrate(db)
        check = str(db.execute("PRAGMA quick_check").fetchone()[0])
        if check != "ok":
            raise OutboxCorruptError(f"{path}: the outbox file is damaged ({check[:200]})")
        depth = int(db.execute(
            f"SELECT COUNT(*) FROM outbox WHERE {CONFIRMED_COLUMN} IS NULL").fetchone()[0])
    except BaseException:
        db.close()
        raise
    return db, depth


def stand_in() -> sqlite3.Connection:
    """An empty outbox in memory, for a new outbox whose file a full disk cannot take yet."""
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    for statement in OUTBOX_SCHEMA:
        db.execute(statement)
    migrate(db)
    return db


def migrate(db: sqlite3.Connection) -> None:
    """Give an outbox of an earlier release the columns that mark a row confirmed, and the
    indexes of the confirmed rows (so the minute's expiry and a resend read those only, not every
    payload before the column). Each step a transaction of its own: a kill leaves the file as it
    was, or with the first column and neither index yet (made at the next opening); every row it
    held waits, as it did, and a row it kept keeps its window: its first confirmation is its
    confirmation, written with the column in one transaction."""
    add_confirmation_columns(db)
    for column in (CONFIRMED_COLUMN, FIRST_CONFIRMED_COLUMN):
        db.execute(f"CREATE INDEX IF NOT EXISTS outbox_{column} ON outbox ({column}) "
                   f"WHERE {column} IS NOT NULL")


def add_confirmation_columns(db: sqlite3.Connection) -> None:
    """The columns that mark a row confirmed, added to the table ``OUTBOX_SCHEMA`` makes where
    it lacks them (``migrate``; and the template of a damaged first page, outbox_header.py)."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(outbox)")}
    if CONFIRMED_COLUMN not in columns:
        db.execute(f"ALTER TABLE outbox ADD COLUMN {CONFIRMED_COLUMN} REAL")
    if FIRST_CONFIRMED_COLUMN not in columns:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {FIRST_CONFIRMED_COLUMN} REAL")
            db.execute(f"UPDATE outbox SET {FIRST_CONFIRMED_COLUMN} = {CONFIRMED_COLUMN} "
                       f"WHERE {CONFIRMED_COLUMN} IS NOT NULL")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def lost_tally(path: Path) -> LostTally | None:
    """The tally of lost results beside the outbox at ``path``; None, said in the journal,
    when it cannot be kept (refused commits are then counted in memory only)."""
    try:
        return LostTally(path.with_name(path.name + ".lost"))
    except OSError as exc:
        log.warning("%s: its tally of lost results cannot be kept (%s), so results lost to a "
                    "refused commit are counted in memory only", path, exc)
        return None


def high_water(path: Path) -> highwater.HighWater | None:
    """The high-water mark beside the outbox at ``path``; None, said in the journal, when it
    cannot be kept (a lost outbox then goes unnoticed)."""
    try:
        return highwater.HighWater(path)
    except OSError as exc:
        log.warning("%s: its high-water mark cannot be kept (%s), so a loss of its rows would "
                    "go unnoticed", path, exc)
        return None


def holds_nothing(path: Path) -> bool:
    """Whether the outbox at ``path`` holds no result: no file (or an empty one), and no
    write-ahead log with anything in it."""
    return all(_empty(path.with_name(path.name + suffix)) for suffix in ("", "-wal"))


def _empty(path: Path) -> bool:
    """Whether the file at ``path`` is missing or holds no byte (unreadable: not empty)."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def open_error(path: Path, exc: Exception, full: str) -> OutboxError:
    """The error for an outbox that cannot be opened: a full disk, a damaged file, a disk
    mounted read-only, or else."""
    corrupt = isinstance(exc, sqlite3.DatabaseError) and is_corrupt(exc)
    why = full or ("" if corrupt else read_only_hint(path))  # damaged: repaired, or said why not
    if why:
        left = "nothing waits in it" if holds_nothing(path) else "its unsent results stay in it"
        return OutboxError(f"{path}: cannot open the outbox ({exc}): {why}; {left}")
    if corrupt:
        return OutboxCorruptError(f"{path}: the outbox file is damaged ({exc})")
    if isinstance(exc, sqlite3.DatabaseError):
        return OutboxError(f"{path}: cannot open the outbox ({exc})")
    return OutboxError(f"{path}: cannot open the outbox ({exc}); if the file is corrupt, move "
                       "it aside (its unsent results are in it) and restart")


def message_of(row: tuple[Any, ...]) -> OutboxMessage | None:
    """The row as a message; None when its record is garbled (a NULL or a number where the
    id, topic or payload belongs, which no outbox row holds and a quick check lets pass)."""
    seq, measurement_id, topic, payload, created_at_s = row
    texts_ok = all(isinstance(text, str) and text for text in (measurement_id, topic))
    if not texts_ok or not isinstance(payload, bytes) or not isinstance(created_at_s, int | float):
        return None
    return OutboxMessage(int(seq), measurement_id, topic, payload, float(created_at_s))

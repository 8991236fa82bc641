"""Opening an SQLite file in WAL mode, also on a disk too full for the WAL's shared index.

WAL mode keeps the index of its write-ahead log in a shared-memory file beside the database
(``NAME-shm``), which SQLite makes and grows at the first read. On a full disk it cannot
("disk I/O error", SQLITE_IOERR_SHMSIZE), and a file that holds results could not even be read.
In exclusive locking mode, set before the first read, SQLite keeps that index in the process's
own memory and never makes the ``-shm`` file; it still reads every row the write-ahead log holds.
Only the process that opened it can then use the file until it closes it, so this mode is the
fallback, taken only where the ``-shm`` file cannot be made: the daemon that owns the outbox is
the one process that opens it (one daemon per state folder, appliance/statelock.py).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from appliance.diskspace import full_disk_hint

log = logging.getLogger(__name__)


def open_wal(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit, shared across threads); in exclusive
    locking mode where the ``-shm`` file cannot be made. sqlite3.Error when neither opens."""
    db = _connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        return db
    except sqlite3.Error as exc:
        db.close()
        if not _no_shared_index(exc):
            raise
        why = full_disk_hint(path) or f"{exc}"
    log.warning("%s: the index of its write-ahead log cannot be made (%s); opened in exclusive "
                "locking mode (the index in memory), so only this process can open it until it "
                "closes it", path, why)
    db = _connect(path)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first read: no -shm file
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _no_shared_index(exc: sqlite3.Error) -> bool:
    """Whether SQLite could not make or grow the WAL's shared index file (``-shm``)."""
    return str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_IOERR_SHM")
